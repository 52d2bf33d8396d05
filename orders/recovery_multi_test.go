package orders_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/connectshop/connectshop/orders"
)

// unreachable fails every Charge while down is set, as payments out of
// reach would.
type unreachable struct {
	orders.Payments
	down *atomic.Bool
}

func (u unreachable) Charge(ctx context.Context, req *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	if u.down.Load() {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("payments unreachable"))
	}
	return u.Payments.Charge(ctx, req)
}

// Orders left PENDING by one orders instance are settled by the recovery
// loop of any instance on the same database, once each: the loops of both
// instances running at the same moment charge every order exactly once.
func TestRecoveryByAnyInstance(t *testing.T) {
	t.Parallel()
	var down atomic.Bool
	s := newShop(t, shopConfig{ordersDB: pgtest.URL(t), wrapPayments: func(p orders.Payments) orders.Payments {
		return unreachable{Payments: p, down: &down}
	}})
	other := startOrders(t, s.cfg, s.payments, loadKey(t, s.dir, "service.key"), loadKey(t, s.dir, "session.key"))

	c := s.client()
	leave := func(keys ...string) []string {
		t.Helper()
		down.Store(true)
		defer down.Store(false)
		var ids []string
		for _, key := range keys {
			_, err := c.CreateOrder(context.Background(), connect.NewRequest(visaOrder(key)))
			info := assertError(t, err, connect.CodeUnavailable, ordersv1.ErrorReason_PAYMENTS_UNAVAILABLE.String())
			ids = append(ids, info.GetMetadata()["order_id"])
		}
		return ids
	}
	settled := func(when string, ids []string) {
		t.Helper()
		for _, id := range ids {
			if got := getOrder(t, c, id); got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID {
				t.Errorf("%s: order %s is %v, want PAID", when, id, got.GetStatus())
			}
			if n := s.chargesFor(t, id); n != 1 {
				t.Errorf("%s: order %s has %d charges, want 1", when, id, n)
			}
		}
	}

	// Left by the first instance, settled by the other's loop alone.
	ids := leave("left-1", "left-2")
	if err := orders.ResumePending(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	settled("after the other instance's recovery", ids)

	// Both loops at once.
	ids = leave("left-3", "left-4", "left-5", "left-6")
	var wg sync.WaitGroup
	for _, srv := range []*orders.Server{s.ordersServer, other} {
		wg.Go(func() {
			if err := orders.ResumePending(context.Background(), srv); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	settled("after both recovery loops at once", ids)
}
