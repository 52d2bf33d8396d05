package payments

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"connectrpc.com/connect"
)

// Faults makes a replica misbehave on purpose, for demos and tests of what
// orders does about it. The zero value injects nothing.
type Faults struct {
	// Latency is added before every PaymentService call is handled.
	Latency time.Duration
	// ErrorRate is the share of PaymentService calls, from 0 to 1, that fail
	// with UNAVAILABLE before doing anything, as an overloaded replica would.
	ErrorRate float64
}

// enabled reports whether f injects anything.
func (f Faults) enabled() bool { return f.Latency > 0 || f.ErrorRate > 0 }

// validate reports flag values that make no sense.
func (f Faults) validate() error {
	if f.Latency < 0 {
		return errors.New("fault latency must not be negative")
	}
	if f.ErrorRate < 0 || f.ErrorRate > 1 {
		return errors.New("fault error rate must be between 0 and 1")
	}
	return nil
}

// interceptor injects f into every unary call it wraps.
func (f Faults) interceptor() connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if f.Latency > 0 {
				t := time.NewTimer(f.Latency)
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, ctx.Err()
				case <-t.C:
				}
			}
			if f.ErrorRate > 0 && rand.Float64() < f.ErrorRate {
				return nil, connect.NewError(connect.CodeUnavailable, errors.New("injected fault: replica unavailable"))
			}
			return next(ctx, req)
		}
	}
}
