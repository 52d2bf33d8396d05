package orders

import (
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

func TestHubCapsWatchers(t *testing.T) {
	t.Parallel()
	h := newHub()
	h.limits = Limits{MaxWatchers: 3, MaxWatchersPerCustomer: 2}.watch()
	a1, err := h.subscribe("cus_a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.subscribe("cus_a"); err != nil {
		t.Fatal(err)
	}
	_, err = h.subscribe("cus_a")
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "close one") {
		t.Fatalf("third watcher of one customer: got %v, want resource_exhausted telling to close one", err)
	}
	if _, err := h.subscribe("cus_b"); err != nil {
		t.Fatal(err)
	}
	_, err = h.subscribe("cus_c")
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "retry later") {
		t.Fatalf("fourth watcher in all: got %v, want resource_exhausted telling to retry later", err)
	}
	h.unsubscribe(a1)
	c, err := h.subscribe("cus_c")
	if err != nil {
		t.Fatalf("after one left: %v", err)
	}
	h.unsubscribe(c)
	h.unsubscribe(c) // already gone: must change nothing
	if h.count() != 2 || len(h.byCustomer) != 2 {
		t.Fatalf("got %d watchers of %d customers, want 2 of 2", h.count(), len(h.byCustomer))
	}
}

func TestOrderLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	l := newOrderLimiter(5, 20)
	l.now, l.lastSweep = func() time.Time { return now }, now
	for i := range 20 {
		if d, ok := l.allow("cus_a"); !ok {
			t.Fatalf("order %d of the burst refused, retry in %v", i+1, d)
		}
	}
	d, ok := l.allow("cus_a")
	if ok || d != 200*time.Millisecond {
		t.Fatalf("order 21 at once: got ok=%v, retry in %v; want refused, retry in 200ms", ok, d)
	}
	if _, ok := l.allow("cus_b"); !ok {
		t.Fatal("another customer was refused")
	}
	now = now.Add(200 * time.Millisecond)
	if _, ok := l.allow("cus_a"); !ok {
		t.Fatal("refused after the delay it gave")
	}

	// The error says when to retry, three ways.
	err := l.errTooManyOrders(d)
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeResourceExhausted || !strings.Contains(cerr.Message(), "retry in 201ms") {
		t.Fatalf("got %v, want resource_exhausted saying when to retry", err)
	}
	if got := cerr.Meta().Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After: got %q, want 1", got)
	}
	var delay time.Duration
	for _, detail := range cerr.Details() {
		if v, err := detail.Value(); err == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				delay = ri.GetRetryDelay().AsDuration()
			}
		}
	}
	if delay != 201*time.Millisecond {
		t.Errorf("RetryInfo: got retry delay %v, want 201ms", delay)
	}

	// Limiters back to a full bucket are swept; the rest stay.
	now = now.Add(limiterSweepInterval)
	for range 20 {
		l.allow("cus_c")
	}
	if got := l.tracked(); got != 1 {
		t.Errorf("after a sweep: %d customers tracked, want 1 (the one just seen)", got)
	}
	// Never more than max, whatever the number of customers.
	l.max = 10
	for i := range 100 {
		l.allow("cus_" + string(rune('A'+i%26)) + string(rune('a'+i/26)))
	}
	if got := l.tracked(); got > 10 {
		t.Errorf("%d customers tracked, want at most 10", got)
	}

	if l := newOrderLimiter(-1, 0); l.rate != rate.Inf {
		t.Errorf("negative rate: got %v, want no limit", l.rate)
	}
	unlimited := newOrderLimiter(-1, 0)
	for range 1000 {
		if _, ok := unlimited.allow("cus_a"); !ok {
			t.Fatal("no limit refused an order")
		}
	}
}
