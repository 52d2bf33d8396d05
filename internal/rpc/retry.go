package rpc

import (
	"context"
	"math/rand/v2"
	"time"

	"connectrpc.com/connect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// RetryInterceptor retries a unary call that failed in a way another attempt
// may fix — UNAVAILABLE (replica down, connection refused), an attempt running
// out of its own time, or the transport breaking mid-call (a reset connection
// surfaces as CANCELED or UNKNOWN although the caller cancelled nothing) — up
// to attempts times in all, waiting an exponential backoff with full jitter
// between attempts and never past the call's own deadline. Each attempt gets
// at most attemptTimeout, so a hung replica costs one attempt, not the whole
// call. Nothing is retried once the caller's context is done.
//
// It retries only procedures whose schema declares them IDEMPOTENT or
// NO_SIDE_EFFECTS: sending those twice is safe by contract (payments' Charge
// and Refund are keyed by an idempotency key and a payment id). Anything else
// gets one attempt.
//
// Each retry is an event on the span in the call's context, and is passed to
// onRetry (nil: nobody is told) with the error that caused it.
func RetryInterceptor(attempts int, attemptTimeout, backoff time.Duration, onRetry func(connect.Spec, error)) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if req.Spec().IdempotencyLevel == connect.IdempotencyUnknown {
				return next(ctx, req)
			}
			for attempt := 1; ; attempt++ {
				attemptCtx, cancel := context.WithTimeout(ctx, attemptTimeout)
				resp, err := next(attemptCtx, req)
				cancel()
				if err == nil || attempt == attempts || ctx.Err() != nil || !retryable(err) {
					return resp, err
				}
				wait := time.Duration(rand.Int64N(int64(backoff) << (attempt - 1)))
				if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
					return resp, err // no time left for another attempt
				}
				trace.SpanFromContext(ctx).AddEvent("retry", trace.WithAttributes(
					attribute.String("rpc.method", req.Spec().Procedure),
					attribute.Int("attempt", attempt+1),
					attribute.String("after", connect.CodeOf(err).String()),
					attribute.Int64("backoff_ms", wait.Milliseconds())))
				if onRetry != nil {
					onRetry(req.Spec(), err)
				}
				select {
				case <-ctx.Done():
					return resp, err
				case <-time.After(wait):
				}
			}
		}
	}
}

func retryable(err error) bool {
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeCanceled, connect.CodeUnknown:
		// The caller's own cancellation or deadline is checked before this.
		return true
	}
	return false
}
