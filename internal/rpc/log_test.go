package rpc_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/connectshop/connectshop/internal/rpc"
)

// stuck answers a Charge only when its client has gone, with the kind of
// error a broken connection gives (code unknown).
type stuck struct {
	paymentsv1connect.UnimplementedPaymentServiceHandler
	entered chan struct{}
}

func (s stuck) Charge(ctx context.Context, _ *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	close(s.entered)
	<-ctx.Done()
	return nil, errors.New("write: broken pipe")
}

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

// A client that gives up is logged as canceled below Warn, not as a server
// error with code unknown.
func TestCanceledCallsAreNotErrors(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h := stuck{entered: make(chan struct{})}
	mux := rpc.NewServeMux(grpchealth.NewStaticChecker(paymentsv1connect.PaymentServiceName), paymentsv1connect.PaymentServiceName)
	mux.Handle(paymentsv1connect.NewPaymentServiceHandler(h, rpc.HandlerOptions(logger, "payments-1")))
	srv := memhttptest.NewServer(t, rpc.Middleware(mux, nil))
	c := paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(), connect.WithGRPC())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{}))
		done <- err
	}()
	<-h.entered
	cancel()
	if err := <-done; connect.CodeOf(err) != connect.CodeCanceled {
		t.Fatalf("client: got %v, want canceled", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), "Charge") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polls for the line the server writes after the client left
	}
	got := logs.String()
	if !strings.Contains(got, "level=DEBUG") || !strings.Contains(got, "code=canceled") || strings.Contains(got, "level=ERROR") {
		t.Errorf("got log %q, want one DEBUG line with code=canceled and no ERROR", got)
	}
}
