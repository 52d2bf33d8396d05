package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"

	"connectrpc.com/connect"
	"connectrpc.com/otelconnect"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Options configure a process's telemetry; the zero value logs text at info
// to stderr and exports spans only if the environment says where.
type Options struct {
	// LogLevel is debug, info (""), warn or error.
	LogLevel string
	// LogFormat is text ("") or json.
	LogFormat string
	// LogOutput gets the log; nil is os.Stderr.
	LogOutput io.Writer
	// Getenv looks up OTEL_EXPORTER_OTLP_ENDPOINT and the like; nil is
	// os.Getenv.
	Getenv func(string) string
	// SpanExporter, if set, gets every span as it ends instead of OTLP
	// (tests: [tracetest.NewInMemoryExporter]). Telemetry shuts it down.
	SpanExporter sdktrace.SpanExporter
}

// Telemetry is a process's logging, tracing and metrics. Each server in the
// process (orders, or payments-1, payments-2... in the shop) takes a
// [Scope] of it.
type Telemetry struct {
	// Logger writes the process's log, with trace_id and span_id on lines
	// logged in a traced call.
	Logger *slog.Logger
	// Registry holds every metric of the process; the admin listener
	// exports it.
	Registry *prometheus.Registry

	exporter   sdktrace.SpanExporter // nil: spans are made, not sent
	syncExport bool

	mu     sync.Mutex
	scopes map[string]*Scope
	closed bool
}

// Setup builds a process's telemetry and sets the global propagator to W3C
// trace context and baggage, and the global OpenTelemetry error handler
// (export failures) to log at warn. Call [Telemetry.Shutdown] before exiting
// to send the spans still buffered.
func Setup(ctx context.Context, opts Options) (*Telemetry, error) {
	out := opts.LogOutput
	if out == nil {
		out = os.Stderr
	}
	logger, err := Logger(out, opts.LogLevel, opts.LogFormat)
	if err != nil {
		return nil, err
	}
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	t := &Telemetry{Logger: logger, Registry: NewRegistry(), scopes: map[string]*Scope{}}
	if opts.SpanExporter != nil {
		t.exporter, t.syncExport = opts.SpanExporter, true
	} else if t.exporter, err = OTLPExporter(ctx, getenv); err != nil {
		return nil, err
	}
	otel.SetTextMapPropagator(Propagator())
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		logger.Warn("opentelemetry", "err", err)
	}))
	return t, nil
}

// Exporting reports whether spans are sent anywhere.
func (t *Telemetry) Exporting() bool { return t.exporter != nil }

// Scope returns the telemetry of one server of the process: service is what
// it is ("payments"), instance which one ("payments-2", or "" when the
// process runs one). Its spans name both, its log lines and metrics carry
// service=instance and server=instance (or service when instance is "").
// Each server takes one scope, for its handlers and its clients alike.
func (t *Telemetry) Scope(service, instance string) (*Scope, error) {
	name := instance
	if name == "" {
		name = service
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, errors.New("telemetry: scope after shutdown")
	}
	if _, ok := t.scopes[name]; ok {
		return nil, fmt.Errorf("telemetry: scope %q exists", name)
	}
	res, err := NewResource(service, instance)
	if err != nil {
		return nil, err
	}
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"server": name}, t.Registry)
	metrics, err := NewRPCMetrics(reg)
	if err != nil {
		return nil, err
	}
	var exp sdktrace.SpanExporter
	if t.exporter != nil {
		exp = keepOpen{t.exporter} // shared: Shutdown closes it once, last
	}
	tp := NewTracerProvider(res, exp, t.syncExport)
	tracing, err := TracingInterceptor(tp)
	if err != nil {
		return nil, errors.Join(err, tp.Shutdown(context.Background()))
	}
	s := &Scope{
		name:       name,
		logger:     t.Logger.With("service", name),
		registerer: reg,
		tp:         tp,
		// Tracing first, so that the span is in the context of everything
		// after it, metrics included, and the span covers their time.
		interceptors: []connect.Interceptor{tracing, metrics},
	}
	t.scopes[name] = s
	return s, nil
}

// TracingInterceptor returns otelconnect's interceptor with tp, without its
// metrics (see [RPCMetrics]). It trusts the trace context that calls bring:
// a handler's span continues the caller's trace rather than starting a new
// one linked to it, so that a trace follows an order from the page through
// orders to payments.
func TracingInterceptor(tp trace.TracerProvider) (connect.Interceptor, error) {
	return otelconnect.NewInterceptor(
		otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(Propagator()),
		otelconnect.WithTrustRemote(),
		otelconnect.WithoutMetrics(),
	)
}

// Shutdown flushes every scope's spans to the exporter and shuts it down;
// the scopes make no more spans worth keeping. It is for the end of the
// process, after the servers have stopped.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	for _, s := range t.scopes {
		errs = append(errs, s.tp.Shutdown(ctx))
	}
	if t.exporter != nil {
		errs = append(errs, t.exporter.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// Admin returns the admin handler (see [NewAdmin]) for t's metrics and
// ready.
func (t *Telemetry) Admin(ready *Readiness) http.Handler {
	return NewAdmin(AdminConfig{Gatherer: t.Registry, Ready: ready, Logger: t.Logger})
}

// keepOpen shares an exporter between tracer providers, each of which shuts
// its exporter down when it is shut down itself.
type keepOpen struct{ sdktrace.SpanExporter }

func (keepOpen) Shutdown(context.Context) error { return nil }

// Scope is the telemetry of one server. A nil *Scope is valid and records
// nothing, so that tests can build servers without telemetry.
type Scope struct {
	name         string
	logger       *slog.Logger
	registerer   prometheus.Registerer
	tp           *sdktrace.TracerProvider
	interceptors []connect.Interceptor
}

// Name is the server's name: the instance, or the service.
func (s *Scope) Name() string {
	if s == nil {
		return ""
	}
	return s.name
}

// Logger returns the process's logger with service=name.
func (s *Scope) Logger() *slog.Logger {
	if s == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.logger
}

// Interceptors returns what to put first on every handler and client of the
// server: tracing, then RPC metrics. Put them before the interceptors that
// log, so that log lines carry the call's trace.
func (s *Scope) Interceptors() []connect.Interceptor {
	if s == nil {
		return nil
	}
	return s.interceptors
}

// Registerer registers the server's own metrics (orders by outcome,
// charges...), labelled server=name. For a nil scope it is a registry of
// its own that nobody exports.
func (s *Scope) Registerer() prometheus.Registerer {
	if s == nil {
		return prometheus.NewRegistry()
	}
	return s.registerer
}

// TracerProvider makes the server's spans outside calls (recovery, store
// commits).
func (s *Scope) TracerProvider() trace.TracerProvider {
	if s == nil {
		return noop.NewTracerProvider()
	}
	return s.tp
}
