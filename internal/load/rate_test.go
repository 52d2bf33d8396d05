package load_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/load"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/shop/shoptest"
)

// Against the real shop, a fixed-rate run schedules Rate × Duration orders,
// starts them all at that rate, and is never refused by the per-customer
// limit, though 50/s is ten times one customer's 5/s.
func TestFixedRateReachesItsRate(t *testing.T) {
	t.Parallel()
	url := shoptest.Start(t, slog.New(slog.DiscardHandler))
	c := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), url)
	const rate, want = 50, 100
	res := load.FixedRate{Rate: rate, Duration: 2 * time.Second}.Run(context.Background(), c)
	if len(res.Errors) > 0 || res.Orders() != want || res.Scheduled != want || res.Unstarted != 0 {
		t.Fatalf("got %d orders of %d scheduled, %d unstarted, %d errors (first: %v); want %d of %d, none unstarted, no errors",
			res.Orders(), res.Scheduled, res.Unstarted, len(res.Errors), res.Errors, want, want)
	}
	// The last order is due at 1.98 s, so the run cannot be faster than the
	// rate. How long the answers take is the shop's business (on a busy
	// machine, under -race, 100 orders have taken 3.7 s): what the run
	// controls is that each order starts on time, which needs only a timer
	// and a goroutine, so its bound is generous but far below the run.
	if got := res.Throughput(); got > 1.02*rate || res.Elapsed < (want-1)*time.Second/rate {
		t.Errorf("achieved %.1f orders/s in %v, want at most %d/s, over at least 1.98 s", got, res.Elapsed, rate)
	}
	if res.Delayed != 0 || res.MaxStartLag > 500*time.Millisecond {
		t.Errorf("%d orders started late, the latest %v behind schedule; want every order started on time", res.Delayed, res.MaxStartLag)
	}
	if len(res.Sessions) != want/20 {
		t.Errorf("got %d sessions, want a customer per 20 orders: %d", len(res.Sessions), want/20)
	}
	if res.Percentile(99.9) < res.Percentile(50) || res.Percentile(50) <= 0 {
		t.Errorf("p50 %v, p999 %v: want 0 < p50 <= p999", res.Percentile(50), res.Percentile(99.9))
	}
}

// stubClient answers CreateOrder after delay, and records which session
// placed each order of the schedule.
type stubClient struct {
	ordersv1connect.OrderServiceClient // nil: only the methods below are called

	name       string // of the instance, in the tokens it makes
	delay      time.Duration
	sessionErr error

	mu       sync.Mutex
	sessions int
	tokenOf  map[int]string // by the order's index in the schedule
	keyOf    map[int]string // the idempotency key, by the same index
}

func (s *stubClient) CreateSession(context.Context, *connect.Request[ordersv1.CreateSessionRequest]) (*connect.Response[ordersv1.CreateSessionResponse], error) {
	if s.sessionErr != nil {
		return nil, s.sessionErr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sessions++
	return connect.NewResponse(&ordersv1.CreateSessionResponse{Token: fmt.Sprintf("%stoken-%d", s.name, s.sessions)}), nil
}

func (s *stubClient) CreateOrder(ctx context.Context, req *connect.Request[ordersv1.CreateOrderRequest]) (*connect.Response[ordersv1.CreateOrderResponse], error) {
	key := req.Msg.GetIdempotencyKey()
	i, err := strconv.Atoi(key[strings.LastIndexByte(key, '-')+1:])
	if err != nil {
		return nil, fmt.Errorf("idempotency key %q: want the order's index last", key)
	}
	s.mu.Lock()
	s.tokenOf[i] = strings.TrimPrefix(req.Header().Get("Authorization"), "Bearer ")
	s.keyOf[i] = key
	s.mu.Unlock()
	timer := time.NewTimer(s.delay) // the server's answer takes this long
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return connect.NewResponse(&ordersv1.CreateOrderResponse{Order: &ordersv1.Order{PaymentReplica: "stub"}}), nil
}

func newStub(delay time.Duration) *stubClient {
	return &stubClient{delay: delay, tokenOf: map[int]string{}, keyOf: map[int]string{}}
}

// An order that waits for a slot because the server is slow is charged the
// wait: its latency runs from its scheduled start. Orders are due every 10
// ms, one call may be in flight and each takes 100 ms, so order k starts no
// earlier than k×100 ms and ends no earlier than (k+1)×100 ms, k×10 ms after
// it was due. Measured from the call's start, every latency would be about
// 100 ms. Customers change every OrdersPerSession orders of the schedule.
func TestFixedRateLatencyIncludesTheWait(t *testing.T) {
	t.Parallel()
	const delay, interval = 100 * time.Millisecond, 10 * time.Millisecond
	stub := newStub(delay)
	res := load.FixedRate{Rate: float64(time.Second / interval), Orders: 5, MaxInFlight: 1, OrdersPerSession: 2}.Run(context.Background(), stub)
	if len(res.Errors) > 0 || res.Orders() != 5 || res.Scheduled != 5 || res.Delayed != 4 || res.Unstarted != 0 {
		t.Fatalf("got %d orders of %d scheduled, %d delayed, %d unstarted, errors %v; want 5 of 5, 4 delayed (all but the first), none unstarted, no errors",
			res.Orders(), res.Scheduled, res.Delayed, res.Unstarted, res.Errors)
	}
	for k, got := range res.Latencies {
		if want := time.Duration(k+1)*delay - time.Duration(k)*interval; got < want {
			t.Errorf("latency %d: %v, want at least %v", k, got, want)
		}
	}
	if want := 4*delay - 4*interval; res.MaxStartLag < want {
		t.Errorf("max start lag %v, want at least %v (the last order's wait for a slot)", res.MaxStartLag, want)
	}
	if len(res.Sessions) != 3 {
		t.Fatalf("got %d sessions, want 3 for 5 orders, 2 per customer", len(res.Sessions))
	}
	for i := range 5 {
		if got, want := stub.tokenOf[i], res.Sessions[i/2]; got != want {
			t.Errorf("order %d placed as %q, want %q, customer %d (a customer per 2 orders of the schedule)", i, got, want, i/2)
		}
	}
	if s := res.Sessions; s[0] == s[1] || s[1] == s[2] || s[0] == s[2] {
		t.Errorf("sessions %q: want three customers", s)
	}
	if stub.sessions != 3 {
		t.Errorf("created %d sessions, want 3 for 5 orders, 2 per customer", stub.sessions)
	}
}

// Orders still waiting for a slot when Duration is over never start, and
// are counted. Due every 10 ms for 300 ms: 30 orders; two slots held 500 ms
// each by the first two, so the other 28 wait until the run ends.
func TestFixedRateCountsOrdersThatNeverStarted(t *testing.T) {
	t.Parallel()
	stub := newStub(500 * time.Millisecond)
	res := load.FixedRate{Rate: 100, Duration: 300 * time.Millisecond, MaxInFlight: 2}.Run(context.Background(), stub)
	if len(res.Errors) > 0 || res.Orders() != 2 || res.Scheduled != 30 || res.Unstarted != 28 || res.Delayed != 1 {
		t.Fatalf("got %d orders of %d scheduled, %d delayed, %d unstarted, errors %v; want 2 of 30, 1 delayed (the one waiting at the end), 28 unstarted, no errors",
			res.Orders(), res.Scheduled, res.Delayed, res.Unstarted, res.Errors)
	}
	if res.Elapsed < 500*time.Millisecond {
		t.Errorf("returned after %v, before the calls in flight ended", res.Elapsed)
	}
}

// Without a rate, a bound or a client nothing runs, and a run that cannot
// get its customers does not start.
func TestFixedRateBounds(t *testing.T) {
	t.Parallel()
	for _, l := range []load.FixedRate{{Duration: time.Second}, {Rate: 100}, {Rate: -1, Orders: 10}} {
		stub := newStub(0)
		if res := l.Run(context.Background(), stub); res.Scheduled != 0 || stub.sessions != 0 || len(res.Errors) != 0 {
			t.Errorf("%+v: scheduled %d, %d sessions, errors %v; want nothing", l, res.Scheduled, stub.sessions, res.Errors)
		}
	}
	if res := (load.FixedRate{Rate: 100, Orders: 10}).Run(context.Background()); res.Scheduled != 0 || len(res.Errors) != 0 {
		t.Errorf("with no client: scheduled %d, errors %v; want nothing", res.Scheduled, res.Errors)
	}
	stub := newStub(0)
	stub.sessionErr = connect.NewError(connect.CodeUnavailable, errors.New("down"))
	res := load.FixedRate{Rate: 100, Orders: 10}.Run(context.Background(), stub)
	if len(res.Errors) != 1 || res.Scheduled != 0 || len(stub.tokenOf) != 0 {
		t.Errorf("with no sessions: scheduled %d, %d orders placed, errors %v; want none and one error", res.Scheduled, len(stub.tokenOf), res.Errors)
	}
}

// Given two clients (two orders instances), a run deals its customers out
// round-robin: 10 orders, 2 per customer, are 5 customers, the 1st, 3rd and
// 5th on the first instance and the others on the second; each customer's
// session is made on the instance that gets its orders.
func TestFixedRateSpreadsCustomersOverClients(t *testing.T) {
	t.Parallel()
	a, b := newStub(0), newStub(0)
	a.name, b.name = "a-", "b-"
	res := load.FixedRate{Rate: 1000, Orders: 10, OrdersPerSession: 2}.Run(context.Background(), a, b)
	if len(res.Errors) > 0 || res.Orders() != 10 {
		t.Fatalf("got %d orders, errors %v; want 10 and none", res.Orders(), res.Errors)
	}
	if a.sessions != 3 || b.sessions != 2 {
		t.Errorf("sessions made: %d on a, %d on b; want 3 and 2 (customers 0, 2, 4 and 1, 3)", a.sessions, b.sessions)
	}
	for i := range 10 {
		want := a
		if (i/2)%2 == 1 {
			want = b
		}
		token, ok := want.tokenOf[i]
		if !ok {
			t.Errorf("order %d (customer %d) did not go to %s", i, i/2, strings.TrimSuffix(want.name, "-"))
			continue
		}
		if token != res.Sessions[i/2] || !strings.HasPrefix(token, want.name) {
			t.Errorf("order %d placed as %q, want customer %d's %q, made on the same instance", i, token, i/2, res.Sessions[i/2])
		}
	}
	if len(a.tokenOf) != 6 || len(b.tokenOf) != 4 || !slices.Equal(res.PerClient, []int{6, 4}) {
		t.Errorf("orders: %d on a, %d on b, PerClient %v; want 6, 4 and [6 4]", len(a.tokenOf), len(b.tokenOf), res.PerClient)
	}
}
