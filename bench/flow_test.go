package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/shop"
	"github.com/connectshop/connectshop/internal/shop/shoptest"
	"github.com/connectshop/connectshop/internal/telemetry"
	"github.com/connectshop/connectshop/orders"
)

// ordersPerCustomer is how many orders each customer places here: a new
// customer may place a whole burst of orders at once (orders'
// per-customer rate limit), so the benchmark never waits on the limiter and
// measures the shop. Real traffic is many customers placing a few orders
// each too.
const ordersPerCustomer = orders.DefaultOrderBurst

// BenchmarkCreateOrder is the whole flow per op: client → orders (gRPC) →
// payments (gRPC) with every SQLite write committed durably
// (synchronous=FULL), 32 orders in flight. Each goroutine is a customer for
// ordersPerCustomer orders, then the next; the sessions are made before the
// timer starts.
//
// telemetry=on is the shop as production runs it without a collector:
// every call and store operation traced (spans made and dropped) and
// measured; off, none of it.
func BenchmarkCreateOrder(b *testing.B) {
	b.Run("telemetry=off", func(b *testing.B) { benchmarkCreateOrder(b, nil) })
	b.Run("telemetry=on", func(b *testing.B) { benchmarkCreateOrder(b, newTelemetry(b)) })
}

func benchmarkCreateOrder(b *testing.B, tel *telemetry.Telemetry) {
	url := shoptest.Start(b, slog.New(slog.NewTextHandler(io.Discard, nil)), func(cfg *shop.Config) { cfg.Telemetry = tel })
	httpClient := rpc.NewH2CClient()
	b.SetParallelism(max(1, concurrency/goMaxProcs()))
	goroutines := max(1, concurrency/goMaxProcs()) * goMaxProcs()
	// Enough customers for every op, with each goroutine leaving its last
	// one part-used.
	sessions := make(chan string, 1+b.N/ordersPerCustomer+goroutines)
	sessionClient := ordersv1connect.NewOrderServiceClient(httpClient, url)
	for range cap(sessions) {
		resp, err := sessionClient.CreateSession(context.Background(), connect.NewRequest(&ordersv1.CreateSessionRequest{}))
		if err != nil {
			b.Fatal(err)
		}
		sessions <- resp.Msg.GetToken()
	}
	c := ordersv1connect.NewOrderServiceClient(httpClient, url, connect.WithGRPC())
	var n atomic.Int64
	order := func(ctx context.Context, token string) error {
		req := connect.NewRequest(&ordersv1.CreateOrderRequest{
			Items:          []*ordersv1.CartItem{{ProductId: "sticker-pack", Quantity: 1}},
			PaymentToken:   "tok_visa",
			IdempotencyKey: fmt.Sprintf("bench-%d", n.Add(1)),
		})
		req.Header().Set("Authorization", "Bearer "+token)
		_, err := c.CreateOrder(ctx, req)
		return err
	}
	if err := order(context.Background(), <-sessions); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	report := measureCPU(b)
	defer report()
	b.RunParallel(func(pb *testing.PB) {
		var token string
		placed := 0
		for pb.Next() {
			if token == "" || placed == ordersPerCustomer {
				token, placed = <-sessions, 0
			}
			placed++
			if err := order(context.Background(), token); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
