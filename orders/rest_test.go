package orders_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// restCall sends a plain HTTP request, as any REST client would, with the
// session of the shop's first customer unless header says otherwise, and
// returns the status and body.
func restCall(t *testing.T, s *shop, method, path, body string, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.orders.URL()+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+s.token) // header may override it
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := s.orders.HTTP1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// decode reads a REST body into a generated message: REST uses the same JSON
// mapping (protojson) as Connect.
func decode[T any, M interface {
	*T
	proto.Message
}](t *testing.T, body []byte) M {
	t.Helper()
	m := M(new(T))
	if err := protojson.Unmarshal(body, m); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return m
}

// restError is the google.rpc.Status JSON of a REST error.
type restError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Details []struct {
		Type            string `json:"@type"`
		Reason          string `json:"reason"`
		FieldViolations []struct {
			Field string `json:"field"`
		} `json:"fieldViolations"`
	} `json:"details"`
}

func assertRESTError(t *testing.T, status int, body []byte, wantStatus int, wantCode connect.Code, wantDetail string) restError {
	t.Helper()
	var e restError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %s: %v", body, err)
	}
	if status != wantStatus || e.Code != int(wantCode) {
		t.Fatalf("got HTTP %d code %d (%s), want HTTP %d code %d (%v)", status, e.Code, body, wantStatus, wantCode, wantCode)
	}
	if wantDetail != "" && (len(e.Details) == 0 || !strings.HasSuffix(e.Details[0].Type, wantDetail)) {
		t.Fatalf("got details %s, want a %s", body, wantDetail)
	}
	return e
}

func TestRESTRoutes(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	key := http.Header{"Idempotency-Key": {"rest-key-1"}}
	const orderJSON = `{"items":[{"productId":"gopher-plush","quantity":2},{"productId":"sticker-pack","quantity":1}],"paymentToken":"tok_visa"}`

	status, header, body := restCall(t, s, "GET", "/v1/products", "", nil)
	if status != http.StatusOK || header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /v1/products: got %d %q", status, header.Get("Content-Type"))
	}
	if n := len(decode[ordersv1.ListProductsResponse](t, body).GetProducts()); n < 3 {
		t.Errorf("got %d products, want the catalog", n)
	}

	// POST /v1/orders with the key in the Idempotency-Key header.
	status, header, body = restCall(t, s, "POST", "/v1/orders", orderJSON, key)
	if status != http.StatusOK {
		t.Fatalf("POST /v1/orders: got %d %s", status, body)
	}
	created := decode[ordersv1.CreateOrderResponse](t, body).GetOrder()
	if created.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID || created.GetTotal().GetMinorUnits() != visaTotal {
		t.Fatalf("got %v, want a paid order of %d", created, visaTotal)
	}
	if hop := created.GetHops()[0]; hop.GetProtocol() != "rest" || hop.GetCodec() != "json" || hop.GetProcedure() != "/v1/orders" {
		t.Errorf("got first hop %v, want rest/json on /v1/orders", hop)
	}
	if hop, ok := rpc.ParseHop(header); !ok || hop.Protocol != "rest" {
		t.Errorf("got Shop-Hop %q, want protocol rest", header.Get(rpc.HopHeader))
	}
	// The same key again: the same order. Over gRPC, with the key in the field: the same order too.
	_, _, body = restCall(t, s, "POST", "/v1/orders", orderJSON, key)
	if again := decode[ordersv1.CreateOrderResponse](t, body).GetOrder(); again.GetId() != created.GetId() {
		t.Errorf("retry over REST: got order %s, want %s", again.GetId(), created.GetId())
	}
	overGRPC := createOrder(t, s.client(connect.WithGRPC()), visaOrder("rest-key-1"))
	if overGRPC.GetId() != created.GetId() {
		t.Errorf("same key over gRPC: got order %s, want %s", overGRPC.GetId(), created.GetId())
	}
	if n := s.chargesFor(t, created.GetId()); n != 1 {
		t.Errorf("got %d charges, want 1", n)
	}

	// GET /v1/orders/{id} is the object gRPC and Connect see.
	status, _, body = restCall(t, s, "GET", "/v1/orders/"+created.GetId(), "", nil)
	if status != http.StatusOK {
		t.Fatalf("GET /v1/orders/{id}: got %d %s", status, body)
	}
	viaREST := decode[ordersv1.GetOrderResponse](t, body).GetOrder()
	for _, c := range []ordersv1connect.OrderServiceClient{s.client(connect.WithGRPC()), s.client(connect.WithProtoJSON())} {
		got, err := c.GetOrder(context.Background(), connect.NewRequest(&ordersv1.GetOrderRequest{Id: created.GetId()}))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(got.Msg.GetOrder(), viaREST, protocmp.Transform()); diff != "" {
			t.Errorf("order over REST vs RPC (-rpc +rest):\n%s", diff)
		}
	}

	// GET /v1/orders?page_size=1: newest first, with a next page token.
	createOrder(t, s.client(), visaOrder("rest-key-2"))
	status, _, body = restCall(t, s, "GET", "/v1/orders?page_size=1", "", nil)
	page := decode[ordersv1.ListOrdersResponse](t, body)
	if status != http.StatusOK || len(page.GetOrders()) != 1 || page.GetNextPageToken() == "" {
		t.Fatalf("GET /v1/orders?page_size=1: got %d %s", status, body)
	}
	_, _, body = restCall(t, s, "GET", "/v1/orders?page_size=1&page_token="+page.GetNextPageToken(), "", nil)
	if got := decode[ordersv1.ListOrdersResponse](t, body).GetOrders(); len(got) != 1 || got[0].GetId() != created.GetId() {
		t.Errorf("second page: got %s, want order %s", body, created.GetId())
	}

	// POST /v1/orders/{id}:cancel refunds.
	status, _, body = restCall(t, s, "POST", "/v1/orders/"+created.GetId()+":cancel", "", nil)
	if got := decode[ordersv1.CancelOrderResponse](t, body).GetOrder(); status != http.StatusOK || got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
		t.Errorf("cancel: got %d %s", status, body)
	}

	status, _, body = restCall(t, s, "GET", "/v1/stats", "", nil)
	if stats := decode[ordersv1.GetStatsResponse](t, body); status != http.StatusOK || stats.GetTotalCalls() != 3 {
		t.Errorf("GET /v1/stats: got %d %s, want 3 calls (2 charges, 1 refund)", status, body)
	}
}

func TestRESTErrors(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	down := newShop(t, shopConfig{})
	down.payments.Close()

	status, _, body := restCall(t, s, "POST", "/v1/orders", `{"items":[{"productId":"nope","quantity":0}]}`, nil)
	e := assertRESTError(t, status, body, http.StatusBadRequest, connect.CodeInvalidArgument, "google.rpc.BadRequest")
	var fields []string
	for _, fv := range e.Details[0].FieldViolations {
		fields = append(fields, fv.Field)
	}
	if diff := cmp.Diff([]string{"payment_token", "items[0].product_id", "items[0].quantity"}, fields); diff != "" {
		t.Errorf("field violations (-want +got):\n%s", diff)
	}

	status, _, body = restCall(t, s, "GET", "/v1/orders/ord_nope", "", nil)
	assertRESTError(t, status, body, http.StatusNotFound, connect.CodeNotFound, "")

	status, _, body = restCall(t, s, "POST", "/v1/orders", `{"items":[{"productId":"h2c-hoodie","quantity":1}],"paymentToken":"tok_declined"}`, nil)
	e = assertRESTError(t, status, body, http.StatusBadRequest, connect.CodeFailedPrecondition, "google.rpc.ErrorInfo")
	if want := ordersv1.ErrorReason_CARD_DECLINED.String(); e.Details[0].Reason != want {
		t.Errorf("got reason %q, want %s", e.Details[0].Reason, want)
	}

	order := `{"items":[{"productId":"h2c-hoodie","quantity":1}],"paymentToken":"tok_visa"}`
	restCall(t, s, "POST", "/v1/orders", order, http.Header{"Idempotency-Key": {"k-409"}})
	status, _, body = restCall(t, s, "POST", "/v1/orders", strings.Replace(order, `"quantity":1`, `"quantity":2`, 1), http.Header{"Idempotency-Key": {"k-409"}})
	assertRESTError(t, status, body, http.StatusConflict, connect.CodeAlreadyExists, "google.rpc.ErrorInfo")

	status, _, body = restCall(t, s, "POST", "/v1/orders", `{"items":[{"productId":"h2c-hoodie","quantity":1}],"paymentToken":"tok_visa","idempotencyKey":"a"}`, http.Header{"Idempotency-Key": {"b"}})
	assertRESTError(t, status, body, http.StatusBadRequest, connect.CodeInvalidArgument, "google.rpc.BadRequest")

	status, _, body = restCall(t, down, "POST", "/v1/orders", order, nil)
	assertRESTError(t, status, body, http.StatusServiceUnavailable, connect.CodeUnavailable, "google.rpc.ErrorInfo")

	status, _, body = restCall(t, s, "POST", "/v1/orders", `{"paymentToken":"`+strings.Repeat("x", rpc.MaxMessageBytes)+`"}`, nil)
	assertRESTError(t, status, body, http.StatusTooManyRequests, connect.CodeResourceExhausted, "")

	// Query parameter names that are not field paths (vanguard v0.4.0
	// panicked on "items."), and one through a list.
	for _, query := range []string{"items.", "items.=x", "items..product_id=x", ".x=1", "items.product_id=x"} {
		status, _, body = restCall(t, s, "POST", "/v1/orders?"+query, order, nil)
		assertRESTError(t, status, body, http.StatusBadRequest, connect.CodeInvalidArgument, "")
	}
}
