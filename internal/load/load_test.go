package load_test

import (
	"context"
	"log/slog"
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
