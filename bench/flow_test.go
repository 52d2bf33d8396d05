package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/launch"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/web"
)

// startShop runs the shop as cmd/shop does (three payments replicas sharing
// one SQLite file, orders spreading calls over them, logs formatted as text)
// on loopback, with data in a temporary directory.
func startShop(b *testing.B) string {
	b.Helper()
	lis := make([]net.Listener, 4)
	for i := range lis {
		var err error
		if lis[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		done <- launch.Shop(ctx, logger, lis[0], lis[1:], b.TempDir(), web.Handler(), payments.Faults{}, nil)
	}()
	b.Cleanup(func() { cancel(); <-done })
	return "http://" + lis[0].Addr().String()
}

// BenchmarkCreateOrder is the whole flow per op: client → orders (gRPC) →
// payments (gRPC) with every SQLite write committed durably
// (synchronous=FULL), 32 orders in flight.
func BenchmarkCreateOrder(b *testing.B) {
	c := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), startShop(b), connect.WithGRPC())
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
