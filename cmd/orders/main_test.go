package main

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
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

// With a postgres:// -db, orders keeps its orders in PostgreSQL and needs a
// -session-key-file (instances sharing the database share the key); a
// restarted instance has every order, and its customers' sessions.
func TestRunOnPostgreSQL(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	base := []string{"orders", "-addr", "127.0.0.1:0", "-db", db, "-payments", "http://127.0.0.1:1"}
	if err := run(context.Background(), base, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "-session-key-file") {
		t.Fatalf("run on PostgreSQL without -session-key-file: got %v, want an error naming it", err)
	}
	keyFile := filepath.Join(t.TempDir(), "session.key")
	if _, err := auth.LoadOrCreateKeyFile(keyFile); err != nil {
		t.Fatal(err)
	}
	args := append(base, "-session-key-file", keyFile)
	var (
		customer connect.ClientOption
		orderID  string
	)
	for i := range 2 {
		logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
			return run(ctx, args, func(string) string { return "" }, stderr)
		})
		url := "http://" + logs.WaitFor(t, regexp.MustCompile(`msg=serving .*addr=(\S+)`))[1]
		if i == 0 {
			customer = cmdtest.Customer(t, url)
		}
		c := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), url, connect.WithGRPC(), customer)
		if i == 0 { // payments is unreachable: the order waits, PENDING, in the database
			_, err := c.CreateOrder(context.Background(), connect.NewRequest(&ordersv1.CreateOrderRequest{
				Items: []*ordersv1.CartItem{{ProductId: "gopher-plush", Quantity: 1}}, PaymentToken: "tok_visa", IdempotencyKey: "pg-1",
			}))
			if connect.CodeOf(err) != connect.CodeUnavailable {
				t.Fatalf("CreateOrder with payments down: got %v, want unavailable", err)
			}
		}
		list, err := c.ListOrders(context.Background(), connect.NewRequest(&ordersv1.ListOrdersRequest{}))
		if err != nil || len(list.Msg.GetOrders()) != 1 || list.Msg.GetOrders()[0].GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PENDING {
			t.Fatalf("run %d: ListOrders: got %v (err %v), want the one PENDING order", i, list, err)
		}
		if i == 0 {
			orderID = list.Msg.GetOrders()[0].GetId()
		} else if got := list.Msg.GetOrders()[0].GetId(); got != orderID {
			t.Errorf("after a restart: got order %s, want %s", got, orderID)
		}
		if err := stop(); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}
