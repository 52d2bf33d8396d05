package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/internal/rpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// health asks the gRPC health service at baseURL for service's status, with
// grpc-go over a connection of its own, as a probe does.
func health(t *testing.T, baseURL, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+strings.TrimPrefix(baseURL, "http://"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health of %q: %v", service, err)
	}
	return resp.GetStatus()
}

func order(token string) *connect.Request[ordersv1.CreateOrderRequest] {
	return connect.NewRequest(&ordersv1.CreateOrderRequest{
		Items:        []*ordersv1.CartItem{{ProductId: "protobuf-mug", Quantity: 1}},
		PaymentToken: token,
	})
}

// The shop's admin listener: liveness, readiness and pprof answer, and
// after a paid and a declined order /metrics has the RPC histograms of
// orders and of the replicas, the shop's own figures and the store
// latencies, with labels from small, fixed sets: never an order, payment or
// customer id. Stopped with a drain delay, the shop turns not ready first.
func TestAdminServesMetrics(t *testing.T) {
	t.Parallel()
	args := []string{"shop", "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-replicas", "2", "-data", t.TempDir(), "-drain-delay", "1s"}
	logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, args, func(string) string { return "" }, stderr)
	})
	m := logs.WaitFor(t, regexp.MustCompile(`msg="shop is open" page=(http://\S+) .*admin=(http://\S+)/metrics`))
	baseURL, admin := m[1], m[2]

	cmdtest.CheckAdmin(t, admin)

	o := cmdtest.PaidAndDeclined(t, baseURL, connect.WithGRPC(), connect.WithProtoJSON())

	const createOrder, charge = "/orders.v1.OrderService/CreateOrder", "/payments.v1.PaymentService/Charge"
	metrics := cmdtest.Scrape(t, admin+"/metrics")
	metrics.Check(t, []cmdtest.Want{
		cmdtest.AtLeast(1, "rpc_server_duration_seconds", "server", "orders", "procedure", createOrder, "protocol", "grpc", "code", "ok"),
		cmdtest.AtLeast(1, "rpc_server_duration_seconds", "server", "orders", "procedure", createOrder, "protocol", "connect", "code", "failed_precondition"),
		cmdtest.AtLeast(1, "rpc_client_duration_seconds", "server", "orders", "procedure", charge, "protocol", "grpc", "code", "ok"),
		cmdtest.AtLeast(1, "rpc_client_duration_seconds", "server", "orders", "procedure", charge, "protocol", "grpc", "code", "failed_precondition"),
		cmdtest.AtLeast(1, "rpc_server_duration_seconds", "server", o.GetPaymentReplica(), "procedure", charge, "protocol", "grpc", "code", "ok"),
		cmdtest.AtLeast(1, "rpc_server_duration_seconds", "procedure", charge, "protocol", "grpc", "code", "failed_precondition"),
		cmdtest.AtLeast(1, "orders_created_total", "server", "orders", "outcome", "paid"),
		cmdtest.AtLeast(1, "orders_created_total", "server", "orders", "outcome", "declined"),
		cmdtest.AtLeast(1, "payments_charges_total", "server", o.GetPaymentReplica(), "outcome", "captured"),
		cmdtest.AtLeast(1, "payments_charges_total", "outcome", "declined"),
		cmdtest.AtLeast(1, "orders_payment_calls_total", "server", "orders", "replica", o.GetPaymentReplica()),
		cmdtest.AtLeast(2, "orders_payment_calls_total", "server", "orders"),
		cmdtest.AtLeast(2, "orders_payment_replicas", "server", "orders", "state", "healthy"),
		cmdtest.AtLeast(2, "store_operation_duration_seconds", "server", "orders", "operation", "Create"),
		cmdtest.AtLeast(2, "store_operation_duration_seconds", "server", "orders", "operation", "Update"),
		cmdtest.AtLeast(1, "store_operation_duration_seconds", "server", o.GetPaymentReplica(), "operation", "Charge"),
	}, o.GetId(), o.GetPaymentId(), o.GetCustomerId(), o.GetTraceId())
	if got := metrics.Total("orders_created_total", nil); got != 2 {
		t.Errorf("orders_created_total: %v in all, want 2", got)
	}
	if got := metrics.Series("orders_watchers", map[string]string{"server": "orders"}); len(got) != 1 || got[0].GetGauge().GetValue() != 0 {
		t.Errorf("orders_watchers{server=orders}: %v, want one series, 0", got)
	}
	// One writer loop per SQLite file, exported once: the payments replicas
	// share theirs, and payments-1 opened it.
	var writers []string
	for _, s := range metrics.Series("sqlite_commit_group_size", nil) {
		for _, l := range s.GetLabel() {
			if l.GetName() == "server" {
				writers = append(writers, l.GetValue())
			}
		}
	}
	if slices.Sort(writers); !slices.Equal(writers, []string{"orders", "payments-1"}) {
		t.Errorf("sqlite_commit_group_size exported by %v, want [orders payments-1]", writers)
	}

	// Stopping: the shop keeps serving for -drain-delay, not ready and
	// NOT_SERVING meanwhile, then stops.
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	cmdtest.WaitFor(t, 500*time.Millisecond, "/readyz still 200 while draining", func() bool {
		code, _ := cmdtest.Get(t, admin+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if code, _ := cmdtest.Get(t, admin+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while draining: %d, want 200: the process is alive", code)
	}
	if got := health(t, baseURL, ""); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health of orders while draining: %v, want NOT_SERVING", got)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run: %v", err)
	}
}

// In JSON logs at debug, orders' line for a CreateOrder call and the line
// for its Charge on the payments replica that charged name the same trace:
// the one the order records.
func TestLogsShareTheTrace(t *testing.T) {
	t.Parallel()
	args := []string{"shop", "-addr", "127.0.0.1:0", "-admin-addr", "", "-replicas", "2", "-data", t.TempDir(), "-log-format", "json", "-log-level", "debug"}
	logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, args, func(string) string { return "" }, stderr)
	})
	baseURL := logs.WaitFor(t, regexp.MustCompile(`"msg":"shop is open","page":"(http://[^"]+)"`))[1]
	cmdtest.WaitFor(t, 5*time.Second, "orders never SERVING", func() bool {
		return health(t, baseURL, ordersv1connect.OrderServiceName) == healthpb.HealthCheckResponse_SERVING
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), baseURL, connect.WithGRPC(), cmdtest.Customer(t, baseURL)).CreateOrder(ctx, order("tok_visa"))
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	o := resp.Msg.GetOrder()

	type line struct {
		Level, Msg, Service, Procedure, Code string
		TraceID                              string `json:"trace_id"`
		SpanID                               string `json:"span_id"`
	}
	var create, charge []line
	cmdtest.WaitFor(t, 5*time.Second, "no call lines for CreateOrder and Charge", func() bool {
		create, charge = nil, nil
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var l line
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
			}
			switch {
			case l.Msg != "call":
			case l.Procedure == "/orders.v1.OrderService/CreateOrder":
				create = append(create, l)
			case l.Procedure == "/payments.v1.PaymentService/Charge":
				charge = append(charge, l)
			}
		}
		return len(create) > 0 && len(charge) > 0
	})
	if len(create) != 1 || len(charge) != 1 {
		t.Fatalf("one order: %d CreateOrder and %d Charge call lines, want one each:\n%s", len(create), len(charge), logs.String())
	}
	c, p := create[0], charge[0]
	for _, check := range []struct {
		what, got, want string
	}{
		{"CreateOrder line: service", c.Service, "orders"},
		{"CreateOrder line: level", c.Level, "DEBUG"},
		{"CreateOrder line: trace_id", c.TraceID, o.GetTraceId()},
		{"Charge line: service", p.Service, o.GetPaymentReplica()},
		{"Charge line: trace_id", p.TraceID, o.GetTraceId()},
	} {
		if check.got != check.want {
			t.Errorf("%s: %q, want %q", check.what, check.got, check.want)
		}
	}
	if len(o.GetTraceId()) != 32 || len(c.SpanID) != 16 || len(p.SpanID) != 16 || c.SpanID == p.SpanID {
		t.Errorf("order trace %q, span ids %q (orders) and %q (payments): want a trace and two spans", o.GetTraceId(), c.SpanID, p.SpanID)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}
