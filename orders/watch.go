package orders

import (
	"sync"

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
	changes chan *ordersv1.Order
	lagged  bool // set, under hub.mu, when changes was closed for falling behind
}

func newHub() *hub {
	return &hub{watchers: make(map[*watcher]struct{})}
}

// subscribe registers a watcher. Its channel is closed when the hub closes or
// the watcher falls behind; it reports false if the hub is already closed.
func (h *hub) subscribe() (*watcher, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false
	}
	w := &watcher{changes: make(chan *ordersv1.Order, watchBuffer)}
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

// publish sends o to every watcher without blocking.
func (h *hub) publish(o *ordersv1.Order) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for w := range h.watchers {
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
