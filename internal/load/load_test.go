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
