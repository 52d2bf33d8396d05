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
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/shop/shoptest"
)

// BenchmarkCreateOrder is the whole flow per op: client → orders (gRPC) →
// payments (gRPC) with every SQLite write committed durably
// (synchronous=FULL), 32 orders in flight.
func BenchmarkCreateOrder(b *testing.B) {
	url := shoptest.Start(b, slog.New(slog.NewTextHandler(io.Discard, nil)))
	session, err := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), url).
		CreateSession(context.Background(), connect.NewRequest(&ordersv1.CreateSessionRequest{}))
	if err != nil {
		b.Fatal(err)
	}
	c := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), url, connect.WithGRPC(),
		connect.WithInterceptors(auth.Bearer(session.Msg.GetToken())))
	var n atomic.Int64
	order := func(ctx context.Context) error {
		_, err := c.CreateOrder(ctx, connect.NewRequest(&ordersv1.CreateOrderRequest{
			Items:          []*ordersv1.CartItem{{ProductId: "sticker-pack", Quantity: 1}},
			PaymentToken:   "tok_visa",
			IdempotencyKey: fmt.Sprintf("bench-%d", n.Add(1)),
		}))
		return err
	}
	if err := order(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.SetParallelism(max(1, concurrency/goMaxProcs()))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := order(context.Background()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
