// Package cmdtest runs a command's run function inside a test, as the
// commands' own tests do: start it, wait for a log line, call it, stop it.
package cmdtest

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/rpc"
)

// Logs collects what a command writes to stderr.
type Logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements [io.Writer].
func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// String returns everything written so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// WaitFor waits up to 10 s for a log line matching re and returns its
// submatches; it fails the test if none comes.
func (l *Logs) WaitFor(t testing.TB, re *regexp.Regexp) []string {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if m := re.FindStringSubmatch(l.String()); m != nil {
			return m
		}
	}
	t.Fatalf("no log line matched %s; logs:\n%s", re, l.String())
	return nil
}

// Start calls run in the background with a context that the returned stop
// function cancels; stop then waits up to 15 s for run and returns its error.
func Start(t testing.TB, run func(ctx context.Context, stderr io.Writer) error) (logs *Logs, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = new(Logs)
	done := make(chan error, 1)
	go func() { done <- run(ctx, logs) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("command did not stop within 15s; logs:\n%s", logs.String())
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return logs, stop
}

// Customer starts a customer session on the orders service at baseURL and
// returns a client option that sends it with every call.
func Customer(t testing.TB, baseURL string) connect.ClientOption {
	t.Helper()
	c := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), baseURL)
	resp, err := c.CreateSession(context.Background(), connect.NewRequest(&ordersv1.CreateSessionRequest{}))
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return connect.WithInterceptors(auth.Bearer(resp.Msg.GetToken()))
}

// PaidAndDeclined places two orders for a new customer of the orders server
// at baseURL: one paid, sent with paidWith (a protocol option such as
// connect.WithGRPC()), and one declined (tok_declined: FAILED_PRECONDITION),
// sent with declinedWith. It returns the paid order.
func PaidAndDeclined(t testing.TB, baseURL string, paidWith, declinedWith connect.ClientOption) *ordersv1.Order {
	t.Helper()
	customer := Customer(t, baseURL)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	order := func(token string) *connect.Request[ordersv1.CreateOrderRequest] {
		return connect.NewRequest(&ordersv1.CreateOrderRequest{
			Items:        []*ordersv1.CartItem{{ProductId: "gopher-plush", Quantity: 1}},
			PaymentToken: token,
		})
	}
	paid, err := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), baseURL, paidWith, customer).CreateOrder(ctx, order("tok_visa"))
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	_, err = ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), baseURL, declinedWith, customer).CreateOrder(ctx, order("tok_declined"))
	if connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("CreateOrder with tok_declined: got %v, want failed_precondition", err)
	}
	return paid.Msg.GetOrder()
}
