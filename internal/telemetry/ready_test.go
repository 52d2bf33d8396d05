package telemetry

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
)

const service = "payments.v1.PaymentService"

// switchable is a check that fails while its err is set.
type switchable struct{ err atomic.Pointer[error] }

func (s *switchable) fail(err error) { s.err.Store(&err) }
func (s *switchable) pass()          { s.err.Store(nil) }
func (s *switchable) check(context.Context) error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// healthClient asks a gRPC health handler for checker's statuses, as
// kubelet's probes and orders' balancer do.
func healthClient(t *testing.T, checker grpchealth.Checker) func(service string) (grpchealth.Status, error) {
	srv := memhttptest.NewServer(t, handlerOf(grpchealth.NewHandler(checker)))
	client := grpchealth.NewClient(srv.Client(), srv.URL(), connect.WithGRPC())
	return func(service string) (grpchealth.Status, error) {
		resp, err := client.Check(t.Context(), &grpchealth.CheckRequest{Service: service})
		if err != nil {
			return 0, err
		}
		return resp.Status, nil
	}
}

func TestHealthFollowsReadiness(t *testing.T) {
	db := new(switchable)
	r := NewReadiness(Check{"database", db.check})
	status := healthClient(t, r.HealthChecker(service))
	want := func(svc string, st grpchealth.Status) {
		t.Helper()
		if got, err := status(svc); err != nil || got != st {
			t.Errorf("status of %q: %v, %v; want %v", svc, got, err, st)
		}
	}

	want(service, grpchealth.StatusNotServing) // not checked yet
	want("", grpchealth.StatusServing)         // the process lives
	if err := r.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	want(service, grpchealth.StatusServing)

	db.fail(errors.New("connection refused"))
	err := r.Check(t.Context())
	if err == nil || !strings.Contains(err.Error(), "database: connection refused") {
		t.Errorf("Check: %v, want the failed check named", err)
	}
	want(service, grpchealth.StatusNotServing)
	want("", grpchealth.StatusServing) // not ready is not dead

	db.pass()
	if err := r.Check(t.Context()); err != nil {
		t.Fatal(err)
	}
	want(service, grpchealth.StatusServing)

	r.Drain()
	want(service, grpchealth.StatusNotServing)
	want("", grpchealth.StatusNotServing)
	if err := r.Check(t.Context()); !errors.Is(err, ErrDraining) {
		t.Errorf("Check after Drain: %v, want ErrDraining", err)
	}
	want(service, grpchealth.StatusNotServing) // passing checks do not undo Drain

	if _, err := status("other.v1.Service"); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("unknown service: %v, want not_found", err)
	}
	late := r.HealthChecker(service)
	if resp, _ := late.Check(t.Context(), &grpchealth.CheckRequest{}); resp.Status != grpchealth.StatusNotServing {
		t.Errorf("checker made after Drain: %v, want NOT_SERVING", resp.Status)
	}
}

func TestChecksRunTogetherEachWithATimeout(t *testing.T) {
	stuck := func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}
	r := NewReadiness(Check{"first", stuck}, Check{"second", stuck}, Check{"fine", func(context.Context) error { return nil }})
	r.timeout = 100 * time.Millisecond
	start := time.Now()
	err := r.Check(t.Context())
	if took := time.Since(start); took > time.Second {
		t.Errorf("two stuck checks took %v: not bounded, or not run at once", took)
	}
	if err == nil || !strings.Contains(err.Error(), "first: context deadline exceeded") ||
		!strings.Contains(err.Error(), "second: context deadline exceeded") || strings.Contains(err.Error(), "fine") {
		t.Errorf("Check: %v, want first and second named as timed out, fine not", err)
	}
}

func TestRunChecksUntilDoneThenDrains(t *testing.T) {
	var calls atomic.Int32
	r := NewReadiness(Check{"counted", func(context.Context) error { calls.Add(1); return nil }})
	checker := r.HealthChecker(service)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		r.Run(ctx, 5*time.Millisecond)
		close(done)
	}()
	for calls.Load() < 3 {
		time.Sleep(time.Millisecond)
	}
	if resp, _ := checker.Check(t.Context(), &grpchealth.CheckRequest{Service: service}); resp.Status != grpchealth.StatusServing {
		t.Errorf("while running and passing: %v, want SERVING", resp.Status)
	}
	cancel()
	<-done
	for _, svc := range []string{service, ""} {
		if resp, _ := checker.Check(t.Context(), &grpchealth.CheckRequest{Service: svc}); resp.Status != grpchealth.StatusNotServing {
			t.Errorf("%q after Run: %v, want NOT_SERVING", svc, resp.Status)
		}
	}
}
