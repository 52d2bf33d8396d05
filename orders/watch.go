package orders

import (
	"context"
	"errors"
	"sync"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
)

// watchBuffer is how many changes a watcher may fall behind before it is
// dropped; a dropped watcher's stream ends and its client reconnects.
const watchBuffer = 256

// hub fans order changes out to the WatchOrders streams of this process.
// Changes made by another orders instance are not seen: with several
// instances, a shared change feed (e.g. PostgreSQL LISTEN/NOTIFY) would
// replace it.
//
// It serves at most limits.total watchers at once, and limits.perCustomer
// of one customer; more are refused with RESOURCE_EXHAUSTED.
type hub struct {
	limits watchLimits // set before the first subscribe

	mu          sync.Mutex
	watchers    map[*watcher]struct{}
	perCustomer map[string]int // watchers by customer, none at 0
	closed      bool
}

type watcher struct {
	customer string // whose orders it sees
	changes  chan *ordersv1.Order
	lagged   bool // set, under hub.mu, when changes was closed for falling behind
}

func newHub() *hub {
	return &hub{
		limits:      Limits{}.watch(),
		watchers:    make(map[*watcher]struct{}),
		perCustomer: make(map[string]int),
	}
}

// subscribe registers a watcher of customer's orders. Its channel is closed
// when the hub closes or the watcher falls behind. It fails with UNAVAILABLE
// if the hub is already closed, and with RESOURCE_EXHAUSTED if the hub or
// the customer has as many watchers as allowed.
func (h *hub) subscribe(customer string) (*watcher, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, errHubClosed()
	case h.perCustomer[customer] >= h.limits.perCustomer:
		return nil, errTooManyCustomerWatchers(h.limits.perCustomer)
	case len(h.watchers) >= h.limits.total:
		return nil, errTooManyWatchers(h.limits.total)
	}
	w := &watcher{customer: customer, changes: make(chan *ordersv1.Order, watchBuffer)}
	h.watchers[w] = struct{}{}
	h.perCustomer[customer]++
	return w, nil
}

func (h *hub) unsubscribe(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.watchers[w]; ok {
		h.remove(w)
	}
}

// remove ends w's stream; h.mu is held and w is registered.
func (h *hub) remove(w *watcher) {
	delete(h.watchers, w)
	if h.perCustomer[w.customer]--; h.perCustomer[w.customer] <= 0 {
		delete(h.perCustomer, w.customer)
	}
	close(w.changes)
}

// count returns how many watchers there are now.
func (h *hub) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.watchers)
}

// isLagged reports whether w was dropped for falling behind.
func (h *hub) isLagged(w *watcher) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return w.lagged
}

// publish sends o to every watcher of its customer without blocking.
func (h *hub) publish(o *ordersv1.Order) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
		if w.customer != o.GetCustomerId() {
			continue
		}
		select {
		case w.changes <- o:
		default:
			w.lagged = true
			h.remove(w)
		}
	}
}

// close ends every watcher's stream, for a graceful shutdown.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for w := range h.watchers {
		h.remove(w)
	}
}

// WatchOrders implements [ordersv1connect.OrderServiceHandler].
//
// Every change must be accepted by the client within the hub's send timeout
// (default 10 s), on HTTP/1.1 as on HTTP/2; a watcher that stops reading is
// dropped then, and one that falls [watchBuffer] changes behind while
// reading slowly gets RESOURCE_EXHAUSTED.
func (s *Service) WatchOrders(ctx context.Context, _ *connect.Request[ordersv1.WatchOrdersRequest], stream *connect.ServerStream[ordersv1.WatchOrdersResponse]) error {
	w, err := s.hub.subscribe(customerFrom(ctx))
	if err != nil {
		return err
	}
	defer s.hub.unsubscribe(w)
	timeout := s.hub.limits.sendTimeout
	defer boundLastWrite(ctx, timeout)
	send := func(msg *ordersv1.WatchOrdersResponse) error {
		err := sendWithin(ctx, stream, msg, timeout)
		if errors.Is(err, errSendTimeout) {
			s.logger.InfoContext(ctx, "watcher dropped: it did not accept a change in time", "customer", w.customer, "timeout", timeout)
		}
		return err
	}
	// Send the headers now: once a client has them, it knows every later
	// change will reach it.
	if err := send(nil); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case o, ok := <-w.changes:
			if !ok {
				if s.hub.isLagged(w) {
					return connect.NewError(connect.CodeResourceExhausted, errors.New("watcher fell behind; reconnect"))
				}
				return nil // shutting down
			}
			if err := send(&ordersv1.WatchOrdersResponse{Order: o}); err != nil {
				return err
			}
		}
	}
}
