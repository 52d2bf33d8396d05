package orders

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Limits on what one client, or all of them, may hold of an orders instance.
// Connections are capped by the HTTP server ([Config.MaxConns]).
const (
	// DefaultMaxWatchers caps the WatchOrders streams of an instance: each
	// holds a goroutine, and each wake-up costs it a read of its feed.
	DefaultMaxWatchers = 1000
	// DefaultMaxWatchersPerCustomer caps the streams of one customer: a
	// stream sees every change of the customer's orders, so one per open
	// page is all anyone needs; four leave room for a few tabs and for a
	// stream that is being replaced.
	DefaultMaxWatchersPerCustomer = 4
	// DefaultWatchSendTimeout is how long a watcher may take to accept one
	// change before it is dropped.
	DefaultWatchSendTimeout = 10 * time.Second
	// DefaultOrderRate is how many orders a customer may place per second on
	// average, and DefaultOrderBurst how many at once: far more than a
	// person at checkout, far less than a script.
	DefaultOrderRate  = 5.0
	DefaultOrderBurst = 20
)

// maxOrderLimiters bounds the customers whose CreateOrder rate is tracked at
// once (a few MB). Past it, an arbitrary one is forgotten and starts afresh,
// which lets that customer place up to a burst more: only a flood of new
// sessions gets there.
const maxOrderLimiters = 100_000

// limiterSweepInterval is how often limiters that are back to a full burst,
// and so no different from new ones, are dropped.
const limiterSweepInterval = time.Minute

// Limits cap what clients may hold of an orders service. A zero field is its
// default; what a client sees at each is in README.md ("Errors a client can
// get").
type Limits struct {
	// MaxConns caps the connections [Server.Serve] serves at once; one over
	// it is closed as soon as it is accepted, before anything is read or
	// written ([rpc.ConnLimit]). Default [rpc.DefaultMaxConns].
	MaxConns int
	// MaxWatchers caps the WatchOrders streams open at once, and
	// MaxWatchersPerCustomer those of one customer; one more is refused with
	// RESOURCE_EXHAUSTED. Defaults [DefaultMaxWatchers] and
	// [DefaultMaxWatchersPerCustomer].
	MaxWatchers, MaxWatchersPerCustomer int
	// WatchSendTimeout is how long a watcher may take to accept one change
	// before its stream is dropped (HTTP/1.1: its connection closed; HTTP/2:
	// its stream reset); default [DefaultWatchSendTimeout].
	WatchSendTimeout time.Duration
	// OrderRate is how many CreateOrder calls per second a customer may make
	// on average, and OrderBurst how many at once; one more is refused with
	// RESOURCE_EXHAUSTED, a google.rpc.RetryInfo and a Retry-After header.
	// Defaults [DefaultOrderRate] and [DefaultOrderBurst]; a negative
	// OrderRate is no limit.
	OrderRate  float64
	OrderBurst int
}

// watchLimits are the caps of a hub and its watchers.
type watchLimits struct {
	total, perCustomer int
	sendTimeout        time.Duration
}

func (lim Limits) watch() watchLimits {
	l := watchLimits{total: lim.MaxWatchers, perCustomer: lim.MaxWatchersPerCustomer, sendTimeout: lim.WatchSendTimeout}
	if l.total <= 0 {
		l.total = DefaultMaxWatchers
	}
	if l.perCustomer <= 0 {
		l.perCustomer = DefaultMaxWatchersPerCustomer
	}
	if l.sendTimeout <= 0 {
		l.sendTimeout = DefaultWatchSendTimeout
	}
	return l
}

func errHubClosed() error {
	return connect.NewError(connect.CodeUnavailable, errors.New("server is shutting down"))
}

func errTooManyWatchers(max int) error {
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"this server already serves the most WatchOrders streams it allows (%d); retry later with backoff, or poll ListOrders meanwhile", max))
}

func errTooManyCustomerWatchers(max int) error {
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"you already have %d WatchOrders streams open, the most allowed; each sees every change of your orders, so close one (another tab or client) before opening another", max))
}

type writeControlKey struct{}

// controlWatchWrites gives each WatchOrders call the
// [http.ResponseController] of its response, which Connect's stream hides,
// so that every change is sent under a write deadline ([sendWithin]).
func controlWatchWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ordersv1connect.OrderServiceWatchOrdersProcedure {
			r = r.WithContext(context.WithValue(r.Context(), writeControlKey{}, http.NewResponseController(w)))
		}
		next.ServeHTTP(w, r)
	})
}

// errSendTimeout is why a watcher that did not take a change in time is
// dropped, with RESOURCE_EXHAUSTED. Its client never
// sees it: what it was not reading is still in the way. On HTTP/1.1 its
// connection is closed, on HTTP/2 its stream is reset.
var errSendTimeout = errors.New("watcher did not accept a change in time")

// sendWithin sends msg on stream, giving up after timeout: on a stalled
// connection, the write fails and the call's context ends. Without a write
// deadline, Send would wait as long as the client's TCP window (HTTP/1.1) or
// flow-control window (HTTP/2) stays shut, that is forever for a client that
// stopped reading. The deadline is lifted after each change, so a watcher
// with nothing to receive may wait as long as it likes.
func sendWithin[T any](ctx context.Context, stream *connect.ServerStream[T], msg *T, timeout time.Duration) error {
	start := time.Now()
	rc, _ := ctx.Value(writeControlKey{}).(*http.ResponseController)
	if rc == nil || rc.SetWriteDeadline(start.Add(timeout)) != nil {
		return stream.Send(msg) // a writer without deadlines, e.g. in a unit test
	}
	err := stream.Send(msg)
	if err == nil {
		// A failed flush is not reported by Send, but net/http ends the
		// call's context when a write fails.
		err = ctx.Err()
	}
	if err != nil && time.Since(start) >= timeout {
		return connect.NewError(connect.CodeResourceExhausted, errSendTimeout)
	}
	if err != nil {
		return err
	}
	return rc.SetWriteDeadline(time.Time{})
}

// boundLastWrite puts a write deadline of timeout from now on what is still
// to be written of a WatchOrders call (Connect's end of the stream), so that
// a client that stops reading just then cannot hold its handler either.
func boundLastWrite(ctx context.Context, timeout time.Duration) {
	if rc, _ := ctx.Value(writeControlKey{}).(*http.ResponseController); rc != nil {
		rc.SetWriteDeadline(time.Now().Add(timeout))
	}
}

// orderLimiter limits each customer's CreateOrder calls with a token bucket:
// rate per second on average, burst at once.
type orderLimiter struct {
	rate  rate.Limit // rate.Inf: no limit
	burst int
	max   int // customers tracked at once
	now   func() time.Time

	mu        sync.Mutex
	customers map[string]*rate.Limiter
	lastSweep time.Time
}

func newOrderLimiter(perSecond float64, burst int) *orderLimiter {
	l := &orderLimiter{rate: rate.Limit(perSecond), burst: burst, max: maxOrderLimiters, now: time.Now, customers: make(map[string]*rate.Limiter)}
	switch {
	case perSecond < 0:
		l.rate = rate.Inf
	case perSecond == 0:
		l.rate = DefaultOrderRate
	}
	if l.burst <= 0 {
		l.burst = DefaultOrderBurst
	}
	l.lastSweep = l.now()
	return l
}

// allow takes one order from customer's bucket, or reports how long until
// there is one.
func (l *orderLimiter) allow(customer string) (time.Duration, bool) {
	if l.rate == rate.Inf {
		return 0, true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(l.lastSweep) >= limiterSweepInterval {
		l.sweep(now)
	}
	lim, ok := l.customers[customer]
	if !ok {
		if len(l.customers) >= l.max {
			for id := range l.customers { // an arbitrary one
				delete(l.customers, id)
				break
			}
		}
		lim = rate.NewLimiter(l.rate, l.burst)
		l.customers[customer] = lim
	}
	r := lim.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d, false
	}
	return 0, true
}

// sweep drops the limiters that are full again: a new one is the same.
func (l *orderLimiter) sweep(now time.Time) {
	l.lastSweep = now
	for id, lim := range l.customers {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.customers, id)
		}
	}
}

// tracked returns how many customers have a limiter now.
func (l *orderLimiter) tracked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.customers)
}

// errTooManyOrders is what a customer over the rate gets: RESOURCE_EXHAUSTED
// with a google.rpc.RetryInfo detail and a Retry-After header.
func (l *orderLimiter) errTooManyOrders(delay time.Duration) error {
	delay = delay.Round(time.Millisecond) + time.Millisecond // never "retry in 0s"
	err := connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"too many orders: a customer may place %g per second, up to %d at once; retry in %v", float64(l.rate), l.burst, delay))
	if detail, derr := connect.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)}); derr == nil {
		err.AddDetail(detail)
	}
	err.Meta().Set("Retry-After", strconv.Itoa(int(math.Ceil(delay.Seconds()))))
	return err
}

// interceptor limits CreateOrder calls per customer. It runs after
// authenticate, which has put the customer in the context.
func (l *orderLimiter) interceptor() connect.Interceptor { return orderRateInterceptor{l} }

type orderRateInterceptor struct{ l *orderLimiter }

func (i orderRateInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().Procedure == ordersv1connect.OrderServiceCreateOrderProcedure {
			if customer := customerFrom(ctx); customer != "" {
				if delay, ok := i.l.allow(customer); !ok {
					return nil, i.l.errTooManyOrders(delay)
				}
			}
		}
		return next(ctx, req)
	}
}

func (orderRateInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

func (orderRateInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}
