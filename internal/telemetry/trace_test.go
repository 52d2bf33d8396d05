package telemetry

import (
	"context"
	"go.opentelemetry.io/otel/trace"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// env is a getenv of the given variables alone.
func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestNoEndpointNoExporter(t *testing.T) {
	exp, err := OTLPExporter(t.Context(), env(nil))
	if exp != nil || err != nil {
		t.Fatalf("without an endpoint: got exporter %v, error %v; want neither", exp, err)
	}
	_, err = OTLPExporter(t.Context(), env(map[string]string{
		envEndpoint: "http://localhost:4318",
		envProtocol: "http/json",
	}))
	if err == nil {
		t.Error("http/json, which the Go exporter lacks, was accepted")
	}
}

// Spans made without an exporter still have valid ids (logs carry them,
// calls pass the trace on) but are not recorded, unless the caller's trace
// is sampled.
func TestSpansHaveIDsWithoutExporter(t *testing.T) {
	res, err := NewResource("orders", "")
	if err != nil {
		t.Fatal(err)
	}
	tp := NewTracerProvider(res, nil, false)
	defer tp.Shutdown(context.Background())
	_, span := tp.Tracer("test").Start(context.Background(), "call")
	span.End()
	if sc := span.SpanContext(); !sc.IsValid() || sc.IsSampled() || span.IsRecording() {
		t.Errorf("root span context %+v, recording %v: want valid, not sampled, not recording", sc, span.IsRecording())
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	_, child := tp.Tracer("test").Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "call")
	child.End()
	if sc := child.SpanContext(); sc.TraceID() != parent.TraceID() || !sc.IsSampled() {
		t.Errorf("span of a sampled caller %+v: want its trace, sampled", sc)
	}
}

func TestResourceNamesServiceAndInstance(t *testing.T) {
	res, err := NewResource("payments", "payments-2")
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[attribute.Key]string{"service.name": "payments", "service.instance.id": "payments-2"} {
		if v, ok := res.Set().Value(k); !ok || v.AsString() != want {
			t.Errorf("%s = %q, want %q", k, v.AsString(), want)
		}
	}
	res, err = NewResource("orders", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := res.Set().Value("service.instance.id"); ok {
		t.Error("service.instance.id set without an instance")
	}
}

// exportOne sends one span named "call" from service through exp and shuts
// the provider down, which flushes it.
func exportOne(t *testing.T, service string, exp sdktrace.SpanExporter) {
	t.Helper()
	res, err := NewResource(service, "")
	if err != nil {
		t.Fatal(err)
	}
	tp := NewTracerProvider(res, exp, false)
	_, span := tp.Tracer("test").Start(context.Background(), "call")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tp.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown (flush): %v", err)
	}
}

// checkExport checks that req holds the span of exportOne.
func checkExport(t *testing.T, req *coltracepb.ExportTraceServiceRequest, service string) {
	t.Helper()
	rs := req.GetResourceSpans()
	if len(rs) != 1 || len(rs[0].GetScopeSpans()) != 1 || len(rs[0].GetScopeSpans()[0].GetSpans()) != 1 {
		t.Fatalf("want one span, got %v", req)
	}
	if name := rs[0].GetScopeSpans()[0].GetSpans()[0].GetName(); name != "call" {
		t.Errorf("span %q, want call", name)
	}
	for _, kv := range rs[0].GetResource().GetAttributes() {
		if kv.GetKey() == "service.name" && kv.GetValue().GetStringValue() == service {
			return
		}
	}
	t.Errorf("resource %v lacks service.name=%s", rs[0].GetResource(), service)
}

func TestOTLPOverHTTP(t *testing.T) {
	type export struct {
		path string
		req  *coltracepb.ExportTraceServiceRequest
	}
	got := make(chan export, 1)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		req := new(coltracepb.ExportTraceServiceRequest)
		if err == nil {
			err = proto.Unmarshal(body, req)
		}
		if err != nil || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("%s %s (%s): %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err)
		}
		got <- export{r.URL.Path, req}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()

	for _, c := range []struct {
		vars     map[string]string
		wantPath string
	}{
		// The general endpoint is a base URL; the traces one is the URL.
		{map[string]string{envEndpoint: collector.URL + "/"}, "/v1/traces"},
		{map[string]string{envTracesEndpoint: collector.URL + "/custom", envEndpoint: "http://unused.invalid"}, "/custom"},
		{map[string]string{envEndpoint: collector.URL, envProtocol: "http/protobuf"}, "/v1/traces"},
	} {
		exp, err := OTLPExporter(t.Context(), env(c.vars))
		if err != nil || exp == nil {
			t.Fatalf("%v: exporter %v, error %v", c.vars, exp, err)
		}
		exportOne(t, "orders", exp)
		e := <-got
		if e.path != c.wantPath {
			t.Errorf("%v: posted to %s, want %s", c.vars, e.path, c.wantPath)
		}
		checkExport(t, e.req, "orders")
	}
}

type traceCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	got chan *coltracepb.ExportTraceServiceRequest
}

func (c traceCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.got <- req
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func TestOTLPOverGRPC(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	collector := traceCollector{got: make(chan *coltracepb.ExportTraceServiceRequest, 1)}
	coltracepb.RegisterTraceServiceServer(srv, collector)
	go srv.Serve(lis)
	defer srv.Stop()

	exp, err := OTLPExporter(t.Context(), env(map[string]string{
		envEndpoint:       "http://unused.invalid:4318",
		envTracesEndpoint: "http://" + lis.Addr().String(), // http: no TLS
		envProtocol:       "http/protobuf",
		envTracesProtocol: "grpc", // the traces variable wins
	}))
	if err != nil || exp == nil {
		t.Fatalf("exporter %v, error %v", exp, err)
	}
	exportOne(t, "payments", exp)
	checkExport(t, <-collector.got, "payments")
}
