package main

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/internal/rpc"
)

// orders with no payments behind it still serves reads, and orders fail fast
// with UNAVAILABLE instead of hanging.
func TestRunServesOrdersWithPaymentsDown(t *testing.T) {
	t.Parallel()
	// A port that refuses connections: listen, note it, close.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPayments := "http://" + lis.Addr().String()
	lis.Close()

	args := []string{"orders", "-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "orders.db"), "-payments", deadPayments}
	logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, args, func(string) string { return "" }, stderr)
	})
	addr := logs.WaitFor(t, regexp.MustCompile(`msg=serving .*addr=(\S+)`))[1]

	c := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), "http://"+addr, connect.WithGRPC(), cmdtest.Customer(t, "http://"+addr))
	if _, err := c.ListProducts(context.Background(), connect.NewRequest(&ordersv1.ListProductsRequest{})); err != nil {
		t.Fatalf("ListProducts: %v", err)
	}
	start := time.Now()
	_, err = c.CreateOrder(context.Background(), connect.NewRequest(&ordersv1.CreateOrderRequest{
		Items:        []*ordersv1.CartItem{{ProductId: "gopher-plush", Quantity: 1}},
		PaymentToken: "tok_visa",
	}))
	if connect.CodeOf(err) != connect.CodeUnavailable || time.Since(start) > 4*time.Second { // retries back off for up to ~1.5 s
		t.Errorf("CreateOrder with payments down: got %v after %v, want unavailable at once", err, time.Since(start))
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}

func TestRunRejectsBadPaymentsTargets(t *testing.T) {
	t.Parallel()
	for _, targets := range []string{"", "localhost:8081", "ftp://x:1", "http://x:1/path"} {
		args := []string{"orders", "-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "o.db"), "-payments", targets}
		if err := run(context.Background(), args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("-payments %q: got no error", targets)
		}
	}
}
