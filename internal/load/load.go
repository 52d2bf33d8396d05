// Package load places orders against a running orders service, for a count
// or a duration, and records throughput, latency and which payments replica
// charged each order: with a fixed concurrency ([Load], a closed loop: a new
// order when one is answered) or at a fixed arrival rate ([FixedRate], an open
// loop: orders start on a schedule whatever the server does). A run may spread
// its customers over several orders instances, one client each; every
// customer sticks to one. cmd/loadgen and the load-balancing proof use it.
package load

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/orders"
)

// Result is what a load run observed.
type Result struct {
	PerReplica map[string]int // paid orders by the replica that charged them
	PerClient  []int          // paid orders by the client they went through, in the order Run was given them
	// Latencies of successful CreateOrder calls, sorted: from the call's
	// start in a [Load] run, from its scheduled start in a [FixedRate] run.
	Latencies []time.Duration
	Errors    []error
	Elapsed   time.Duration
	Sessions  []string // the session token of each customer, to look up its orders

	// Of a [FixedRate] run only (zero for [Load]):
	Scheduled   int           // orders whose scheduled start came before the run stopped
	Delayed     int           // of those, started late: MaxInFlight calls were in flight
	Unstarted   int           // of those, never started: the run ended while they waited
	MaxStartLag time.Duration // the latest start behind schedule, whatever the cause
}

// Orders returns how many orders were paid.
func (r *Result) Orders() int { return len(r.Latencies) }

// Share returns the share of paid orders that replica charged, 0 to 1.
func (r *Result) Share(replica string) float64 {
	if r.Orders() == 0 {
		return 0
	}
	return float64(r.PerReplica[replica]) / float64(r.Orders())
}

// Percentile returns the p-th percentile latency (p from 0 to 100, e.g. 99.9),
// the nearest rank at or below it.
func (r *Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies)-1) * p / 100)
	return r.Latencies[i]
}

// Load describes a run from Concurrency clients in parallel that stops after
// Orders orders or after Duration, whichever comes first. A zero bound is no
// bound; with neither set, nothing runs.
//
// Each client places OrdersPerSession orders as one customer, then moves on
// to a new one (default [orders.DefaultOrderBurst]). orders limits each
// customer's CreateOrder rate, and a new customer may place a whole burst at
// once: a client never exceeds its customer's rate however fast it goes, so
// the run measures the shop, not its rate limiter. Real traffic is many
// customers each placing a few orders too.
type Load struct {
	Orders           int
	Duration         time.Duration
	Concurrency      int
	OrdersPerSession int
}

// Run places orders through cs and records who charged them. Each client is a
// customer of its own, with a session from CreateSession, and a new one after
// every OrdersPerSession orders; the sessions' time is not in the latencies.
// With several cs (say one per orders instance), the run's clients are dealt
// out over them round-robin: client w makes all its calls through
// cs[w mod len(cs)], so each customer stays on one instance. With no cs,
// nothing runs. Every call has a 10 s deadline; the run stops early if ctx
// ends.
func (l Load) Run(ctx context.Context, cs ...ordersv1connect.OrderServiceClient) *Result {
	var (
		mu     sync.Mutex
		res    = newResult(len(cs))
		next   int
		start  = time.Now()
		wg     sync.WaitGroup
		client = max(l.Concurrency, 1)
		per    = l.OrdersPerSession
	)
	if per <= 0 {
		per = orders.DefaultOrderBurst
	}
	if len(cs) == 0 {
		return res
	}
	more := func() (int, bool) {
		mu.Lock()
		defer mu.Unlock()
		unbounded := l.Orders <= 0 && l.Duration <= 0
		if unbounded || ctx.Err() != nil || (l.Orders > 0 && next >= l.Orders) || (l.Duration > 0 && time.Since(start) >= l.Duration) {
			return 0, false
		}
		next++
		return next, true
	}
	for w := range client {
		ci := w % len(cs)
		wg.Go(func() {
			c := cs[ci]
			var token string
			placed := 0 // as token's customer
			for {
				n, ok := more()
				if !ok {
					return
				}
				if token == "" || placed >= per {
					placed = 0
					var err error
					token, err = session(ctx, c)
					mu.Lock()
					if err != nil {
						res.Errors = append(res.Errors, err)
					} else {
						res.Sessions = append(res.Sessions, token)
					}
					mu.Unlock()
					if err != nil {
						return
					}
				}
				t0 := time.Now()
				replica, err := placeOrder(ctx, c, token, fmt.Sprintf("load-%d-%d-%d", start.UnixNano(), w, n))
				d := time.Since(t0)
				placed++
				mu.Lock()
				res.record(ci, replica, d, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	slices.Sort(res.Latencies)
	return res
}

// Throughput is paid orders per second.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Orders()) / r.Elapsed.Seconds()
}

// Merge adds b's observations to a (which may be nil) and returns the sum.
func Merge(a, b *Result) *Result {
	if a == nil {
		return b
	}
	for k, v := range b.PerReplica {
		a.PerReplica[k] += v
	}
	for i, v := range b.PerClient {
		if i == len(a.PerClient) {
			a.PerClient = append(a.PerClient, 0)
		}
		a.PerClient[i] += v
	}
	a.Latencies = append(a.Latencies, b.Latencies...)
	slices.Sort(a.Latencies)
	a.Errors = append(a.Errors, b.Errors...)
	a.Sessions = append(a.Sessions, b.Sessions...)
	a.Elapsed += b.Elapsed
	a.Scheduled += b.Scheduled
	a.Delayed += b.Delayed
	a.Unstarted += b.Unstarted
	a.MaxStartLag = max(a.MaxStartLag, b.MaxStartLag)
	return a
}

// newResult returns an empty result of a run through clients clients.
func newResult(clients int) *Result {
	return &Result{PerReplica: map[string]int{}, PerClient: make([]int, clients)}
}

// record adds the outcome of one order, placed through client.
func (r *Result) record(client int, replica string, latency time.Duration, err error) {
	if err != nil {
		r.Errors = append(r.Errors, err)
		return
	}
	r.Latencies = append(r.Latencies, latency)
	r.PerReplica[replica]++
	r.PerClient[client]++
}

// callTimeout bounds every call a run makes.
const callTimeout = 10 * time.Second

// placeOrder places one small order as token's customer, under key, and
// returns the replica that charged it.
func placeOrder(ctx context.Context, c ordersv1connect.OrderServiceClient, token, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	req := connect.NewRequest(&ordersv1.CreateOrderRequest{
		Items:          []*ordersv1.CartItem{{ProductId: "sticker-pack", Quantity: 1}},
		PaymentToken:   "tok_visa",
		IdempotencyKey: key,
	})
	req.Header().Set("Authorization", "Bearer "+token)
	resp, err := c.CreateOrder(ctx, req)
	if err != nil {
		return "", err
	}
	return resp.Msg.GetOrder().GetPaymentReplica(), nil
}

// session starts a customer session and returns its token.
func session(ctx context.Context, c ordersv1connect.OrderServiceClient) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	resp, err := c.CreateSession(ctx, connect.NewRequest(&ordersv1.CreateSessionRequest{}))
	if err != nil {
		return "", fmt.Errorf("create session: %w", err)
	}
	return resp.Msg.GetToken(), nil
}
