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
type hub struct {
	mu       sync.Mutex
	watchers map[*watcher]struct{}
	closed   bool
}

type watcher struct {
	customer string // whose orders it sees
	changes  chan *ordersv1.Order
	lagged   bool // set, under hub.mu, when changes was closed for falling behind
}

func newHub() *hub {
	return &hub{watchers: make(map[*watcher]struct{})}
}

// subscribe registers a watcher of customer's orders. Its channel is closed
// when the hub closes or the watcher falls behind; it reports false if the
// hub is already closed.
func (h *hub) subscribe(customer string) (*watcher, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false
	}
	w := &watcher{customer: customer, changes: make(chan *ordersv1.Order, watchBuffer)}
	h.watchers[w] = struct{}{}
	return w, true
}

func (h *hub) unsubscribe(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.watchers[w]; ok {
		delete(h.watchers, w)
		close(w.changes)
	}
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
			delete(h.watchers, w)
			close(w.changes)
		}
	}
}

// close ends every watcher's stream, for a graceful shutdown.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for w := range h.watchers {
		delete(h.watchers, w)
		close(w.changes)
	}
}

// WatchOrders implements [ordersv1connect.OrderServiceHandler].
func (s *Service) WatchOrders(ctx context.Context, _ *connect.Request[ordersv1.WatchOrdersRequest], stream *connect.ServerStream[ordersv1.WatchOrdersResponse]) error {
	w, ok := s.hub.subscribe(customerFrom(ctx))
	if !ok {
		return connect.NewError(connect.CodeUnavailable, errors.New("server is shutting down"))
	}
	defer s.hub.unsubscribe(w)
	// Send the headers now: once a client has them, it knows every later
	// change will reach it.
	if err := stream.Send(nil); err != nil {
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
			if err := stream.Send(&ordersv1.WatchOrdersResponse{Order: o}); err != nil {
				return err
			}
		}
	}
}
