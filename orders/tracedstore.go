package orders

import (
	"context"
	"time"

	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
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
	t, err := dbtrace.New(tp, reg, "orders", s)
	if err != nil {
		return nil, err
	}
	return tracedStore{Store: s, t: t}, nil
}

func (s tracedStore) Create(ctx context.Context, key string, requestHash []byte, paymentToken string, o *ordersv1.Order) (*ordersv1.Order, error) {
	ctx, end := s.t.Start(ctx, "Create", ErrKeyReused)
	stored, err := s.Store.Create(ctx, key, requestHash, paymentToken, o)
	end(err)
	return stored, err
}

func (s tracedStore) Update(ctx context.Context, id string, fn func(*ordersv1.Order) (bool, error)) (*ordersv1.Order, bool, error) {
	ctx, end := s.t.Start(ctx, "Update", ErrNotFound)
	o, changed, err := s.Store.Update(ctx, id, fn)
	end(err)
	return o, changed, err
}

func (s tracedStore) DeletePending(ctx context.Context, id string) error {
	ctx, end := s.t.Start(ctx, "DeletePending")
	err := s.Store.DeletePending(ctx, id)
	end(err)
	return err
}

func (s tracedStore) Order(ctx context.Context, id string) (*ordersv1.Order, error) {
	ctx, end := s.t.Start(ctx, "Order", ErrNotFound)
	o, err := s.Store.Order(ctx, id)
	end(err)
	return o, err
}

func (s tracedStore) List(ctx context.Context, customerID string, before int64, limit int) ([]*ordersv1.Order, int64, error) {
	ctx, end := s.t.Start(ctx, "List")
	list, next, err := s.Store.List(ctx, customerID, before, limit)
	end(err)
	return list, next, err
}

func (s tracedStore) Unsettled(ctx context.Context, cutoff time.Time) ([]UnsettledOrder, error) {
	ctx, end := s.t.Start(ctx, "Unsettled")
	list, err := s.Store.Unsettled(ctx, cutoff)
	end(err)
	return list, err
}

func (s tracedStore) Changes(ctx context.Context, customerID string, after int64, limit int) ([]Change, error) {
	ctx, end := s.t.Start(ctx, "Changes")
	changes, err := s.Store.Changes(ctx, customerID, after, limit)
	end(err)
	return changes, err
}

func (s tracedStore) LastChange(ctx context.Context, customerID string) (int64, error) {
	ctx, end := s.t.Start(ctx, "LastChange")
	seq, err := s.Store.LastChange(ctx, customerID)
	end(err)
	return seq, err
}

func (s tracedStore) PruneChanges(ctx context.Context, cutoff time.Time) error {
	ctx, end := s.t.Start(ctx, "PruneChanges")
	err := s.Store.PruneChanges(ctx, cutoff)
	end(err)
	return err
}
