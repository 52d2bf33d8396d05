package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/payments"
	paymentssqlite "github.com/connectshop/connectshop/payments/sqlite"
)

// Orders' admin listener: liveness, readiness and pprof answer; after a
// paid and a declined order /metrics has its calls, its calls to payments,
// its orders by outcome, its payment calls by replica, its replicas by
// health and its store latencies, and nothing of payments, with no id as a
// label. Once its only payments replica is gone it is not ready, naming
// payments, and still alive.
func TestAdminServesMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "service.key")
	if err := auth.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	paymentsURL, stopPayments := startReplica(t, "payments-7", filepath.Join(dir, "payments.db"), key)

	args := []string{"orders", "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-db", filepath.Join(dir, "orders.db"),
		"-payments", paymentsURL, "-service-key-file", keyFile}
	logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, args, func(string) string { return "" }, stderr)
	})
	url := "http://" + logs.WaitFor(t, regexp.MustCompile(`msg=serving service=orders addr=(\S+)`))[1]
	admin := "http://" + logs.WaitFor(t, regexp.MustCompile(`msg=serving service=orders listener=admin addr=(\S+)`))[1]
	cmdtest.CheckAdmin(t, admin)

	o := cmdtest.PaidAndDeclined(t, url, connect.WithGRPCWeb(), connect.WithGRPC())

	const createOrder, charge = "/orders.v1.OrderService/CreateOrder", "/payments.v1.PaymentService/Charge"
	metrics := cmdtest.Scrape(t, admin+"/metrics")
	metrics.Check(t, []cmdtest.Want{
		cmdtest.AtLeast(1, "rpc_server_duration_seconds", "server", "orders", "procedure", createOrder, "protocol", "grpcweb", "code", "ok"),
		cmdtest.AtLeast(1, "rpc_server_duration_seconds", "server", "orders", "procedure", createOrder, "protocol", "grpc", "code", "failed_precondition"),
		cmdtest.AtLeast(1, "rpc_client_duration_seconds", "server", "orders", "procedure", charge, "protocol", "grpc", "code", "ok"),
		cmdtest.AtLeast(1, "rpc_client_duration_seconds", "server", "orders", "procedure", charge, "protocol", "grpc", "code", "failed_precondition"),
		cmdtest.AtLeast(1, "orders_created_total", "server", "orders", "outcome", "paid"),
		cmdtest.AtLeast(1, "orders_created_total", "server", "orders", "outcome", "declined"),
		cmdtest.AtLeast(2, "orders_payment_calls_total", "server", "orders", "replica", "payments-7"),
		cmdtest.AtLeast(1, "orders_payment_replicas", "server", "orders", "state", "healthy"),
		cmdtest.AtLeast(0, "orders_watchers", "server", "orders"),
		cmdtest.AtLeast(2, "store_operation_duration_seconds", "server", "orders", "operation", "Create"),
		cmdtest.AtLeast(2, "store_operation_duration_seconds", "server", "orders", "operation", "Update"),
	}, o.GetId(), o.GetPaymentId(), o.GetCustomerId(), o.GetTraceId())
	if metrics["orders_watchers"] == nil {
		t.Error("no orders_watchers")
	}
	for name := range metrics {
		if strings.HasPrefix(name, "payments_") {
			t.Errorf("orders exports %s", name)
		}
	}

	if err := stopPayments(); err != nil {
		t.Fatalf("payments: %v", err)
	}
	var body string
	cmdtest.WaitFor(t, 8*time.Second, "/readyz still 200 with payments gone", func() bool {
		var code int
		code, body = cmdtest.Get(t, admin+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "payments") {
		t.Errorf("/readyz with payments gone: %q, want it to name payments", body)
	}
	if code, _ := cmdtest.Get(t, admin+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with payments gone: %d, want 200", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}

// startReplica serves a payments replica on a loopback port and returns its
// URL and a function that stops it (the test's end does too).
func startReplica(t *testing.T, name, db string, key auth.Key) (string, func() error) {
	t.Helper()
	store, err := paymentssqlite.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	replica, err := payments.New(payments.Config{Name: name, Store: store, ServiceKey: key})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		replica.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- replica.Serve(ctx, lis) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-served:
			return errors.Join(err, replica.Close())
		case <-time.After(15 * time.Second):
			return errors.New("payments did not stop within 15s")
		}
	})
	t.Cleanup(func() { stop() })
	return "http://" + lis.Addr().String(), stop
}
