package rpc_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/connectshop/connectshop/internal/rpc"
)

// flaky answers Charge (IDEMPOTENT) and CreateOrder (no idempotency level)
// with errCode until failures calls have failed, or after a delay.
type flaky struct {
	paymentsv1connect.UnimplementedPaymentServiceHandler
	ordersv1connect.UnimplementedOrderServiceHandler
	failures int32
	errCode  connect.Code
	delay    time.Duration // of the first call
	calls    atomic.Int32
}

func (f *flaky) answer(ctx context.Context) error {
	n := f.calls.Add(1)
	if n == 1 && f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if n <= f.failures {
		return connect.NewError(f.errCode, errors.New("flaky"))
	}
	return nil
}

func (f *flaky) Charge(ctx context.Context, _ *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	if err := f.answer(ctx); err != nil {
		return nil, err
	}
	return connect.NewResponse(&paymentsv1.ChargeResponse{}), nil
}

func (f *flaky) CreateOrder(ctx context.Context, _ *connect.Request[ordersv1.CreateOrderRequest]) (*connect.Response[ordersv1.CreateOrderResponse], error) {
	if err := f.answer(ctx); err != nil {
		return nil, err
	}
	return connect.NewResponse(&ordersv1.CreateOrderResponse{}), nil
}

func TestRetryInterceptor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		server    *flaky
		orders    bool // call CreateOrder instead of Charge
		wantCode  connect.Code
		wantCalls int32
	}{
		{"idempotent, recovers", &flaky{failures: 2, errCode: connect.CodeUnavailable}, false, 0, 3},
		{"idempotent, gives up after 4", &flaky{failures: 9, errCode: connect.CodeUnavailable}, false, connect.CodeUnavailable, 4},
		{"idempotent, slow attempt", &flaky{delay: time.Second}, false, 0, 2},
		{"idempotent, stream broken", &flaky{failures: 1, errCode: connect.CodeCanceled}, false, 0, 2},
		{"not retryable code", &flaky{failures: 9, errCode: connect.CodeFailedPrecondition}, false, connect.CodeFailedPrecondition, 1},
		{"not idempotent", &flaky{failures: 9, errCode: connect.CodeUnavailable}, true, connect.CodeUnavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			mux := rpc.NewServeMux(grpchealth.NewStaticChecker())
			mux.Handle(paymentsv1connect.NewPaymentServiceHandler(tt.server))
			mux.Handle(ordersv1connect.NewOrderServiceHandler(tt.server))
			srv := memhttptest.NewServer(t, mux)
			retry := connect.WithInterceptors(rpc.RetryInterceptor(4, 200*time.Millisecond, 10*time.Millisecond, nil))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var err error
			if tt.orders {
				_, err = ordersv1connect.NewOrderServiceClient(srv.Client(), srv.URL(), connect.WithGRPC(), retry).
					CreateOrder(ctx, connect.NewRequest(&ordersv1.CreateOrderRequest{}))
			} else {
				_, err = paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(), connect.WithGRPC(), retry).
					Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{}))
			}
			if got := connect.CodeOf(err); (err == nil) != (tt.wantCode == 0) || (err != nil && got != tt.wantCode) {
				t.Errorf("got %v, want code %v", err, tt.wantCode)
			}
			if got := tt.server.calls.Load(); got != tt.wantCalls {
				t.Errorf("got %d calls, want %d", got, tt.wantCalls)
			}
		})
	}
}

// Retries never outlive the caller's deadline.
func TestRetryInterceptorRespectsDeadline(t *testing.T) {
	t.Parallel()
	server := &flaky{failures: 1000, errCode: connect.CodeUnavailable}
	mux := rpc.NewServeMux(grpchealth.NewStaticChecker())
	mux.Handle(paymentsv1connect.NewPaymentServiceHandler(server))
	srv := memhttptest.NewServer(t, mux)
	c := paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(), connect.WithGRPC(),
		connect.WithInterceptors(rpc.RetryInterceptor(1000, time.Second, 50*time.Millisecond, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{})); err == nil {
		t.Fatal("got success, want an error")
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("returned after %v, want by the 300ms deadline", d)
	}
}
