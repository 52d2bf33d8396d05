package load

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/orders"
)

// DefaultMaxInFlight is how many calls a [FixedRate] run has in flight at
// most, unless it says otherwise.
const DefaultMaxInFlight = 1024

// sessionWorkers is how many sessions a [FixedRate] run creates at once
// before it starts.
const sessionWorkers = 8

// FixedRate describes an open-loop run: order i is due Rate orders per second
// after the start, at start + i/Rate, and starts then whatever the server
// does, however many earlier orders are still unanswered. The run schedules
// Orders orders, or as many as are due within Duration, whichever is fewer; a
// zero bound is no bound, and with neither set, or Rate <= 0, nothing runs.
//
// Its latencies are measured from each order's scheduled start, not from
// when the call was made, so a server that stalls is charged for the time
// every order due meanwhile waited: a closed loop ([Load]) would instead
// stop sending while it waits, and report only the one slow call
// ("coordinated omission"). Calls in flight are bounded by MaxInFlight
// (default [DefaultMaxInFlight]): an order due while that many are
// unanswered waits for a slot and starts late (Result.Delayed; the wait is in
// its latency), and one still waiting when Duration is over never starts
// (Result.Unstarted). The run then waits for the calls in flight, each
// bounded by a 10 s deadline like every other call; it stops early, without
// waiting for due orders, if ctx ends.
//
// Customers rotate per batch of the schedule: orders i*P to i*P+P-1 are the
// i-th customer's, with P = OrdersPerSession (default
// [orders.DefaultOrderBurst]), and that customer never places another. As
// in [Load], a customer places at most one burst, so the shop's per-customer
// rate limit never refuses an order, at any Rate and whatever the shop's
// refill rate: the run measures the shop, not its limiter. Such a batch
// arrives within P/Rate seconds (20 ms at 1,000/s). The alternative, a fixed
// set of customers served round-robin, would need Rate/refill of them (200 at
// 1,000/s against 5/s each) and would be refused as soon as the shop's
// -order-rate is lower than assumed, or arrivals bunch. The run needs
// ceil(N/P) sessions for N scheduled orders (500 for 1,000/s for 10 s): it
// creates them all before its clock starts, [sessionWorkers] at a time, so
// neither their time nor their traffic is in the measurement. If one fails,
// the run does not start.
//
// Given several clients (say one per orders instance), the run deals the
// customers out round-robin: the i-th customer's session and every order of
// its batch go through client i mod len(cs), so each instance gets every
// len(cs)-th batch, and a customer stays on one instance. With no client,
// nothing runs.
type FixedRate struct {
	Rate             float64 // orders per second
	Orders           int
	Duration         time.Duration
	MaxInFlight      int
	OrdersPerSession int
}

// offset is when order i is due, after the start.
func (l FixedRate) offset(i int) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / l.Rate)
}

// planned is how many orders the run schedules: those due before Duration.
func (l FixedRate) planned() int {
	if !(l.Rate > 0) || math.IsInf(l.Rate, 0) || (l.Orders <= 0 && l.Duration <= 0) {
		return 0
	}
	n := math.MaxInt32
	if l.Duration > 0 {
		n = int(min(math.Ceil(l.Duration.Seconds()*l.Rate), math.MaxInt32))
		for n > 0 && l.offset(n-1) >= l.Duration { // exact, whatever the rounding
			n--
		}
		for n < math.MaxInt32 && l.offset(n) < l.Duration {
			n++
		}
	}
	if l.Orders > 0 {
		n = min(n, l.Orders)
	}
	return n
}

// Run places orders through cs on l's schedule and records who charged them
// and how long after its scheduled start each was answered.
func (l FixedRate) Run(ctx context.Context, cs ...ordersv1connect.OrderServiceClient) *Result {
	res := newResult(len(cs))
	n := l.planned()
	if n == 0 || len(cs) == 0 || ctx.Err() != nil {
		return res
	}
	per := l.OrdersPerSession
	if per <= 0 {
		per = orders.DefaultOrderBurst
	}
	inFlight := l.MaxInFlight
	if inFlight <= 0 {
		inFlight = DefaultMaxInFlight
	}
	tokens, err := newSessions(ctx, cs, (n+per-1)/per)
	if err != nil {
		if ctx.Err() == nil {
			res.Errors = append(res.Errors, err)
		}
		return res
	}
	res.Sessions = tokens

	var (
		mu    sync.Mutex // guards res while calls are in flight
		wg    sync.WaitGroup
		slots = make(chan struct{}, inFlight)
		start = time.Now()
		due   = func(i int) time.Time { return start.Add(l.offset(i)) }
		timer = time.NewTimer(time.Hour)
		end   <-chan time.Time // never, without a Duration

		started, delayed, unstarted int
		maxLag                      time.Duration
	)
	timer.Stop()
	if l.Duration > 0 {
		endTimer := time.NewTimer(l.Duration)
		defer endTimer.Stop()
		end = endTimer.C
	}
	stopped := -1 // the first order not started, if the run stopped early
schedule:
	for i := range n {
		at := due(i)
		if wait := time.Until(at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				stopped = i
				break schedule
			}
		}
		if ctx.Err() != nil {
			stopped = i
			break
		}
		select {
		case slots <- struct{}{}:
		default:
			delayed++
			select {
			case slots <- struct{}{}:
			case <-end:
				stopped = i
				break schedule
			case <-ctx.Done():
				stopped = i
				break schedule
			}
		}
		maxLag = max(maxLag, time.Since(at))
		started++
		token, ci := tokens[i/per], (i/per)%len(cs)
		wg.Go(func() {
			defer func() { <-slots }()
			replica, err := placeOrder(ctx, cs[ci], token, fmt.Sprintf("rate-%d-%d", start.UnixNano(), i))
			latency := time.Since(at)
			mu.Lock()
			res.record(ci, replica, latency, err)
			mu.Unlock()
		})
	}
	timer.Stop()
	if stopped >= 0 {
		now := time.Now()
		for j := stopped; j < n && !due(j).After(now); j++ {
			unstarted++
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Scheduled, res.Delayed, res.Unstarted, res.MaxStartLag = started+unstarted, delayed, unstarted, maxLag
	slices.Sort(res.Latencies)
	return res
}

// newSessions starts count customer sessions, sessionWorkers at a time, the
// i-th through cs[i mod len(cs)], and returns their tokens, or the first
// error.
func newSessions(ctx context.Context, cs []ordersv1connect.OrderServiceClient, count int) ([]string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	tokens := make([]string, count)
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	for range min(count, sessionWorkers) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= count || ctx.Err() != nil {
					return
				}
				token, err := session(ctx, cs[i%len(cs)])
				if err != nil {
					cancel(err)
					return
				}
				tokens[i] = token
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return tokens, nil
}
