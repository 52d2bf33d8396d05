package telemetry

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// What the two ways of exporting RPC metrics cost on the hot path:
//
//   - prometheus: [RPCMetrics], a HistogramVec of client_golang observed by
//     a hand-written interceptor;
//   - otel: otelconnect's own duration histogram, through the OpenTelemetry
//     metrics SDK and its Prometheus exporter into a client_golang registry.
//
// Three depths:
//
//   - record: one observation with three labels, alone;
//   - intercept: one call through the interceptors on the client side and
//     one on the handler side (an orders to payments hop is observed by
//     both), replaying requests captured from a real call, around a next
//     that answers at once: the interceptors' whole cost, without transport;
//   - call: real unary gRPC calls over HTTP/2 in memory (memhttp), with the
//     interceptors on the client and the handler. The pipe and the
//     goroutines cost tens of microseconds and vary by as much, so only
//     allocations tell the configurations apart here.
//
// "traced+" puts otelconnect's tracing (sampled, no exporter) in front, the
// production setup: with client_golang metrics it is otelconnect
// WithoutMetrics and RPCMetrics, with OpenTelemetry metrics one otelconnect
// interceptor doing both.
//
//	go test -run '^$' -bench RPCMetrics -count 5 ./internal/telemetry/
func BenchmarkRPCMetrics(b *testing.B) {
	b.Run("record/prometheus", func(b *testing.B) {
		m, err := NewRPCMetrics(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			m.observe(m.server, paymentsv1connect.PaymentServiceGetPaymentProcedure, connect.ProtocolGRPC, nil, start)
		}
	})
	b.Run("record/otel", func(b *testing.B) {
		hist := otelHistogram(b)
		ctx := context.Background()
		start := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			// As otelconnect records: a fresh attribute set per call.
			hist.Record(ctx, time.Since(start).Seconds(), metric.WithAttributeSet(attribute.NewSet(
				attribute.String("rpc.method", paymentsv1connect.PaymentServiceGetPaymentProcedure),
				attribute.String("rpc.system.name", connect.ProtocolGRPC),
				attribute.String("rpc.response.status_code", codeOf(nil)),
			)))
		}
	})
	configs := []struct {
		name         string
		interceptors func(testing.TB) []connect.Interceptor
	}{
		{"none", func(testing.TB) []connect.Interceptor { return nil }},
		{"prometheus", func(tb testing.TB) []connect.Interceptor {
			return []connect.Interceptor{promInterceptor(tb)}
		}},
		{"otel", func(tb testing.TB) []connect.Interceptor {
			return []connect.Interceptor{otelMetricsInterceptor(tb, otelconnect.WithoutTracing())}
		}},
		{"traced+prometheus", func(tb testing.TB) []connect.Interceptor {
			tracing, err := TracingInterceptor(sdktrace.NewTracerProvider())
			if err != nil {
				tb.Fatal(err)
			}
			return []connect.Interceptor{tracing, promInterceptor(tb)}
		}},
		{"traced+otel", func(tb testing.TB) []connect.Interceptor {
			return []connect.Interceptor{otelMetricsInterceptor(tb,
				otelconnect.WithTracerProvider(sdktrace.NewTracerProvider()),
				otelconnect.WithPropagator(Propagator()),
				otelconnect.WithTrustRemote())}
		}},
	}
	for _, c := range configs {
		b.Run("intercept/"+c.name, func(b *testing.B) { benchIntercept(b, c.interceptors(b)) })
	}
	for _, c := range configs {
		b.Run("call/"+c.name, func(b *testing.B) { benchCalls(b, c.interceptors(b)) })
	}
}

// What tracing costs per call, metrics left out: otelconnect with the SDK's
// tracer provider on the client and the handler, at the depths of
// [BenchmarkRPCMetrics].
//
//   - untraced: no interceptor;
//   - noexport: spans made and sampled, as with no OTEL_EXPORTER_OTLP_*
//     endpoint, so that logs and calls carry ids, and dropped as they end;
//   - unsampled: spans not recorded (a never-sample sampler): ids still,
//     nothing kept, and the sampled flag off downstream;
//   - export: sampled spans batched to an exporter that throws them away,
//     the cost when a collector is set, network aside.
//
// Run it with
//
//	go test -run '^$' -bench RPCTracing -count 5 ./internal/telemetry/
func BenchmarkRPCTracing(b *testing.B) {
	traced := func(opts ...sdktrace.TracerProviderOption) func(testing.TB) []connect.Interceptor {
		return func(tb testing.TB) []connect.Interceptor {
			tp := sdktrace.NewTracerProvider(opts...)
			tb.Cleanup(func() { tp.Shutdown(context.Background()) })
			tracing, err := TracingInterceptor(tp)
			if err != nil {
				tb.Fatal(err)
			}
			return []connect.Interceptor{tracing}
		}
	}
	configs := []struct {
		name         string
		interceptors func(testing.TB) []connect.Interceptor
	}{
		{"untraced", func(testing.TB) []connect.Interceptor { return nil }},
		{"noexport", traced()},
		{"unsampled", traced(sdktrace.WithSampler(sdktrace.NeverSample()))},
		{"export", traced(sdktrace.WithBatcher(discardExporter{}))},
	}
	for _, c := range configs {
		b.Run("intercept/"+c.name, func(b *testing.B) { benchIntercept(b, c.interceptors(b)) })
	}
	for _, c := range configs {
		b.Run("call/"+c.name, func(b *testing.B) { benchCalls(b, c.interceptors(b)) })
	}
}

// What the trace handler adds to a log line written in a span, over the
// plain handler (JSON to io.Discard).
func BenchmarkTraceLog(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("bench").Start(context.Background(), "call")
	defer span.End()
	for _, c := range []struct {
		name string
		h    slog.Handler
	}{
		{"plain", slog.NewJSONHandler(io.Discard, nil)},
		{"trace", WithTraceContext(slog.NewJSONHandler(io.Discard, nil))},
	} {
		b.Run(c.name, func(b *testing.B) {
			logger := slog.New(c.h)
			b.ReportAllocs()
			for b.Loop() {
				logger.InfoContext(ctx, "call", "procedure", paymentsv1connect.PaymentServiceGetPaymentProcedure, "code", "ok")
			}
		})
	}
}

// benchIntercept replays the client's and the handler's request of one real
// call through interceptors around a next that answers at once.
func benchIntercept(b *testing.B, interceptors []connect.Interceptor) {
	clientReq, serverReq := captureRequests(b, interceptors)
	resp := connect.NewResponse(&paymentsv1.GetPaymentResponse{Payment: &paymentsv1.Payment{Id: "pay_1"}})
	answer := func(context.Context, connect.AnyRequest) (connect.AnyResponse, error) { return resp, nil }
	call := chain(interceptors, answer)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := call(ctx, clientReq); err != nil {
			b.Fatal(err)
		}
		if _, err := call(ctx, serverReq); err != nil {
			b.Fatal(err)
		}
	}
}

// chain wraps next in interceptors as connect does: the first outermost.
func chain(interceptors []connect.Interceptor, next connect.UnaryFunc) connect.UnaryFunc {
	for i := len(interceptors) - 1; i >= 0; i-- {
		next = interceptors[i].WrapUnary(next)
	}
	return next
}

// captureRequests makes one call with interceptors on both sides and returns
// the request the client's interceptors saw and the one the handler's saw,
// with their spec, peer and headers (traceparent, if traced).
func captureRequests(tb testing.TB, interceptors []connect.Interceptor) (clientReq, serverReq connect.AnyRequest) {
	capture := func(dst *connect.AnyRequest) connect.Interceptor {
		return connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
			return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
				*dst = req
				return next(ctx, req)
			}
		})
	}
	srv := memhttptest.NewServer(tb, newPaymentsMux(
		connect.WithInterceptors(interceptors...), connect.WithInterceptors(capture(&serverReq))))
	client := paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(), connect.WithGRPC(),
		connect.WithInterceptors(interceptors...), connect.WithInterceptors(capture(&clientReq)))
	if _, err := client.GetPayment(context.Background(), connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: "pay_1"})); err != nil {
		tb.Fatal(err)
	}
	return clientReq, serverReq
}

// benchCalls makes unary gRPC calls over HTTP/2 in memory, with
// interceptors on the client and the handler.
func benchCalls(b *testing.B, interceptors []connect.Interceptor) {
	srv := memhttptest.NewServer(b, newPaymentsMux(connect.WithInterceptors(interceptors...)))
	client := paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(),
		connect.WithGRPC(), connect.WithInterceptors(interceptors...))
	ctx := context.Background()
	req := connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: "pay_1"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := client.GetPayment(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func promInterceptor(tb testing.TB) connect.Interceptor {
	m, err := NewRPCMetrics(prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// otelMeterProvider is the OpenTelemetry metrics path to Prometheus: the SDK
// aggregating, its exporter as the reader of a client_golang registry.
func otelMeterProvider(tb testing.TB) *sdkmetric.MeterProvider {
	exp, err := otelprom.New(otelprom.WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		tb.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	tb.Cleanup(func() { mp.Shutdown(context.Background()) })
	return mp
}

func otelHistogram(tb testing.TB) metric.Float64Histogram {
	hist, err := otelMeterProvider(tb).Meter("bench").Float64Histogram("rpc.server.call.duration",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(DurationBuckets...))
	if err != nil {
		tb.Fatal(err)
	}
	return hist
}

func otelMetricsInterceptor(tb testing.TB, opts ...otelconnect.Option) connect.Interceptor {
	i, err := otelconnect.NewInterceptor(append(opts,
		otelconnect.WithMeterProvider(otelMeterProvider(tb)),
		otelconnect.WithDurationHistogramOptions(metric.WithExplicitBucketBoundaries(DurationBuckets...)))...)
	if err != nil {
		tb.Fatal(err)
	}
	return i
}

// discardExporter takes spans and keeps none.
type discardExporter struct{}

func (discardExporter) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discardExporter) Shutdown(context.Context) error                             { return nil }
