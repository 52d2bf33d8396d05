package orders

import (
	"testing"

	"connectrpc.com/connect"
)

// woken reports whether w has a wake-up waiting, and takes it.
func woken(w *watcher) bool {
	select {
	case <-w.wake:
		return true
	default:
		return false
	}
}

func TestHubWakesTheCustomersWatchers(t *testing.T) {
	t.Parallel()
	h := newHub()
	a1, _ := h.subscribe("cus_a")
	a2, _ := h.subscribe("cus_a")
	b, _ := h.subscribe("cus_b")

	// Wake-ups coalesce: a watcher that has not read yet has one waiting.
	h.notify("cus_a")
	h.notify("cus_a")
	if !woken(a1) || !woken(a2) || woken(a1) {
		t.Error("cus_a's watchers: want exactly one wake-up each after two changes")
	}
	if woken(b) {
		t.Error("cus_b's watcher woken by a change of cus_a")
	}
	// "" is any customer: after the feed's connection came back.
	h.notify("")
	if !woken(a1) || !woken(a2) || !woken(b) {
		t.Error(`notify(""): want every watcher woken`)
	}

	h.close()
	select {
	case <-h.done:
	default:
		t.Error("done still open after close")
	}
	h.close() // again: must not panic
	if _, err := h.subscribe("cus_a"); connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("subscribe after close: got %v, want unavailable", err)
	}
}
