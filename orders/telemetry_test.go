package orders_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/connectshop/connectshop/internal/telemetry"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/payments"
	paymentssqlite "github.com/connectshop/connectshop/payments/sqlite"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Span names: otelconnect names a call's spans after its procedure, the
// stores name theirs service.Store/Method.
const (
	createOrderSpan  = "orders.v1.OrderService/CreateOrder"
	chargeSpan       = "payments.v1.PaymentService/Charge"
	ordersCreateSpan = "orders.Store/Create"
	ordersUpdateSpan = "orders.Store/Update"
	paymentsStore    = "payments.Store/Charge"
)

// tracedShop is a shop whose orders and payments-1 record their spans in
// one in-memory exporter, as they end.
func tracedShop(t *testing.T, cfg shopConfig) (*shop, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{LogOutput: io.Discard, SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) }) // after the shop's cleanups
	cfg.telemetry = tel
	return newShop(t, cfg), exp
}

// traceOf waits until exp holds a CreateOrder server span of orders in the
// trace with id traceID and the spans of its Charge, and returns every span
// of that trace. Spans are exported as they end, and a server span ends
// before its response is sent, but waiting costs nothing.
func traceOf(t *testing.T, exp *tracetest.InMemoryExporter, traceID string) tracetest.SpanStubs {
	t.Helper()
	var spans tracetest.SpanStubs
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		spans = nil
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID().String() == traceID {
				spans = append(spans, s)
			}
		}
		if find(spans, createOrderSpan, trace.SpanKindServer, "orders") != nil &&
			find(spans, chargeSpan, trace.SpanKindServer, "payments") != nil &&
			find(spans, paymentsStore, trace.SpanKindClient, "payments") != nil {
			return spans
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s, trace %s lacks the CreateOrder span, the Charge span in payments or its store span; it has:%s\nall spans:%s",
				traceID, describe(spans), describe(exp.GetSpans()))
		}
	}
}

// find returns the first span named name, of kind, made by service, or nil.
func find(spans tracetest.SpanStubs, name string, kind trace.SpanKind, service string) *tracetest.SpanStub {
	for i, s := range spans {
		if s.Name == name && s.SpanKind == kind && resourceAttr(s, "service.name") == service {
			return &spans[i]
		}
	}
	return nil
}

func findAll(spans tracetest.SpanStubs, name string, kind trace.SpanKind, service string) []tracetest.SpanStub {
	var all []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name && s.SpanKind == kind && resourceAttr(s, "service.name") == service {
			all = append(all, s)
		}
	}
	return all
}

func resourceAttr(s tracetest.SpanStub, key attribute.Key) string {
	if s.Resource == nil {
		return ""
	}
	v, _ := s.Resource.Set().Value(key)
	return v.AsString()
}

// describe lists spans for failure messages: name, kind, service, ids.
func describe(spans tracetest.SpanStubs) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s %s (%s %s) trace %s span %s parent %s", s.Name, s.SpanKind, resourceAttr(s, "service.name"),
			resourceAttr(s, "service.instance.id"), s.SpanContext.TraceID(), s.SpanContext.SpanID(), s.Parent.SpanID())
	}
	return b.String()
}

// checkOrderTrace checks that spans, one trace, cover the CreateOrder that
// placed o: orders' server span, its client span of the Charge to payments,
// the Charge's server span on the replica that charged, and the store spans
// of both, each with the right parent. It returns the CreateOrder span.
func checkOrderTrace(t *testing.T, spans tracetest.SpanStubs, o *ordersv1.Order) *tracetest.SpanStub {
	t.Helper()
	create := find(spans, createOrderSpan, trace.SpanKindServer, "orders")
	if create == nil {
		t.Fatalf("no CreateOrder server span of orders in trace %s:%s", o.GetTraceId(), describe(spans))
	}
	if got := create.SpanContext.TraceID().String(); got != o.GetTraceId() {
		t.Errorf("Order.trace_id is %q, want the trace of its CreateOrder, %s", o.GetTraceId(), got)
	}
	if n := len(findAll(spans, createOrderSpan, trace.SpanKindServer, "orders")); n != 1 {
		t.Errorf("%d CreateOrder server spans in the trace, want 1:%s", n, describe(spans))
	}
	childOf := func(s *tracetest.SpanStub, parent *tracetest.SpanStub) bool {
		return s.Parent.TraceID() == parent.SpanContext.TraceID() && s.Parent.SpanID() == parent.SpanContext.SpanID()
	}

	// orders calls payments: one client span per attempt (one here), each a
	// child of the CreateOrder span.
	clients := findAll(spans, chargeSpan, trace.SpanKindClient, "orders")
	if len(clients) == 0 {
		t.Fatalf("no client span of orders' Charge call:%s", describe(spans))
	}
	for _, c := range clients {
		if !childOf(&c, create) {
			t.Errorf("client span %s of Charge has parent %s, want the CreateOrder span %s", c.SpanContext.SpanID(), c.Parent.SpanID(), create.SpanContext.SpanID())
		}
	}

	// The replica's server span continues the trace from orders' client span
	// (of the attempt that reached it).
	charges := findAll(spans, chargeSpan, trace.SpanKindServer, "payments")
	if len(charges) == 0 {
		t.Fatalf("no Charge server span of payments:%s", describe(spans))
	}
	for _, charge := range charges {
		if !charge.Parent.IsRemote() || !slices.ContainsFunc(clients, func(c tracetest.SpanStub) bool { return childOf(&charge, &c) }) {
			t.Errorf("Charge server span %s has parent %s (remote %v), want one of orders' client spans:%s",
				charge.SpanContext.SpanID(), charge.Parent.SpanID(), charge.Parent.IsRemote(), describe(spans))
		}
	}
	charge := &charges[len(charges)-1] // the one that charged
	if got := resourceAttr(*charge, "service.instance.id"); got != o.GetPaymentReplica() {
		t.Errorf("Charge server span made by %q, want the replica that charged, %q", got, o.GetPaymentReplica())
	}

	// Database work: the order's insert and its update in orders, the
	// payment's insert in payments.
	for _, want := range []struct {
		name, service string
		parent        *tracetest.SpanStub
	}{
		{ordersCreateSpan, "orders", create},
		{ordersUpdateSpan, "orders", create},
		{paymentsStore, "payments", charge},
	} {
		found := findAll(spans, want.name, trace.SpanKindClient, want.service)
		switch {
		case len(found) == 0:
			t.Errorf("no %s span in the trace:%s", want.name, describe(spans))
		case !slices.ContainsFunc(found, func(s tracetest.SpanStub) bool { return childOf(&s, want.parent) }):
			t.Errorf("no %s span is a child of %s (%s):%s", want.name, want.parent.SpanContext.SpanID(), want.parent.Name, describe(spans))
		}
	}
	for _, s := range spans {
		if s.Status.Code == codes.Error && (s.Name != chargeSpan || len(clients) == 1) { // failed attempts: see TestRetriedChargeIsOneTrace
			t.Errorf("span %s (%s) failed: %s", s.Name, resourceAttr(s, "service.name"), s.Status.Description)
		}
	}
	return create
}

// One order, one trace, whatever the client's protocol: the CreateOrder in
// orders, the Charge on the payments replica and their database work, each
// span the child of the one that caused it, and the order names the trace.
func TestOrderIsOneTrace(t *testing.T) {
	t.Parallel()
	for _, p := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect+json", []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect+proto", nil},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			s, exp := tracedShop(t, shopConfig{})
			o := createOrder(t, s.client(p.opts...), visaOrder("trace-"+strings.ReplaceAll(p.name, "+", "-")))
			if len(o.GetTraceId()) != 32 {
				t.Fatalf("Order.trace_id is %q, want 32 hex digits", o.GetTraceId())
			}
			create := checkOrderTrace(t, traceOf(t, exp, o.GetTraceId()), o)
			if create.Parent.IsValid() {
				t.Errorf("CreateOrder span has parent %s, want a root: the client sent no trace", create.Parent.SpanID())
			}
		})
	}
}

// REST calls are transcoded into the same CreateOrder, and traced alike.
func TestRESTOrderIsOneTrace(t *testing.T) {
	t.Parallel()
	s, exp := tracedShop(t, shopConfig{})
	body, _ := json.Marshal(map[string]any{
		"items":        []map[string]any{{"productId": "gopher-plush", "quantity": 1}},
		"paymentToken": "tok_visa",
	})
	req, err := http.NewRequestWithContext(ctxWithTimeout(t, 10*time.Second), http.MethodPost, s.orders.URL()+"/v1/orders", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.orders.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/orders: %d %s", resp.StatusCode, raw)
	}
	var got struct {
		Order struct {
			TraceID        string `json:"traceId"`
			PaymentReplica string `json:"paymentReplica"`
		} `json:"order"`
	}
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("POST /v1/orders: %v in %s", err, raw)
	}
	o := &ordersv1.Order{TraceId: got.Order.TraceID, PaymentReplica: got.Order.PaymentReplica}
	checkOrderTrace(t, traceOf(t, exp, o.GetTraceId()), o)
}

// A client that is itself traced sends a W3C traceparent header: orders
// continues its trace, under the client's span, and so does payments.
func TestOrderContinuesClientTrace(t *testing.T) {
	t.Parallel()
	s, exp := tracedShop(t, shopConfig{})
	const (
		clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientSpan  = "00f067aa0ba902b7"
	)
	req := connect.NewRequest(visaOrder("traceparent"))
	req.Header().Set("traceparent", "00-"+clientTrace+"-"+clientSpan+"-01")
	resp, err := s.client(connect.WithGRPC()).CreateOrder(ctxWithTimeout(t, 10*time.Second), req)
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	o := resp.Msg.GetOrder()
	if o.GetTraceId() != clientTrace {
		t.Fatalf("Order.trace_id is %q, want the client's trace %s", o.GetTraceId(), clientTrace)
	}
	create := checkOrderTrace(t, traceOf(t, exp, clientTrace), o)
	if got := create.Parent.SpanID().String(); got != clientSpan || !create.Parent.IsRemote() {
		t.Errorf("CreateOrder span has parent %s (remote %v), want the client's span %s", got, create.Parent.IsRemote(), clientSpan)
	}
}

// A Charge that orders sends again is still one trace: one client span per
// attempt, each a child of the CreateOrder span, which has an event per
// retry; the failed attempt's span says so, the last one succeeded.
func TestRetriedChargeIsOneTrace(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{LogOutput: io.Discard, SpanExporter: exp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	pstore, err := paymentssqlite.Open(context.Background(), filepath.Join(t.TempDir(), "payments.db"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	replica, err := payments.New(payments.Config{Name: "payments-1", Store: pstore, ServiceKey: key, Telemetry: scope(t, tel, "payments", "payments-1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Close() })
	// Every other Charge is answered UNAVAILABLE before it reaches the
	// replica, as by a proxy in between: the first attempt of each order
	// fails, the second succeeds. (Never two failures in a row, which would
	// have the balancer eject the replica.)
	var charges atomic.Int64
	httpServer := replica.HTTPServer()
	handler := httpServer.Handler
	httpServer.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/"+chargeSpan && charges.Add(1)%2 == 1 {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "14")
			w.Header().Set("Grpc-Message", "injected")
			w.WriteHeader(http.StatusOK)
			return
		}
		handler.ServeHTTP(w, r)
	})
	psrv := memhttptest.Serve(t, httpServer)
	osrv := newOrdersOn(t, orders.Config{
		Payments:  orders.PaymentsConfig{Target: psrv.URL(), Dial: psrv.Listener().DialContext, ServiceKey: key},
		Telemetry: scope(t, tel, "orders", ""),
	})
	srv := memhttptest.Serve(t, osrv.HTTPServer())
	session, err := ordersv1connect.NewOrderServiceClient(srv.Client(), srv.URL()).CreateSession(ctxWithTimeout(t, 5*time.Second), connect.NewRequest(&ordersv1.CreateSessionRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	c := ordersv1connect.NewOrderServiceClient(srv.Client(), srv.URL(), connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(session.Msg.GetToken())))

	o := createOrder(t, c, visaOrder("retried"))
	spans := traceOf(t, exp, o.GetTraceId())
	create := checkOrderTrace(t, spans, o)
	clients := findAll(spans, chargeSpan, trace.SpanKindClient, "orders")
	if len(clients) != 2 {
		t.Fatalf("%d client spans of Charge, want 2, one per attempt:%s", len(clients), describe(spans))
	}
	var retries int
	for _, e := range create.Events {
		if e.Name == "retry" {
			retries++
		}
	}
	if retries != 1 {
		t.Errorf("%d retry events on the CreateOrder span, want 1", retries)
	}
	slices.SortFunc(clients, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	if clients[0].Status.Code != codes.Error || clients[1].Status.Code == codes.Error {
		t.Errorf("attempts' statuses %v then %v, want an error then none", clients[0].Status, clients[1].Status)
	}
}
