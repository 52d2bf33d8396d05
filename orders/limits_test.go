package orders_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/memhttp"
	"github.com/connectshop/connectshop/orders"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// newLimitedShop is newShop with the given limits for orders.
func newLimitedShop(t *testing.T, limits orders.Limits) *shop {
	t.Helper()
	return newShop(t, shopConfig{limits: limits})
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
	}
}

// watch opens a WatchOrders stream and returns it once the server has
// subscribed it (its headers arrived) or refused it (its error is in Err).
func watch(t *testing.T, c ordersv1connect.OrderServiceClient) *connect.ServerStreamForClient[ordersv1.WatchOrdersResponse] {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := c.WatchOrders(ctx, connect.NewRequest(&ordersv1.WatchOrdersRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); stream.Close() })
	stream.ResponseHeader()
	return stream
}

// refused waits for a stream that should have been refused to end, and
// returns its error.
func refused(t *testing.T, stream *connect.ServerStreamForClient[ordersv1.WatchOrdersResponse]) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		stream.Receive()
		done <- stream.Err()
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("stream still open after 5s, want it refused")
		return nil
	}
}

// watching waits until s serves n watchers.
func watching(t *testing.T, s *shop, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("want %d watchers, have %d", n, orders.Watchers(s.ordersServer)),
		func() bool { return orders.Watchers(s.ordersServer) == n })
}

func TestWatchersAreCappedPerCustomerAndInAll(t *testing.T) {
	t.Parallel()
	s := newLimitedShop(t, orders.Limits{MaxWatchers: 3, MaxWatchersPerCustomer: 2})
	a := s.client(connect.WithProtoJSON())
	b := s.clientAs(s.newCustomer(t), s.orders.HTTP1Client(), connect.WithGRPCWeb())
	c := s.clientAs(s.newCustomer(t), s.orders.Client(), connect.WithGRPC())

	a1 := watch(t, a)
	watch(t, a)
	watching(t, s, 2)
	err := refused(t, watch(t, a))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "close one") {
		t.Fatalf("a third stream of one customer: got %v, want resource_exhausted saying to close one", err)
	}
	watch(t, b)
	watching(t, s, 3)
	err = refused(t, watch(t, c))
	if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "retry later") {
		t.Fatalf("a fourth stream in all: got %v, want resource_exhausted saying to retry later", err)
	}

	// A stream that ends frees its place.
	a1.Close()
	watching(t, s, 2)
	watch(t, c)
	watching(t, s, 3)
}

// rawHTTP1Watch starts WatchOrders over a bare HTTP/1.1 connection, Connect
// protocol with JSON, reads the response's headers and returns the
// connection, unread from then on: a client that stopped reading.
func rawHTTP1Watch(t *testing.T, lis *memhttp.Listener, token string) net.Conn {
	t.Helper()
	conn, err := lis.DialContext(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	body := "\x00\x00\x00\x00\x02{}" // one envelope: flags, length, {}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: memhttp.invalid\r\nContent-Type: application/connect+json\r\n"+
		"Connect-Protocol-Version: 1\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s",
		ordersv1connect.OrderServiceWatchOrdersProcedure, token, len(body), body)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 16), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/connect+json" {
		t.Fatalf("got %s %v, want 200 and a Connect stream", resp.Status, resp.Header)
	}
	conn.SetReadDeadline(time.Time{})
	return conn
}

// A watcher on HTTP/1.1 that stops reading fills its TCP window (here: an
// unbuffered in-memory pipe), and the handler's next Send cannot finish. It
// is dropped once WatchSendTimeout has passed, and its connection closed.
func TestStuckHTTP1WatcherIsDropped(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s := newLimitedShop(t, orders.Limits{WatchSendTimeout: timeout})
	conn := rawHTTP1Watch(t, s.orders.Listener(), s.token)
	watching(t, s, 1)

	createOrder(t, s.client(), visaOrder("stuck-1")) // a change the client does not read
	changed := time.Now()
	waitFor(t, timeout+2*time.Second, "want the stuck watcher dropped", func() bool { return orders.Watchers(s.ordersServer) == 0 })
	t.Logf("dropped %v after the change", time.Since(changed).Round(time.Millisecond))

	// Its connection is closed: reading again ends, with no end of stream.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(conn)
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		t.Fatalf("connection still open after the drop (read %q)", rest)
	}
	// The same customer can watch again.
	watch(t, s.client())
	watching(t, s, 1)
}

// On HTTP/2 a watcher that stops reading closes its stream's flow-control
// window (here a small one): it is dropped the same way, its stream reset.
func TestStuckHTTP2WatcherIsDropped(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s := newLimitedShop(t, orders.Limits{WatchSendTimeout: timeout})
	tr := &http.Transport{
		DialContext: s.orders.Listener().DialContext,
		Protocols:   new(http.Protocols),
		HTTP2:       &http.HTTP2Config{MaxReceiveBufferPerStream: 512},
	}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	stuck := watch(t, s.clientAs(s.token, &http.Client{Transport: tr}, connect.WithProtoJSON()))
	watching(t, s, 1)

	for i := range 3 { // more than 512 bytes of changes, none read
		createOrder(t, s.client(), visaOrder(fmt.Sprintf("stuck-h2-%d", i)))
	}
	waitFor(t, timeout+2*time.Second, "want the stuck watcher dropped", func() bool { return orders.Watchers(s.ordersServer) == 0 })
	for stuck.Receive() { // what got through before the window closed
	}
	if stuck.Err() == nil {
		t.Error("stream ended cleanly, want it broken")
	}
	t.Logf("the stuck client, reading again, gets: %v", stuck.Err())
}

// A watcher with nothing to receive is not dropped, however long it waits:
// the deadline covers sending a change, not waiting for one.
func TestIdleWatcherOutlivesTheSendTimeout(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	s := newLimitedShop(t, orders.Limits{WatchSendTimeout: timeout})
	for _, p := range []struct {
		name string
		c    ordersv1connect.OrderServiceClient
	}{
		{"http1", s.clientAs(s.token, s.orders.HTTP1Client(), connect.WithProtoJSON())},
		{"h2c", s.client(connect.WithGRPC())},
	} {
		stream := watch(t, p.c)
		changes := make(chan *ordersv1.Order, 16)
		ended := make(chan error, 1)
		go func() {
			for stream.Receive() {
				changes <- stream.Msg().GetOrder()
			}
			ended <- stream.Err()
		}()
		for i := range 2 { // a change, then idle for 3 timeouts, then another
			o := createOrder(t, s.client(), visaOrder(fmt.Sprintf("idle-%s-%d", p.name, i)))
			for got := (*ordersv1.Order)(nil); got.GetId() != o.GetId(); {
				select {
				case got = <-changes:
				case err := <-ended:
					t.Fatalf("%s: stream ended waiting for change %d: %v", p.name, i, err)
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: change %d not seen", p.name, i)
				}
			}
			select {
			case err := <-ended:
				t.Fatalf("%s: idle stream ended: %v", p.name, err)
			case <-time.After(3 * timeout): // the idleness under test
			}
		}
		stream.Close()
	}
}

func TestCreateOrderIsRateLimitedPerCustomer(t *testing.T) {
	t.Parallel()
	s := newLimitedShop(t, orders.Limits{OrderRate: 2, OrderBurst: 3})
	c := s.client()
	var err error
	placed := 0
	for ; placed < 10; placed++ { // the burst, and what refills while it is placed
		_, err = c.CreateOrder(ctxWithTimeout(t, 10*time.Second), connect.NewRequest(visaOrder(fmt.Sprintf("rate-%d", placed))))
		if err != nil {
			break
		}
	}
	if placed < 3 || connect.CodeOf(err) != connect.CodeResourceExhausted {
		t.Fatalf("after %d orders: got %v, want at least the burst of 3, then resource_exhausted", placed, err)
	}
	var cerr *connect.Error
	errors.As(err, &cerr)
	var delay time.Duration
	for _, d := range cerr.Details() {
		if v, derr := d.Value(); derr == nil {
			if ri, ok := v.(*errdetails.RetryInfo); ok {
				delay = ri.GetRetryDelay().AsDuration()
			}
		}
	}
	if delay <= 0 || delay > 600*time.Millisecond || !strings.Contains(cerr.Message(), "retry in") || cerr.Meta().Get("Retry-After") != "1" {
		t.Fatalf("got %v, RetryInfo delay %v, Retry-After %q; want a RetryInfo of at most 1/2 s, the delay in the message, Retry-After 1",
			err, delay, cerr.Meta().Get("Retry-After"))
	}

	// Another customer is not limited by the first.
	createOrder(t, s.clientAs(s.newCustomer(t), s.orders.Client()), visaOrder("other-1"))
	// Over REST: 429 with Retry-After.
	req, _ := http.NewRequest(http.MethodPost, s.orders.URL()+"/v1/orders",
		strings.NewReader(`{"items":[{"productId":"sticker-pack","quantity":1}],"paymentToken":"tok_visa"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	limited := false
	for i := 0; i < 5 && !limited; i++ { // spend whatever refilled meanwhile
		resp, err := s.orders.Client().Do(req.Clone(context.Background()))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusTooManyRequests:
			limited = true
			if resp.Header.Get("Retry-After") == "" {
				t.Error("REST 429 without Retry-After")
			}
		case http.StatusOK:
		default:
			t.Fatalf("REST: got %s, want 200 or 429", resp.Status)
		}
	}
	if !limited {
		t.Error("REST: never got 429")
	}
	// Retrying succeeds once the bucket has refilled.
	waitFor(t, 2*time.Second, "want the retry accepted", func() bool {
		_, err := c.CreateOrder(context.Background(), connect.NewRequest(visaOrder("rate-retry")))
		return err == nil
	})
}

// Orders' Serve closes connections over Limits.MaxConns as they come.
func TestOrdersServeCapsConnections(t *testing.T) {
	t.Parallel()
	s := newLimitedShop(t, orders.Limits{MaxConns: 2})
	lis := memhttp.NewListener()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ordersServer.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	var held []net.Conn
	for range 2 {
		conn, err := lis.DialContext(ctx, "", "")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		held = append(held, conn)
	}
	over, err := lis.DialContext(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := over.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("third connection: read %d bytes, %v; want it closed at once", n, err)
	}
	// A held connection still works.
	fmt.Fprintf(held[0], "GET /v1/products HTTP/1.1\r\nHost: x\r\n\r\n")
	held[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(held[0]), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("held connection: %v %v", resp, err)
	}
	resp.Body.Close()
}
