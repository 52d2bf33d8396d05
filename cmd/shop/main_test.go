package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/rpc"
)

// syncBuffer is a bytes.Buffer that the shop's logger and the test share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// The whole shop on real loopback ports: it becomes healthy, sells over
// Connect JSON, spreads charges over every payments replica, and stops
// cleanly when its context ends.
func TestRunServesTheShop(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	done := make(chan error, 1)
	args := []string{"shop", "-addr", "127.0.0.1:0", "-replicas", "3", "-data", t.TempDir()}
	go func() { done <- run(ctx, args, func(string) string { return "" }, &logs) }()

	pageRE := regexp.MustCompile(`page=(http://\S+)`)
	var baseURL string
	for deadline := time.Now().Add(10 * time.Second); baseURL == ""; time.Sleep(20 * time.Millisecond) {
		if m := pageRE.FindStringSubmatch(logs.String()); m != nil {
			baseURL = m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("shop did not start; logs:\n%s", logs.String())
		}
	}

	// gRPC health, here over the Connect protocol with JSON, as curl would.
	resp, err := http.Post(baseURL+"/grpc.health.v1.Health/Check", "application/json", strings.NewReader(`{"service":"orders.v1.OrderService"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"SERVING_STATUS_SERVING"`) {
		t.Fatalf("health check: got %d %s, want SERVING", resp.StatusCode, body)
	}

	httpClient := rpc.NewH2CClient()
	c := ordersv1connect.NewOrderServiceClient(httpClient, baseURL, connect.WithProtoJSON())
	replicas := map[string]int{}
	for range 30 {
		resp, err := c.CreateOrder(ctx, connect.NewRequest(&ordersv1.CreateOrderRequest{
			Items:        []*ordersv1.CartItem{{ProductId: "protobuf-mug", Quantity: 1}},
			PaymentToken: "tok_visa",
		}))
		if err != nil {
			t.Fatalf("CreateOrder: %v\nlogs:\n%s", err, logs.String())
		}
		replicas[resp.Msg.GetOrder().GetPaymentReplica()]++
	}
	if len(replicas) != 3 {
		t.Errorf("got charges on %v, want all three replicas", replicas)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("shop did not stop within 15s")
	}
}
