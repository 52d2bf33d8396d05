package orders

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/rpc"
)

// watchBatch is how many changes a watcher reads from the store at once.
const watchBatch = 100

// changeRetention is how long the change feed keeps a change, and so how
// long after a change a client may still resume from before it.
const changeRetention = time.Hour

// hub wakes the WatchOrders streams of this process when their customer's
// change feed grows. The changes themselves come from the store (see
// [Store.Changes]), written in the same transaction as the order, by any
// orders instance; [Store.Listen] tells the hub which customers' feeds grew.
// A watcher reads its feed at its own pace, so a slow one falls behind
// without holding anyone else, and a reconnecting one resumes where it was.
//
// It serves at most limits.total watchers at once, and limits.perCustomer
// of one customer; more are refused with RESOURCE_EXHAUSTED.
type hub struct {
	limits watchLimits // set before the first subscribe

	mu         sync.Mutex
	byCustomer map[string]map[*watcher]struct{}
	total      int
	closed     bool
	done       chan struct{} // closed by close
}

type watcher struct {
	customer string        // whose orders it sees
	wake     chan struct{} // holds a token when its feed may have grown
}

func newHub() *hub {
	return &hub{
		limits:     Limits{}.watch(),
		byCustomer: make(map[string]map[*watcher]struct{}),
		done:       make(chan struct{}),
	}
}

// subscribe registers a watcher of customer's orders. It fails with
// UNAVAILABLE if the hub is already closed, and with RESOURCE_EXHAUSTED if
// the hub or the customer has as many watchers as allowed.
func (h *hub) subscribe(customer string) (*watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, errHubClosed()
	case len(h.byCustomer[customer]) >= h.limits.perCustomer:
		return nil, errTooManyCustomerWatchers(h.limits.perCustomer)
	case h.total >= h.limits.total:
		return nil, errTooManyWatchers(h.limits.total)
	}
	w := &watcher{customer: customer, wake: make(chan struct{}, 1)}
	if h.byCustomer[customer] == nil {
		h.byCustomer[customer] = make(map[*watcher]struct{})
	}
	h.byCustomer[customer][w] = struct{}{}
	h.total++
	return w, nil
}

func (h *hub) unsubscribe(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	ws := h.byCustomer[w.customer]
	if _, ok := ws[w]; !ok {
		return
	}
	delete(ws, w)
	if len(ws) == 0 {
		delete(h.byCustomer, w.customer)
	}
	h.total--
}

// count returns how many watchers there are now.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.total
}

// notify wakes the watchers of customer, or every watcher if customer is
// "", without blocking: a watcher already due to read its feed stays so.
func (h *hub) notify(customer string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c, ws := range h.byCustomer {
		if customer != "" && c != customer {
			continue
		}
		for w := range ws {
			select {
			case w.wake <- struct{}{}:
			default:
			}
		}
	}
}

// close ends every watcher's stream and refuses new ones, for a graceful
// shutdown.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// runFeed wakes watchers as [Store.Listen] hears of changes until ctx ends.
// When listening fails (the database went away), it wakes every watcher
// once a second, so they poll their feeds, and tries again.
func (s *Service) runFeed(ctx context.Context) {
	for {
		err := s.store.Listen(ctx, s.hub.notify)
		if ctx.Err() != nil {
			return
		}
		s.logger.WarnContext(ctx, "listening for order changes failed; watchers poll until it is back", "err", err)
		s.hub.notify("")
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// WatchOrders implements [ordersv1connect.OrderServiceHandler].
//
// Every change must be accepted by the client within the hub's send timeout
// (default 10 s), on HTTP/1.1 as on HTTP/2; a watcher that stops reading is
// dropped then.
func (s *Service) WatchOrders(ctx context.Context, req *connect.Request[ordersv1.WatchOrdersRequest], stream *connect.ServerStream[ordersv1.WatchOrdersResponse]) error {
	customer := customerFrom(ctx)
	w, err := s.hub.subscribe(customer)
	if err != nil {
		return err
	}
	defer s.hub.unsubscribe(w)
	// Subscribed first, then read where the feed is: a change committed in
	// between wakes w, so none is missed.
	after, err := s.resumePoint(ctx, customer, req.Msg.GetResumeToken())
	if err != nil {
		return err
	}
	timeout := s.hub.limits.sendTimeout
	defer boundLastWrite(ctx, timeout)
	send := func(msg *ordersv1.WatchOrdersResponse) error {
		err := sendWithin(ctx, stream, msg, timeout)
		if errors.Is(err, errSendTimeout) {
			s.logger.InfoContext(ctx, "watcher dropped: it did not accept a change in time", "customer", customer, "timeout", timeout)
		}
		return err
	}
	// Send the headers now: once a client has them, it knows every later
	// change will reach it.
	if err := send(nil); err != nil {
		return err
	}
	for {
		if after, err = s.sendChanges(ctx, customer, after, send); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.hub.done:
			return nil // shutting down; the client reconnects elsewhere with its resume token
		case <-w.wake:
		}
	}
}

// resumePoint returns the sequence number of the last change of customer's
// feed that the watcher has seen: the feed's end without a token.
func (s *Service) resumePoint(ctx context.Context, customer, token string) (int64, error) {
	last, err := s.store.LastChange(ctx, customer)
	if err != nil {
		return 0, s.toConnect(ctx, err)
	}
	if token == "" {
		return last, nil
	}
	after, err := strconv.ParseInt(token, 10, 64)
	if err != nil || after < 0 || after > last {
		var v rpc.Violations
		v.Add("resume_token", "is not a token this service gave you; watch without one to start from now")
		return 0, v.Err()
	}
	if after < last {
		next, err := s.store.Changes(ctx, customer, after, 1)
		if err != nil {
			return 0, s.toConnect(ctx, err)
		}
		if len(next) == 0 || next[0].Seq != after+1 {
			return 0, errResumeTokenExpired()
		}
	}
	return after, nil
}

// sendChanges sends the changes of customer's feed after the given sequence
// number and returns the number of the last one sent.
func (s *Service) sendChanges(ctx context.Context, customer string, after int64, send func(*ordersv1.WatchOrdersResponse) error) (int64, error) {
	for {
		changes, err := s.store.Changes(ctx, customer, after, watchBatch)
		if err != nil {
			return after, s.toConnect(ctx, err)
		}
		for _, c := range changes {
			if c.Seq != after+1 {
				return after, errResumeTokenExpired() // pruned while this watcher lagged
			}
			if err := send(&ordersv1.WatchOrdersResponse{Order: c.Order, ResumeToken: strconv.FormatInt(c.Seq, 10)}); err != nil {
				return after, err
			}
			after = c.Seq
		}
		if len(changes) < watchBatch {
			return after, nil
		}
	}
}

func errResumeTokenExpired() error {
	return rpc.NewErrorWithReason(connect.CodeOutOfRange, ordersv1.ErrorReason_RESUME_TOKEN_EXPIRED.String(),
		fmt.Sprintf("the changes after this resume token are no longer kept (they are kept for %v); list your orders again and watch without a token", changeRetention), nil)
}
