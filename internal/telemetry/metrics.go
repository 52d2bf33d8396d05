package telemetry

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors, which every process here exports.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// DurationBuckets are the bounds, in seconds, of the RPC duration histograms.
// Calls between the shop's services take well under a millisecond on one
// machine and a few milliseconds across a cluster, so the buckets start at
// 0.5 ms; Prometheus' default buckets start at 5 ms and would put every call
// in the first one.
var DurationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// RPCMetrics is a [connect.Interceptor] that observes how long each call
// takes, by procedure, protocol and code: rpc_server_duration_seconds on
// handlers, rpc_client_duration_seconds on clients. The histograms' _count
// series are the calls by code, so there are no separate counters. A stream
// is observed when it ends.
//
// It uses client_golang directly rather than otelconnect's metrics through
// the OpenTelemetry Prometheus exporter, for names, labels and buckets of
// our choosing, and because an observation costs several times less and
// allocates nothing (BenchmarkRPCMetrics).
type RPCMetrics struct {
	server, client *prometheus.HistogramVec
}

var _ connect.Interceptor = (*RPCMetrics)(nil)

// NewRPCMetrics registers the histograms with reg.
func NewRPCMetrics(reg prometheus.Registerer) (*RPCMetrics, error) {
	labels := []string{"procedure", "protocol", "code"}
	m := &RPCMetrics{
		server: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rpc_server_duration_seconds",
			Help:    "Time to handle a call, from its start to its last message, by procedure, protocol and code.",
			Buckets: DurationBuckets,
		}, labels),
		client: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "rpc_client_duration_seconds",
			Help:    "Time a call to another service took as its client saw it, by procedure, protocol and code.",
			Buckets: DurationBuckets,
		}, labels),
	}
	for _, c := range []prometheus.Collector{m.server, m.client} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *RPCMetrics) observe(vec *prometheus.HistogramVec, procedure, protocol string, err error, start time.Time) {
	vec.WithLabelValues(procedure, protocol, codeOf(err)).Observe(time.Since(start).Seconds())
}

// WrapUnary implements [connect.Interceptor].
func (m *RPCMetrics) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		vec := m.server
		if req.Spec().IsClient {
			vec = m.client
		}
		m.observe(vec, req.Spec().Procedure, req.Peer().Protocol, err, start)
		return resp, err
	}
}

// WrapStreamingHandler implements [connect.Interceptor].
func (m *RPCMetrics) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		m.observe(m.server, conn.Spec().Procedure, conn.Peer().Protocol, err, start)
		return err
	}
}

// WrapStreamingClient implements [connect.Interceptor]. The stream ends for
// its caller when it closes the response, with the first error a Receive
// returned other than io.EOF.
func (m *RPCMetrics) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		return &observedStream{StreamingClientConn: next(ctx, spec), m: m, start: time.Now()}
	}
}

type observedStream struct {
	connect.StreamingClientConn
	m     *RPCMetrics
	start time.Time
	mu    sync.Mutex // Receive and CloseResponse may run on different goroutines
	err   error
	done  bool
}

func (s *observedStream) Receive(msg any) error {
	err := s.StreamingClientConn.Receive(msg)
	if err != nil && !errors.Is(err, io.EOF) {
		s.mu.Lock()
		if s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
	}
	return err
}

func (s *observedStream) CloseResponse() error {
	closeErr := s.StreamingClientConn.CloseResponse()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.done = true
		s.m.observe(s.m.client, s.Spec().Procedure, s.Peer().Protocol, s.err, s.start)
	}
	return closeErr
}

// codeOf is the code a call ended with, as connect names it ("ok" for
// success). Context errors that no interceptor turned into connect errors yet
// are counted as the codes connect will send for them.
func codeOf(err error) string {
	if err == nil {
		return "ok"
	}
	code := connect.CodeOf(err)
	if code == connect.CodeUnknown {
		switch {
		case errors.Is(err, context.Canceled):
			code = connect.CodeCanceled
		case errors.Is(err, context.DeadlineExceeded):
			code = connect.CodeDeadlineExceeded
		}
	}
	return code.String()
}

// RegisterCollectors registers with reg the metrics v offers, if it offers
// any with a method Collectors() []prometheus.Collector (a SQLite store's
// group commits, say).
func RegisterCollectors(reg prometheus.Registerer, v any) error {
	c, ok := v.(interface{ Collectors() []prometheus.Collector })
	if !ok {
		return nil
	}
	for _, m := range c.Collectors() {
		if err := reg.Register(m); err != nil {
			return err
		}
	}
	return nil
}
