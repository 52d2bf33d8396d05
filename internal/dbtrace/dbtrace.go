// Package dbtrace gives each store operation a span and a latency
// observation, whatever the database: the services wrap their store (SQLite
// or PostgreSQL) in a decorator that calls [Tracer.Start] around every
// method, so a trace shows which database work a call did and how long it
// took, and the metrics show how long commits take.
package dbtrace

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/connectshop/connectshop/internal/telemetry"
	"github.com/prometheus/client_golang/prometheus"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracer starts the spans of one store and times its operations.
type Tracer struct {
	tracer    trace.Tracer
	prefix    string               // "orders.Store/"
	attrs     []attribute.KeyValue // which store
	durations *prometheus.HistogramVec
}

// New returns a tracer for the store of service ("orders"), an
// implementation such as *sqlite.Store, with spans from tp and the metric
// store_operation_duration_seconds{operation} registered with reg.
func New(tp trace.TracerProvider, reg prometheus.Registerer, service string, store any) (Tracer, error) {
	durations := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "store_operation_duration_seconds",
		Help:    "Time of each store operation (a write includes its commit), by operation.",
		Buckets: telemetry.DurationBuckets,
	}, []string{"operation"})
	if err := reg.Register(durations); err != nil {
		return Tracer{}, err
	}
	return Tracer{
		tracer:    tp.Tracer("github.com/connectshop/connectshop/internal/dbtrace"),
		prefix:    service + ".Store/",
		attrs:     []attribute.KeyValue{attribute.String("connectshop.store", fmt.Sprintf("%T", store))},
		durations: durations,
	}, nil
}

// Start starts the span of operation op (a method name) as a child of the
// span in ctx, if any. Pass the returned function the operation's error
// when it ends: it records errors other than the expected ones (which say
// "not found" and the like, not that the database failed) and ends the
// span.
func (t Tracer) Start(ctx context.Context, op string, expected ...error) (context.Context, func(error)) {
	start := time.Now()
	ctx, span := t.tracer.Start(ctx, t.prefix+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(t.attrs...))
	return ctx, func(err error) {
		t.durations.WithLabelValues(op).Observe(time.Since(start).Seconds())
		if err != nil && !isOneOf(err, expected) {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}
}

func isOneOf(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
