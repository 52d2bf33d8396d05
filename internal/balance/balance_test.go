package balance_test

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/balance"
	"github.com/connectshop/connectshop/internal/rpc"
)

// replica is a payments stand-in that counts Charge calls and fails them
// all if broken; its health check says SERVING either way, as a replica whose
// dependency broke would.
type replica struct {
	paymentsv1connect.UnimplementedPaymentServiceHandler
	broken atomic.Bool
	calls  atomic.Int32
}

func (r *replica) Charge(context.Context, *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	r.calls.Add(1)
	if r.broken.Load() {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("broken"))
	}
	return connect.NewResponse(&paymentsv1.ChargeResponse{}), nil
}

// serve runs h on a loopback port until the test ends; httplb dials real
// addresses.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewHTTPServer(h, slog.New(slog.DiscardHandler))
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return "http://" + lis.Addr().String()
}

func serveReplica(t *testing.T, r *replica, withHealth bool) string {
	t.Helper()
	mux := http.NewServeMux()
	if withHealth {
		mux = rpc.NewServeMux(grpchealth.NewStaticChecker(paymentsv1connect.PaymentServiceName), paymentsv1connect.PaymentServiceName)
	}
	mux.Handle(paymentsv1connect.NewPaymentServiceHandler(r))
	return serve(t, mux)
}

func newClient(t *testing.T, target string) (*balance.Client, paymentsv1connect.PaymentServiceClient) {
	t.Helper()
	lb, err := balance.NewClient(target, balance.WithHealthCheck(paymentsv1connect.PaymentServiceName, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	return lb, paymentsv1connect.NewPaymentServiceClient(lb.Client.Client, lb.BaseURL(), connect.WithGRPC())
}

// waitFor waits up to d for cond to hold, and fails the test if it does not.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(d)
	for !cond() {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("%s: not within %v", what, d)
		}
	}
}

func charge(c paymentsv1connect.PaymentServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := c.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{}))
	return err
}

// A replica that fails every call while its health check still passes is
// ejected after two failures, long before round robin would stop sending.
func TestFailingReplicaIsEjected(t *testing.T) {
	t.Parallel()
	good, bad := &replica{}, &replica{}
	bad.broken.Store(true)
	goodAddr, badAddr := serveReplica(t, good, true), serveReplica(t, bad, true)
	lb, c := newClient(t, goodAddr+","+badAddr)
	for range 40 {
		charge(c)
	}
	if n := bad.calls.Load(); n > 4 {
		t.Errorf("broken replica got %d of 40 calls, want it ejected after 2", n)
	}
	if good.calls.Load() < 36 {
		t.Errorf("good replica got %d of 40 calls", good.calls.Load())
	}

	if got := lb.Health()[strings.TrimPrefix(badAddr, "http://")]; got != balance.Ejected {
		t.Errorf("broken replica is %s, want %s", got, balance.Ejected)
	}

	// Repaired, it is back once the ejection (5 s) ends and a health check
	// has passed.
	bad.broken.Store(false)
	bad.calls.Store(0)
	waitFor(t, 8*time.Second, "repaired replica healthy again", func() bool { return lb.Healthy() == 2 })
	for range 10 {
		if err := charge(c); err != nil {
			t.Fatal(err)
		}
	}
	if bad.calls.Load() == 0 {
		t.Error("repaired replica got none of 10 calls")
	}
}

// A replica that fails its gRPC health check gets no calls: here it does not
// serve the health protocol at all.
func TestUnhealthyReplicaGetsNoCalls(t *testing.T) {
	t.Parallel()
	healthy, unchecked := &replica{}, &replica{}
	lb, c := newClient(t, serveReplica(t, healthy, true)+","+serveReplica(t, unchecked, false))
	// Until a replica's first check has answered, httplb may pick it (it
	// keeps up to three replicas usable, taking ones of unknown health when
	// fewer are healthy). Count once both have been checked.
	waitFor(t, 5*time.Second, "both replicas checked", func() bool {
		states := lb.Health()
		return len(states) == 2 && slices.Contains(slices.Collect(maps.Values(states)), balance.Healthy) &&
			slices.Contains(slices.Collect(maps.Values(states)), balance.Unhealthy)
	})
	for range 20 {
		if err := charge(c); err != nil {
			t.Fatal(err)
		}
	}
	if n := unchecked.calls.Load(); n != 0 {
		t.Errorf("replica without health got %d calls, want 0", n)
	}
}

func TestNewClientRejectsBadTargets(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"", "localhost:8081", "ftp://x:1", "http://x", "http://x:1/path", "dns:///nameonly", "dns:///:80"} {
		if _, err := balance.NewClient(target); err == nil {
			t.Errorf("NewClient(%q): got no error", target)
		}
	}
}

// A replica that goes away between calls is found out by its health checks
// alone: unhealthy, not ejected (no call failed), and healthy again at the
// first check that passes once it is back, not 5 s later.
func TestHealthChecksDoNotEject(t *testing.T) {
	t.Parallel()
	good, gone := &replica{}, &replica{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	mux := rpc.NewServeMux(grpchealth.NewStaticChecker(paymentsv1connect.PaymentServiceName), paymentsv1connect.PaymentServiceName)
	mux.Handle(paymentsv1connect.NewPaymentServiceHandler(gone))
	srv := rpc.NewHTTPServer(mux, slog.New(slog.DiscardHandler))
	go srv.Serve(lis)
	var ejections atomic.Int32
	lb, err := balance.NewClient(serveReplica(t, good, true)+",http://"+addr,
		balance.WithHealthCheck(paymentsv1connect.PaymentServiceName, 100*time.Millisecond),
		balance.WithOnEject(func(string) { ejections.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lb.Close() })
	waitFor(t, 5*time.Second, "both replicas healthy", func() bool { return lb.Healthy() == 2 })

	srv.Close()
	waitFor(t, 5*time.Second, "the stopped replica unhealthy", func() bool { return lb.Health()[addr] == balance.Unhealthy })
	time.Sleep(500 * time.Millisecond) // five more failed checks
	if state := lb.Health()[addr]; state != balance.Unhealthy {
		t.Errorf("stopped replica is %s after failing its checks, want %s", state, balance.Unhealthy)
	}
	if n := ejections.Load(); n != 0 {
		t.Errorf("%d ejections with no call made, want 0", n)
	}

	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv = rpc.NewHTTPServer(mux, slog.New(slog.DiscardHandler))
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	start := time.Now()
	waitFor(t, 3*time.Second, "the restarted replica healthy", func() bool { return lb.Healthy() == 2 })
	t.Logf("healthy again %v after it was back", time.Since(start))
}
