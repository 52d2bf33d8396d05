package payments

import (
	"context"
	"time"

	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/dbtrace"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// tracedStore gives every operation of a [Store] a span.
type tracedStore struct {
	Store
	t dbtrace.Tracer
}

func traceStore(s Store, tp trace.TracerProvider, reg prometheus.Registerer) (Store, error) {
	t, err := dbtrace.New(tp, reg, "payments", s)
	if err != nil {
		return nil, err
	}
	return tracedStore{Store: s, t: t}, nil
}

func (s tracedStore) Charge(ctx context.Context, key string, requestHash []byte, p *paymentsv1.Payment) (*paymentsv1.Payment, error) {
	ctx, end := s.t.Start(ctx, "Charge", ErrKeyReused)
	stored, err := s.Store.Charge(ctx, key, requestHash, p)
	end(err)
	return stored, err
}

func (s tracedStore) Refund(ctx context.Context, id string, now time.Time) (*paymentsv1.Payment, error) {
	ctx, end := s.t.Start(ctx, "Refund", ErrNotFound, ErrNotRefundable)
	p, err := s.Store.Refund(ctx, id, now)
	end(err)
	return p, err
}

func (s tracedStore) Payment(ctx context.Context, id string) (*paymentsv1.Payment, error) {
	ctx, end := s.t.Start(ctx, "Payment", ErrNotFound)
	p, err := s.Store.Payment(ctx, id)
	end(err)
	return p, err
}
