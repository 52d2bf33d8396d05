package orders

import (
	"testing"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
)

func TestHubDropsLaggingWatcher(t *testing.T) {
	t.Parallel()
	h := newHub()
	slow, _ := h.subscribe("cus_a")
	fast, _ := h.subscribe("cus_a")
	other, _ := h.subscribe("cus_b") // sees none of cus_a's orders, so never lags
	for i := range watchBuffer + 1 {
		h.publish(&ordersv1.Order{Id: string(rune('a' + i%26)), CustomerId: "cus_a"})
		if i < watchBuffer {
			<-fast.changes // fast keeps up
		}
	}
	n := 0
	for range slow.changes { // closed after its buffer filled
		n++
	}
	if n != watchBuffer || !h.isLagged(slow) {
		t.Errorf("slow watcher: got %d changes, lagged=%v; want %d and lagged", n, h.isLagged(slow), watchBuffer)
	}
	if got := <-fast.changes; got == nil || h.isLagged(fast) {
		t.Errorf("fast watcher: got %v, lagged=%v; want the last change, not lagged", got, h.isLagged(fast))
	}
	if len(other.changes) != 0 || h.isLagged(other) {
		t.Errorf("other customer's watcher: got %d changes, lagged=%v; want none", len(other.changes), h.isLagged(other))
	}
	h.unsubscribe(slow) // already gone: must not panic
	h.close()
	if _, ok := <-fast.changes; ok {
		t.Error("fast watcher's channel still open after close")
	}
	if _, err := h.subscribe("cus_a"); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("subscribe after close: got %v, want unavailable", err)
	}
}
