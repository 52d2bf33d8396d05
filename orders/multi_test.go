package orders_test

import (
	"context"
	"sync"
	"testing"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
)

// Two orders instances on one PostgreSQL database are one shop: the same
// idempotency key sent to both at once is one order and one charge, and an
// order placed on one is read, listed and cancelled on the other with the
// same session.
func TestTwoInstancesOnOneDatabase(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{ordersDB: pgtest.URL(t)})
	other := s.anotherOrders(t)
	instances := []ordersv1connect.OrderServiceClient{
		s.client(connect.WithGRPC()),
		ordersv1connect.NewOrderServiceClient(other.Client(), other.URL(), connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(s.token))),
	}
	for round := range 5 {
		key := "both-" + string(rune('a'+round))
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ids = map[string]bool{}
		)
		for i := range 6 {
			wg.Go(func() {
				o := createOrder(t, instances[i%2], visaOrder(key))
				mu.Lock()
				ids[o.GetId()] = true
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(ids) != 1 {
			t.Fatalf("key %s sent to both instances: got orders %v, want one", key, ids)
		}
		for id := range ids {
			if n := s.chargesFor(t, id); n != 1 {
				t.Errorf("order %s: %d charges, want 1", id, n)
			}
			if got := getOrder(t, instances[1], id); got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID {
				t.Errorf("order %s on the other instance: %v, want PAID", id, got.GetStatus())
			}
		}
	}
	list, err := instances[1].ListOrders(context.Background(), connect.NewRequest(&ordersv1.ListOrdersRequest{}))
	if err != nil || len(list.Msg.GetOrders()) != 5 {
		t.Fatalf("ListOrders on the other instance: got %d (err %v), want 5", len(list.Msg.GetOrders()), err)
	}
	first := list.Msg.GetOrders()[0].GetId()
	if _, err := instances[1].CancelOrder(context.Background(), connect.NewRequest(&ordersv1.CancelOrderRequest{Id: first})); err != nil {
		t.Fatalf("cancel on the other instance: %v", err)
	}
	if got := getOrder(t, instances[0], first); got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
		t.Errorf("cancelled order on the first instance: %v, want CANCELLED", got.GetStatus())
	}
}
