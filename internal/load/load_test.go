package load_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/load"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/shop/shoptest"
)

// Both bounds hold together: a run stops at Orders even when its Duration
// would allow more.
func TestRunStopsAtTheFirstBound(t *testing.T) {
	t.Parallel()
	url := shoptest.Start(t, slog.New(slog.DiscardHandler))
	c := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), url)
	res := load.Load{Orders: 20, Duration: time.Minute, Concurrency: 4}.Run(context.Background(), c)
	if len(res.Errors) > 0 || res.Orders() != 20 || res.Elapsed > 30*time.Second {
		t.Fatalf("got %d orders, %d errors in %v; want 20 and no errors, well before a minute", res.Orders(), len(res.Errors), res.Elapsed)
	}
	var replicas int
	for range res.PerReplica {
		replicas++
	}
	if replicas == 0 {
		t.Error("no replica recorded")
	}
	if res := (load.Load{Concurrency: 4}).Run(context.Background(), c); res.Orders() != 0 {
		t.Errorf("unbounded run placed %d orders, want none", res.Orders())
	}
}

// A run moves each client to a new customer every OrdersPerSession orders,
// so the shop's per-customer rate limit (default: 5/s, bursts of 20) never
// throttles it, however fast it goes.
func TestRunStaysUnderThePerCustomerLimit(t *testing.T) {
	t.Parallel()
	url := shoptest.Start(t, slog.New(slog.DiscardHandler))
	c := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), url)
	res := load.Load{Orders: 100, Concurrency: 2}.Run(context.Background(), c)
	if len(res.Errors) > 0 || res.Orders() != 100 {
		t.Fatalf("got %d orders, %d errors (first: %v); want 100 and none", res.Orders(), len(res.Errors), res.Errors)
	}
	if len(res.Sessions) < 100/20 {
		t.Errorf("got %d sessions for 100 orders, want a new one every 20 orders", len(res.Sessions))
	}
}

// Given two clients (two orders instances), a closed-loop run deals its
// clients out round-robin: of 3, the 1st and 3rd place all their orders
// through the first, the 2nd through the second (a Load run's idempotency
// keys end in -<client>-<order>), and every order goes through the instance
// that made its customer's session.
func TestRunSpreadsClientsOverInstances(t *testing.T) {
	t.Parallel()
	a, b := newStub(5*time.Millisecond), newStub(5*time.Millisecond)
	a.name, b.name = "a-", "b-"
	res := load.Load{Orders: 60, Concurrency: 3, OrdersPerSession: 4}.Run(context.Background(), a, b)
	if len(res.Errors) > 0 || res.Orders() != 60 {
		t.Fatalf("got %d orders, errors %v; want 60 and none", res.Orders(), res.Errors)
	}
	if len(res.PerClient) != 2 || res.PerClient[0] != len(a.tokenOf) || res.PerClient[1] != len(b.tokenOf) {
		t.Fatalf("PerClient %v, orders on a %d, on b %d; want them to agree", res.PerClient, len(a.tokenOf), len(b.tokenOf))
	}
	for _, tc := range []struct {
		s       *stubClient
		clients []string
	}{{a, []string{"0", "2"}}, {b, []string{"1"}}} {
		if len(tc.s.keyOf) == 0 {
			t.Errorf("no order on %s", tc.s.name)
		}
		for i, key := range tc.s.keyOf {
			parts := strings.Split(key, "-")
			if client := parts[len(parts)-2]; !slices.Contains(tc.clients, client) {
				t.Errorf("order %d (key %q) from client %s went to %s, want only clients %v there", i, key, client, tc.s.name, tc.clients)
			}
			if token := tc.s.tokenOf[i]; !strings.HasPrefix(token, tc.s.name) {
				t.Errorf("order %d went to %s as %q, a customer of the other instance", i, tc.s.name, token)
			}
		}
	}
	if res := (load.Load{Orders: 10}).Run(context.Background()); res.Orders() != 0 || len(res.Errors) != 0 {
		t.Errorf("run with no client: %d orders, errors %v; want nothing", res.Orders(), res.Errors)
	}
}
