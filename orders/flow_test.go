package orders_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/testing/protocmp"
)

// The same CreateOrder, on the same handler, over every protocol and codec a
// client may choose; the order records how each hop really travelled.
func TestCreateOrderOverEveryProtocol(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	tests := []struct {
		name                  string
		httpClient            *http.Client
		opts                  []connect.ClientOption
		protocol, codec, http string
	}{
		{"connect json", s.orders.Client(), []connect.ClientOption{connect.WithProtoJSON()}, "connect", "json", "HTTP/2.0"},
		{"connect proto", s.orders.Client(), nil, "connect", "proto", "HTTP/2.0"},
		{"grpc", s.orders.Client(), []connect.ClientOption{connect.WithGRPC()}, "grpc", "proto", "HTTP/2.0"},
		{"grpc json", s.orders.Client(), []connect.ClientOption{connect.WithGRPC(), connect.WithProtoJSON()}, "grpc", "json", "HTTP/2.0"},
		{"grpcweb", s.orders.Client(), []connect.ClientOption{connect.WithGRPCWeb()}, "grpcweb", "proto", "HTTP/2.0"},
		{"connect json over http1", s.orders.HTTP1Client(), []connect.ClientOption{connect.WithProtoJSON()}, "connect", "json", "HTTP/1.1"},
		{"grpcweb over http1", s.orders.HTTP1Client(), []connect.ClientOption{connect.WithGRPCWeb()}, "grpcweb", "proto", "HTTP/1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := s.clientAs(s.token, tt.httpClient, tt.opts...)
			o := createOrder(t, c, visaOrder("key-"+strings.ReplaceAll(tt.name, " ", "-")))
			if got, want := o.GetStatus(), ordersv1.OrderStatus_ORDER_STATUS_PAID; got != want {
				t.Fatalf("got status %v, want %v", got, want)
			}
			if got := o.GetTotal(); got.GetMinorUnits() != visaTotal || got.GetCurrencyCode() != "USD" {
				t.Errorf("got total %v, want %d USD", got, visaTotal)
			}
			if o.GetPaymentId() == "" || o.GetPaymentReplica() != "payments-1" {
				t.Errorf("got payment %q on %q, want an id on payments-1", o.GetPaymentId(), o.GetPaymentReplica())
			}
			want := []*ordersv1.Hop{
				{Procedure: "/orders.v1.OrderService/CreateOrder", Server: "orders", Protocol: tt.protocol, Codec: tt.codec, HttpVersion: tt.http},
				// orders always calls payments with binary gRPC over h2c.
				{Procedure: "/payments.v1.PaymentService/Charge", Server: "payments-1", Protocol: "grpc", Codec: "proto", HttpVersion: "HTTP/2.0"},
			}
			if diff := cmp.Diff(want, o.GetHops(), protocmp.Transform(), protocmp.IgnoreFields(&ordersv1.Hop{}, "duration")); diff != "" {
				t.Errorf("hops (-want +got):\n%s", diff)
			}
			// The client-side hop includes the payments hop it waited for.
			if in, out := o.GetHops()[0].GetDuration().AsDuration(), o.GetHops()[1].GetDuration().AsDuration(); out <= 0 || in < out {
				t.Errorf("got durations orders %v, payments %v; want 0 < payments <= orders", in, out)
			}
		})
	}
}

// Read-only RPCs are NO_SIDE_EFFECTS, so Connect serves them on HTTP GET:
// cacheable, and callable from a browser address bar.
func TestReadOnlyRPCsOverGET(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	o := createOrder(t, s.client(), visaOrder("get-1"))

	get := func(t *testing.T, procedure, jsonMessage string) []byte {
		t.Helper()
		q := url.Values{"encoding": {"json"}, "message": {jsonMessage}}
		req, err := http.NewRequest(http.MethodGet, s.orders.URL()+procedure+"?"+q.Encode(), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := s.orders.HTTP1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: status %d: %s", procedure, resp.StatusCode, body)
		}
		return body
	}
	var products struct{ Products []struct{ ID string } }
	if err := json.Unmarshal(get(t, "/orders.v1.OrderService/ListProducts", "{}"), &products); err != nil || len(products.Products) < 3 {
		t.Errorf("ListProducts over GET: got %+v (err %v), want the catalog", products, err)
	}
	var got struct{ Order struct{ ID, Status string } }
	if err := json.Unmarshal(get(t, "/orders.v1.OrderService/GetOrder", `{"id":"`+o.GetId()+`"}`), &got); err != nil {
		t.Fatal(err)
	}
	if got.Order.ID != o.GetId() || got.Order.Status != "ORDER_STATUS_PAID" {
		t.Errorf("GetOrder over GET: got %+v, want %s PAID", got.Order, o.GetId())
	}

	// The generated client uses GET too when asked.
	c := s.client(connect.WithHTTPGet())
	list, err := c.ListOrders(context.Background(), connect.NewRequest(&ordersv1.ListOrdersRequest{}))
	if err != nil || len(list.Msg.GetOrders()) != 1 {
		t.Fatalf("ListOrders over GET: got %v (err %v), want 1 order", list, err)
	}
}

func TestIdempotentRetryChargesOnce(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	c := s.client(connect.WithGRPC())
	first := createOrder(t, c, visaOrder("retry-1"))
	again := createOrder(t, c, visaOrder("retry-1"))
	if diff := cmp.Diff(first, again, protocmp.Transform()); diff != "" {
		t.Errorf("retry returned another order (-first +retry):\n%s", diff)
	}
	// Concurrent duplicates of a new key make one order and one charge.
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]bool{}
	)
	for range 8 {
		wg.Go(func() {
			resp, err := c.CreateOrder(context.Background(), connect.NewRequest(visaOrder("retry-2")))
			if err != nil {
				t.Errorf("concurrent CreateOrder: %v", err)
				return
			}
			mu.Lock()
			ids[resp.Msg.GetOrder().GetId()] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Fatalf("got %d orders for one key, want 1", len(ids))
	}
	for id := range ids {
		if n := s.chargesFor(t, id); n != 1 {
			t.Errorf("got %d charges for %s, want 1", n, id)
		}
	}
	if n := s.chargesFor(t, first.GetId()); n != 1 {
		t.Errorf("got %d charges for %s, want 1", n, first.GetId())
	}

	// The same key with a different request is an error, never the old order.
	other := visaOrder("retry-1")
	other.Items[0].Quantity = 3
	_, err := c.CreateOrder(context.Background(), connect.NewRequest(other))
	assertError(t, err, connect.CodeAlreadyExists, ordersv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String())
}

func TestDeclinedCard(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	c := s.client(connect.WithProtoJSON())
	req := visaOrder("declined-1")
	req.PaymentToken = "tok_declined"
	for range 2 { // the retry gets the same answer
		_, err := c.CreateOrder(context.Background(), connect.NewRequest(req))
		info := assertError(t, err, connect.CodeFailedPrecondition, ordersv1.ErrorReason_CARD_DECLINED.String())
		orderID := info.GetMetadata()["order_id"]
		got, err := c.GetOrder(context.Background(), connect.NewRequest(&ordersv1.GetOrderRequest{Id: orderID}))
		if err != nil {
			t.Fatal(err)
		}
		if st := got.Msg.GetOrder().GetStatus(); st != ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED {
			t.Errorf("got status %v, want PAYMENT_DECLINED", st)
		}
		if n := s.chargesFor(t, orderID); n != 0 {
			t.Errorf("got %d charges for a declined order, want 0", n)
		}
		// A declined order cannot be cancelled: there is nothing to refund.
		_, err = c.CancelOrder(context.Background(), connect.NewRequest(&ordersv1.CancelOrderRequest{Id: orderID}))
		assertError(t, err, connect.CodeFailedPrecondition, "")
	}
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	c := s.client(connect.WithGRPCWeb())
	item := func(id string, q int32) *ordersv1.CartItem { return &ordersv1.CartItem{ProductId: id, Quantity: q} }
	tests := []struct {
		name   string
		req    *ordersv1.CreateOrderRequest
		fields []string
	}{
		{"empty", &ordersv1.CreateOrderRequest{}, []string{"items", "payment_token"}},
		{"unknown product", &ordersv1.CreateOrderRequest{Items: []*ordersv1.CartItem{item("nope", 1)}, PaymentToken: "tok_visa"}, []string{"items[0].product_id"}},
		{"bad quantities", &ordersv1.CreateOrderRequest{Items: []*ordersv1.CartItem{item("gopher-plush", 0), item("protobuf-mug", 101)}, PaymentToken: "tok_visa"}, []string{"items[0].quantity", "items[1].quantity"}},
		{"duplicate product", &ordersv1.CreateOrderRequest{Items: []*ordersv1.CartItem{item("gopher-plush", 1), item("gopher-plush", 1)}, PaymentToken: "tok_visa"}, []string{"items[1].product_id"}},
		{"bad key", &ordersv1.CreateOrderRequest{Items: []*ordersv1.CartItem{item("gopher-plush", 1)}, PaymentToken: "tok_visa", IdempotencyKey: "no spaces"}, []string{"idempotency_key"}},
		// Payments decides which tokens exist; orders passes its verdict on.
		{"unknown token", &ordersv1.CreateOrderRequest{Items: []*ordersv1.CartItem{item("gopher-plush", 1)}, PaymentToken: "tok_nope"}, []string{"payment_token"}},
	}
	t.Run("create", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				_, err := c.CreateOrder(context.Background(), connect.NewRequest(tt.req))
				assertError(t, err, connect.CodeInvalidArgument, "")
				if diff := cmp.Diff(tt.fields, violatedFields(t, err)); diff != "" {
					t.Errorf("field violations (-want +got):\n%s", diff)
				}
			})
		}
	}) // returns once every case above has finished
	// None of them may leave an order behind, not even the one that payments
	// rejected after orders had stored it: the list holds only a valid order
	// placed after them.
	valid := createOrder(t, c, visaOrder("valid-after-invalid"))
	list, err := c.ListOrders(context.Background(), connect.NewRequest(&ordersv1.ListOrdersRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, o := range list.Msg.GetOrders() {
		ids = append(ids, o.GetId())
	}
	if diff := cmp.Diff([]string{valid.GetId()}, ids); diff != "" {
		t.Errorf("orders stored after invalid requests (-want +got):\n%s", diff)
	}
	for _, rpcCall := range []func() error{
		func() error {
			_, err := c.GetOrder(context.Background(), connect.NewRequest(&ordersv1.GetOrderRequest{}))
			return err
		},
		func() error {
			_, err := c.ListOrders(context.Background(), connect.NewRequest(&ordersv1.ListOrdersRequest{PageSize: -1, PageToken: "garbage"}))
			return err
		},
	} {
		assertError(t, rpcCall(), connect.CodeInvalidArgument, "")
	}
}

func TestUnknownIDsAreNotFound(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	c := s.client()
	_, err := c.GetOrder(context.Background(), connect.NewRequest(&ordersv1.GetOrderRequest{Id: "ord_nope"}))
	assertError(t, err, connect.CodeNotFound, "")
	_, err = c.CancelOrder(context.Background(), connect.NewRequest(&ordersv1.CancelOrderRequest{Id: "ord_nope"}))
	assertError(t, err, connect.CodeNotFound, "")
}

func TestOversizedRequestIsResourceExhausted(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	body := `{"items":[],"paymentToken":"` + strings.Repeat("x", rpc.MaxMessageBytes) + `"}`
	resp, err := s.orders.HTTP1Client().Post(s.orders.URL()+"/orders.v1.OrderService/CreateOrder", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Code string }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Code != "resource_exhausted" {
		t.Fatalf("got status %d code %q (err %v), want resource_exhausted", resp.StatusCode, got.Code, err)
	}
}

func TestCancelRefunds(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	c := s.client(connect.WithGRPC())
	o := createOrder(t, c, visaOrder("cancel-1"))
	for range 2 { // cancelling again returns the cancelled order
		resp, err := c.CancelOrder(context.Background(), connect.NewRequest(&ordersv1.CancelOrderRequest{Id: o.GetId()}))
		if err != nil {
			t.Fatal(err)
		}
		got := resp.Msg.GetOrder()
		if got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Fatalf("got status %v, want CANCELLED", got.GetStatus())
		}
		if n := len(got.GetHops()); n != 4 {
			t.Errorf("got %d hops, want 4 (create and cancel, each client→orders→payments)", n)
		}
	}
	p, err := s.paymentsClient.GetPayment(context.Background(), connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: o.GetPaymentId()}))
	if err != nil {
		t.Fatal(err)
	}
	if st := p.Msg.GetPayment().GetStatus(); st != paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
		t.Errorf("got payment status %v, want REFUNDED", st)
	}
}

func TestListOrdersPagesNewestFirst(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	c := s.client(connect.WithProtoJSON())
	var want []string
	for i := range 5 {
		o := createOrder(t, c, visaOrder("page-"+string(rune('a'+i))))
		want = append([]string{o.GetId()}, want...)
	}
	var (
		got   []string
		token string
		pages int
	)
	for {
		resp, err := c.ListOrders(context.Background(), connect.NewRequest(&ordersv1.ListOrdersRequest{PageSize: 2, PageToken: token}))
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range resp.Msg.GetOrders() {
			got = append(got, o.GetId())
		}
		if token = resp.Msg.GetNextPageToken(); token == "" {
			break
		}
	}
	if diff := cmp.Diff(want, got); diff != "" || pages != 3 {
		t.Errorf("got %d pages, want 3; ids (-want +got):\n%s", pages, diff)
	}
}

func TestWatchOrdersSeesNewOrders(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	clients := []ordersv1connect.OrderServiceClient{
		// As a browser on HTTP/1.1 would call it.
		s.clientAs(s.token, s.orders.HTTP1Client(), connect.WithProtoJSON()),
		s.clientAs(s.token, s.orders.HTTP1Client(), connect.WithGRPCWeb()),
		s.client(connect.WithProtoJSON()),
		s.client(connect.WithGRPC()),
	}
	for _, c := range clients {
		ctx := ctxWithTimeout(t, 5*time.Second)
		stream, err := c.WatchOrders(ctx, connect.NewRequest(&ordersv1.WatchOrdersRequest{}))
		if err != nil {
			t.Fatal(err)
		}
		stream.ResponseHeader() // the server has subscribed once headers arrive
		o := createOrder(t, s.client(), &ordersv1.CreateOrderRequest{
			Items: []*ordersv1.CartItem{{ProductId: "h2c-hoodie", Quantity: 1}}, PaymentToken: "tok_visa",
		})
		deadline := time.After(2 * time.Second)
		var seen []ordersv1.OrderStatus
		for len(seen) == 0 || seen[len(seen)-1] != ordersv1.OrderStatus_ORDER_STATUS_PAID {
			got := make(chan bool, 1)
			go func() { got <- stream.Receive() }()
			select {
			case ok := <-got:
				if !ok {
					t.Fatalf("stream ended: %v", stream.Err())
				}
			case <-deadline:
				t.Fatalf("after 2s saw %v of order %s, want PAID", seen, o.GetId())
			}
			if stream.Msg().GetOrder().GetId() == o.GetId() {
				seen = append(seen, stream.Msg().GetOrder().GetStatus())
			}
		}
		if len(seen) != 1 {
			t.Errorf("got changes %v, want just PAID", seen)
		}
		stream.Close()
	}
}

// assertError checks err's code and, if reason is not empty, its ErrorInfo
// reason, and returns the ErrorInfo (nil if none).
func assertError(t *testing.T, err error, code connect.Code, reason string) *errdetails.ErrorInfo {
	t.Helper()
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("got code %v (err %v), want %v", got, err, code)
	}
	info := rpc.ErrorInfo(err)
	if reason != "" && info.GetReason() != reason {
		t.Fatalf("got reason %q, want %q", info.GetReason(), reason)
	}
	return info
}

func violatedFields(t *testing.T, err error) []string {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("got %v, want a connect error", err)
	}
	var fields []string
	for _, d := range cerr.Details() {
		v, err := d.Value()
		if err != nil {
			t.Fatal(err)
		}
		if br, ok := v.(*errdetails.BadRequest); ok {
			for _, fv := range br.GetFieldViolations() {
				fields = append(fields, fv.GetField())
			}
		}
	}
	return fields
}
