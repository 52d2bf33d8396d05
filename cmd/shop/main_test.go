package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/internal/rpc"
)

// The whole shop on real loopback ports: it becomes healthy, sells over
// Connect JSON, spreads charges over every payments replica, and stops
// cleanly when its context ends.
func TestRunServesTheShop(t *testing.T) {
	t.Parallel()
	// One customer places 30 orders below, at once: over the default burst.
	args := []string{"shop", "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-replicas", "3", "-data", t.TempDir(), "-order-burst", "30"}
	baseURL, stop := startShop(t, args)

	// gRPC health, here over the Connect protocol with JSON, as curl would:
	// SERVING once orders has found a healthy payments replica.
	var body []byte
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(string(body), `"SERVING_STATUS_SERVING"`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("health check: got %s for 5s, want SERVING", body)
		}
		resp, err := http.Post(baseURL+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader(`{"service":"orders.v1.OrderService"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}

	httpClient := rpc.NewH2CClient()
	customer := cmdtest.Customer(t, baseURL)
	c := ordersv1connect.NewOrderServiceClient(httpClient, baseURL, connect.WithProtoJSON(), customer)
	replicas := map[string]int{}
	var lastOrder *ordersv1.Order
	for range 30 {
		resp, err := c.CreateOrder(context.Background(), connect.NewRequest(&ordersv1.CreateOrderRequest{
			Items:        []*ordersv1.CartItem{{ProductId: "protobuf-mug", Quantity: 1}},
			PaymentToken: "tok_visa",
		}))
		if err != nil {
			t.Fatalf("CreateOrder: %v", err)
		}
		lastOrder = resp.Msg.GetOrder()
		replicas[lastOrder.GetPaymentReplica()]++
	}
	if len(replicas) != 3 {
		t.Errorf("got charges on %v, want all three replicas", replicas)
	}

	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}

	// Started again on the same data, the shop still has the order.
	baseURL, _ = startShop(t, args)
	c = ordersv1connect.NewOrderServiceClient(httpClient, baseURL, connect.WithGRPC(), customer) // the session key is kept in -data
	got, err := c.GetOrder(context.Background(), connect.NewRequest(&ordersv1.GetOrderRequest{Id: lastOrder.GetId()}))
	if err != nil || got.Msg.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID {
		t.Fatalf("after restart: got %v (err %v), want order %s PAID", got, err, lastOrder.GetId())
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"shop", "-replicas", "0"}, {"shop", "-addr", "nohost"}, {"shop", "-nope"}, {"shop", "-max-conns", "0"}, {"shop", "-max-watchers", "0"}, {"shop", "-order-rate", "-1"}} {
		if err := run(context.Background(), args, func(string) string { return "" }, io.Discard); err == nil {
			t.Errorf("run %v: got no error", args)
		}
	}
}

// startShop runs the shop with args and returns the orders base URL.
func startShop(t *testing.T, args []string) (string, func() error) {
	t.Helper()
	logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, args, func(string) string { return "" }, stderr)
	})
	return logs.WaitFor(t, regexp.MustCompile(`page=(http://\S+)`))[1], stop
}
