package telemetry

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
)

// paymentsStub answers GetPayment for any id but "missing" (NOT_FOUND), and
// logs a line in the call's context if it has a logger.
type paymentsStub struct {
	paymentsv1connect.UnimplementedPaymentServiceHandler
	logger *slog.Logger
}

func (s paymentsStub) GetPayment(ctx context.Context, req *connect.Request[paymentsv1.GetPaymentRequest]) (*connect.Response[paymentsv1.GetPaymentResponse], error) {
	if s.logger != nil {
		s.logger.InfoContext(ctx, "looking up payment", "id", req.Msg.GetId())
	}
	if req.Msg.GetId() == "missing" {
		return nil, connect.NewError(connect.CodeNotFound, errors.New("payment not found"))
	}
	return connect.NewResponse(&paymentsv1.GetPaymentResponse{Payment: &paymentsv1.Payment{
		Id:        req.Msg.GetId(),
		Status:    paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED,
		Amount:    &paymentsv1.Money{CurrencyCode: "USD", MinorUnits: 1299},
		Reference: "ord_1",
		Replica:   "payments-1",
	}}), nil
}

func newPaymentsMux(opts ...connect.HandlerOption) *http.ServeMux {
	return newPaymentsMuxFor(paymentsStub{}, opts...)
}

func newPaymentsMuxFor(h paymentsv1connect.PaymentServiceHandler, opts ...connect.HandlerOption) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle(paymentsv1connect.NewPaymentServiceHandler(h, opts...))
	return mux
}

// syncBuffer is a log destination that handlers and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// handlerOf serves h at path, as connect's handler constructors return them.
func handlerOf(path string, h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(path, h)
	return mux
}
