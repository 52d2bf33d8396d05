package telemetry

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// shop is orders calling payments-1 in one process, both with telemetry, as
// cmd/shop will run them.
type shop struct {
	tel      *Telemetry
	spans    *tracetest.InMemoryExporter
	logs     *syncBuffer
	url      string
	http     *http.Client
	payments paymentsv1connect.PaymentServiceClient // orders' client
}

func newShop(t *testing.T) *shop {
	t.Helper()
	s := &shop{spans: tracetest.NewInMemoryExporter(), logs: new(syncBuffer)}
	var err error
	s.tel, err = Setup(t.Context(), Options{LogFormat: "json", LogOutput: s.logs, SpanExporter: s.spans, Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.tel.Shutdown(context.Background()) })
	orders, err := s.tel.Scope("orders", "")
	if err != nil {
		t.Fatal(err)
	}
	replica, err := s.tel.Scope("payments", "payments-1")
	if err != nil {
		t.Fatal(err)
	}
	srv := memhttptest.NewServer(t, newPaymentsMuxFor(paymentsStub{logger: replica.Logger()},
		connect.WithInterceptors(replica.Interceptors()...)))
	s.url, s.http = srv.URL(), srv.Client()
	s.payments = paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(), connect.WithGRPC(),
		connect.WithInterceptors(orders.Interceptors()...))
	return s
}

// spansByKind returns the ended spans by kind; it fails unless there is one
// of each kind in kinds.
func (s *shop) spansByKind(t *testing.T, kinds ...trace.SpanKind) map[trace.SpanKind]tracetest.SpanStub {
	t.Helper()
	got := map[trace.SpanKind]tracetest.SpanStub{}
	for _, span := range s.spans.GetSpans() {
		if _, dup := got[span.SpanKind]; dup {
			t.Fatalf("two %v spans: %v", span.SpanKind, s.spans.GetSpans())
		}
		got[span.SpanKind] = span
	}
	if len(got) != len(kinds) {
		t.Fatalf("spans %v, want one of each of %v", s.spans.GetSpans(), kinds)
	}
	return got
}

func resourceValue(span tracetest.SpanStub, key string) string {
	v, _ := span.Resource.Set().Value(attribute.Key(key))
	return v.AsString()
}

// A call from orders to payments is one trace: the handler's span is a child
// of the client's, each names its service, the handler's log line names
// both ids, and each side's metrics have the call under its server label.
func TestCallIsTracedLoggedAndMeasured(t *testing.T) {
	s := newShop(t)
	if _, err := s.payments.GetPayment(t.Context(), connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: "pay_1"})); err != nil {
		t.Fatal(err)
	}

	spans := s.spansByKind(t, trace.SpanKindClient, trace.SpanKindServer)
	client, server := spans[trace.SpanKindClient], spans[trace.SpanKindServer]
	if server.SpanContext.TraceID() != client.SpanContext.TraceID() || server.Parent.SpanID() != client.SpanContext.SpanID() {
		t.Errorf("handler span (trace %s, parent %s) is not the child of the client's (trace %s, span %s)",
			server.SpanContext.TraceID(), server.Parent.SpanID(), client.SpanContext.TraceID(), client.SpanContext.SpanID())
	}
	if !server.Parent.IsRemote() {
		t.Error("the handler's parent should come from the call's headers")
	}
	for span, want := range map[*tracetest.SpanStub][2]string{&client: {"orders", ""}, &server: {"payments", "payments-1"}} {
		if got := [2]string{resourceValue(*span, "service.name"), resourceValue(*span, "service.instance.id")}; got != want {
			t.Errorf("%v span's service and instance: %v, want %v", span.SpanKind, got, want)
		}
	}

	lines := decodeLines(t, s.logs.String())
	if len(lines) != 1 {
		t.Fatalf("want the handler's one line, got:\n%s", s.logs.String())
	}
	line := lines[0]
	if line["trace_id"] != server.SpanContext.TraceID().String() || line["span_id"] != server.SpanContext.SpanID().String() || line["service"] != "payments-1" {
		t.Errorf("handler's log line %v: want trace_id %s, span_id %s, service payments-1",
			line, server.SpanContext.TraceID(), server.SpanContext.SpanID())
	}

	proc := paymentsv1connect.PaymentServiceGetPaymentProcedure
	for name, server := range map[string]string{"rpc_client_duration_seconds": "orders", "rpc_server_duration_seconds": "payments-1"} {
		labels := rpcLabels(proc, "grpc", "ok")
		labels["server"] = server
		if n := observations(t, s.tel.Registry, name, labels); n != 1 {
			t.Errorf("%s %v: %d calls, want 1", name, labels, n)
		}
	}
}

// A caller's trace context continues: the handler's span joins the trace in
// the traceparent header, as the page's or a gateway's would, and so does
// an outgoing call made in a context that holds a remote span.
func TestTraceContextPropagates(t *testing.T) {
	s := newShop(t)
	const traceID = "4bf92f3577b34e0ea8bbbbbbbbbbbbbb"
	traceparent := "00-" + traceID + "-00f067aa0ba902b7-01"

	plain := paymentsv1connect.NewPaymentServiceClient(s.http, s.url, connect.WithGRPC())
	req := connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: "pay_1"})
	req.Header().Set("traceparent", traceparent)
	if _, err := plain.GetPayment(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	server := s.spansByKind(t, trace.SpanKindServer)[trace.SpanKindServer]
	if got := server.SpanContext.TraceID().String(); got != traceID {
		t.Errorf("handler span in trace %s, want the caller's %s", got, traceID)
	}
	s.spans.Reset()

	// The global propagator is W3C's, as Setup set it.
	ctx := otel.GetTextMapPropagator().Extract(t.Context(), propagation.MapCarrier{"traceparent": traceparent})
	if _, err := s.payments.GetPayment(ctx, connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: "pay_1"})); err != nil {
		t.Fatal(err)
	}
	for kind, span := range s.spansByKind(t, trace.SpanKindClient, trace.SpanKindServer) {
		if got := span.SpanContext.TraceID().String(); got != traceID {
			t.Errorf("%v span in trace %s, want %s", kind, got, traceID)
		}
	}
}

func TestScopes(t *testing.T) {
	tel, err := Setup(t.Context(), Options{LogOutput: new(syncBuffer), Getenv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if tel.Exporting() {
		t.Error("exporting without an endpoint")
	}
	if _, err := tel.Scope("payments", "payments-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := tel.Scope("payments", "payments-1"); err == nil {
		t.Error("a second scope of one name would share its metrics")
	}
	if _, err := tel.Scope("payments", "payments-2"); err != nil {
		t.Error(err)
	}
	if err := tel.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := tel.Scope("orders", ""); err == nil {
		t.Error("scope after shutdown")
	}
	if _, err := Setup(t.Context(), Options{LogLevel: "loud"}); err == nil || !strings.Contains(err.Error(), "loud") {
		t.Errorf("bad level: %v", err)
	}
	if _, err := Setup(t.Context(), Options{Getenv: env(map[string]string{envEndpoint: "http://x", envProtocol: "carrier-pigeon"})}); err == nil {
		t.Error("bad OTLP protocol accepted")
	}
}

// A nil scope is no telemetry: servers built without it still work.
func TestNilScope(t *testing.T) {
	var s *Scope
	if s.Interceptors() != nil || s.Name() != "" {
		t.Error("nil scope has interceptors or a name")
	}
	s.Logger().Info("discarded")
	if err := s.Registerer().Register(prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total", Help: "x"})); err != nil {
		t.Errorf("nil scope's registerer: %v", err)
	}
	_, span := s.TracerProvider().Tracer("x").Start(t.Context(), "y")
	span.End()
}
