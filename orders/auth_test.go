package orders_test

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/golang-jwt/jwt/v5"
)

// protocols are the ways a client may call orders.
func protocols(s *shop) []struct {
	name       string
	httpClient connect.HTTPClient
	opts       []connect.ClientOption
} {
	return []struct {
		name       string
		httpClient connect.HTTPClient
		opts       []connect.ClientOption
	}{
		{"connect json", s.orders.Client(), []connect.ClientOption{connect.WithProtoJSON()}},
		{"connect proto", s.orders.Client(), nil},
		{"grpc", s.orders.Client(), []connect.ClientOption{connect.WithGRPC()}},
		{"grpcweb over http1", s.orders.HTTP1Client(), []connect.ClientOption{connect.WithGRPCWeb()}},
	}
}

// callsOnOrder are the RPCs of a customer's own orders, each returning its
// error.
func callsOnOrder(c ordersv1connect.OrderServiceClient, orderID string) map[string]func(context.Context) error {
	return map[string]func(context.Context) error{
		"GetOrder": func(ctx context.Context) error {
			_, err := c.GetOrder(ctx, connect.NewRequest(&ordersv1.GetOrderRequest{Id: orderID}))
			return err
		},
		"CancelOrder": func(ctx context.Context) error {
			_, err := c.CancelOrder(ctx, connect.NewRequest(&ordersv1.CancelOrderRequest{Id: orderID}))
			return err
		},
	}
}

// Without a valid session every call on orders is UNAUTHENTICATED, with a
// message that says how to get one, on every protocol and REST route; the
// public RPCs answer anyone.
func TestCallsNeedASession(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	o := createOrder(t, s.client(), visaOrder("mine"))

	sessionKey, err := auth.ReadKeyFile(filepath.Join(s.dir, "session.key"))
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := auth.NewSessions(otherKey, time.Hour).Issue(o.GetCustomerId())
	if err != nil {
		t.Fatal(err)
	}
	expired := signSession(t, sessionKey, o.GetCustomerId(), time.Now().Add(-time.Hour))
	tokens := map[string]string{
		"no token":       "",
		"forged":         forged,
		"expired":        expired,
		"garbage":        "not-a-token",
		"tampered":       s.token[:len(s.token)-2] + "xx",
		"payments token": serviceToken(t, sessionKey),
	}
	for _, p := range protocols(s) {
		for name, token := range tokens {
			c := s.clientAs(token, p.httpClient, p.opts...)
			ctx := ctxWithTimeout(t, 10*time.Second)
			calls := callsOnOrder(c, o.GetId())
			calls["CreateOrder"] = func(ctx context.Context) error {
				_, err := c.CreateOrder(ctx, connect.NewRequest(visaOrder("mine")))
				return err
			}
			calls["ListOrders"] = func(ctx context.Context) error {
				_, err := c.ListOrders(ctx, connect.NewRequest(&ordersv1.ListOrdersRequest{}))
				return err
			}
			calls["WatchOrders"] = func(ctx context.Context) error {
				stream, err := c.WatchOrders(ctx, connect.NewRequest(&ordersv1.WatchOrdersRequest{}))
				if err != nil {
					return err
				}
				defer stream.Close()
				for stream.Receive() {
				}
				return stream.Err()
			}
			for rpc, call := range calls {
				err := call(ctx)
				if connect.CodeOf(err) != connect.CodeUnauthenticated || !strings.Contains(err.Error(), "POST /v1/sessions") {
					t.Errorf("%s, %s token: %s: got %v, want unauthenticated saying how to get a session", p.name, name, rpc, err)
				}
			}
		}
		// Public: the catalog, the replica stats and sessions themselves.
		anon := s.clientAs("", p.httpClient, p.opts...)
		if _, err := anon.ListProducts(context.Background(), connect.NewRequest(&ordersv1.ListProductsRequest{})); err != nil {
			t.Errorf("%s: ListProducts without a session: %v", p.name, err)
		}
		if _, err := anon.GetStats(context.Background(), connect.NewRequest(&ordersv1.GetStatsRequest{})); err != nil {
			t.Errorf("%s: GetStats without a session: %v", p.name, err)
		}
	}
	// REST: 401, and nothing is cancelled.
	status, _, body := restCall(t, s, "POST", "/v1/orders/"+o.GetId()+":cancel", "", http.Header{"Authorization": {"Bearer " + forged}})
	if status != http.StatusUnauthorized || !strings.Contains(string(body), "/v1/sessions") {
		t.Errorf("REST cancel with a forged token: got %d %s, want 401 saying how to get a session", status, body)
	}
	status, _, _ = restCall(t, s, "GET", "/v1/orders", "", http.Header{"Authorization": nil})
	if status != http.StatusUnauthorized {
		t.Errorf("REST list without a token: got %d, want 401", status)
	}
	if got := getOrder(t, s.client(), o.GetId()); got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID {
		t.Errorf("order after refused calls: %v, want PAID", got.GetStatus())
	}
}

// Customer B cannot read, list, watch or cancel customer A's orders, on any
// protocol: A's ids are NOT_FOUND for B, as unknown ids are. B's idempotency
// keys are B's own.
func TestCustomersSeeOnlyTheirOwnOrders(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	for _, p := range protocols(s) {
		t.Run(p.name, func(t *testing.T) {
			a := s.clientAs(s.newCustomer(t), p.httpClient, p.opts...)
			b := s.clientAs(s.newCustomer(t), p.httpClient, p.opts...)
			ctx := ctxWithTimeout(t, 10*time.Second)

			watch, err := b.WatchOrders(ctx, connect.NewRequest(&ordersv1.WatchOrdersRequest{}))
			if err != nil {
				t.Fatal(err)
			}
			defer watch.Close()
			watch.ResponseHeader() // subscribed

			ofA := createOrder(t, a, visaOrder("shared-key"))
			for rpc, call := range callsOnOrder(b, ofA.GetId()) {
				if err := call(ctx); connect.CodeOf(err) != connect.CodeNotFound {
					t.Errorf("B's %s of A's order: got %v, want not_found", rpc, err)
				}
			}
			list, err := b.ListOrders(ctx, connect.NewRequest(&ordersv1.ListOrdersRequest{}))
			if err != nil || len(list.Msg.GetOrders()) != 0 {
				t.Errorf("B's ListOrders: got %v (err %v), want none", list.Msg.GetOrders(), err)
			}
			// The same key and request from B: B's own new order.
			ofB := createOrder(t, b, visaOrder("shared-key"))
			if ofB.GetId() == ofA.GetId() || ofB.GetCustomerId() == ofA.GetCustomerId() {
				t.Errorf("B reusing A's key got order %s of %s, want a new order of its own", ofB.GetId(), ofB.GetCustomerId())
			}
			// B's feed has B's order first: A's never reached it.
			if !watch.Receive() {
				t.Fatalf("B's watch ended: %v", watch.Err())
			}
			if got := watch.Msg().GetOrder(); got.GetId() != ofB.GetId() {
				t.Errorf("B's watch got order %s first, want its own %s", got.GetId(), ofB.GetId())
			}
			if got := getOrder(t, a, ofA.GetId()); got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID {
				t.Errorf("A's order after B's cancel: %v, want PAID", got.GetStatus())
			}
		})
	}
	// REST: B's GET of A's order is 404.
	ofA := createOrder(t, s.client(), visaOrder("rest"))
	status, _, _ := restCall(t, s, "GET", "/v1/orders/"+ofA.GetId(), "", http.Header{"Authorization": {"Bearer " + s.newCustomer(t)}})
	if status != http.StatusNotFound {
		t.Errorf("REST GET of another customer's order: got %d, want 404", status)
	}
}

// The page's session is an HttpOnly, SameSite=Strict cookie. With it, the
// page's own calls work; a form on another site, or a cross-origin call,
// cannot change anything, whatever content type it sends; Connect GET serves
// only calls without side effects.
func TestPageSessionCookie(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	resp, err := s.orders.HTTP1Client().Get(s.orders.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "shop_session" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/" {
		t.Fatalf("page cookie: got %+v, want shop_session, HttpOnly, SameSite=Strict, Path=/", cookie)
	}
	page := s.clientAs("", s.orders.Client(), connect.WithProtoJSON(), connect.WithInterceptors(sameOriginCookie(s, cookie)))
	o := createOrder(t, page, visaOrder("page"))

	// A page reload keeps the customer.
	req, _ := http.NewRequest(http.MethodGet, s.orders.URL()+"/", nil)
	req.AddCookie(cookie)
	resp, err = s.orders.HTTP1Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if len(resp.Cookies()) != 0 {
		t.Errorf("reload with a fresh session cookie: got new cookies %v, want none", resp.Cookies())
	}

	cancelPath := "/v1/orders/" + o.GetId() + ":cancel"
	attacks := []struct {
		name, method, path, contentType, body string
		header                                http.Header
	}{
		{"form post to REST, Origin", "POST", cancelPath, "application/x-www-form-urlencoded", "a=b", http.Header{"Origin": {"https://evil.example"}}},
		{"form post to REST, Sec-Fetch-Site", "POST", cancelPath, "text/plain", "", http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"same-site, other port", "POST", cancelPath, "", "", http.Header{"Sec-Fetch-Site": {"same-site"}}},
		{"cross-origin Connect call", "POST", "/orders.v1.OrderService/CancelOrder", "application/json", `{"id":"` + o.GetId() + `"}`, http.Header{"Origin": {"https://evil.example"}}},
		{"Connect GET of a call with side effects", "GET", "/orders.v1.OrderService/CancelOrder?encoding=json&message=" + url.QueryEscape(`{"id":"`+o.GetId()+`"}`), "", "", http.Header{"Sec-Fetch-Site": {"cross-site"}}},
	}
	for _, a := range attacks {
		req, err := http.NewRequest(a.method, s.orders.URL()+a.path, strings.NewReader(a.body))
		if err != nil {
			t.Fatal(err)
		}
		req.AddCookie(cookie)
		if a.contentType != "" {
			req.Header.Set("Content-Type", a.contentType)
		}
		for k, v := range a.header {
			req.Header[k] = v
		}
		resp, err := s.orders.HTTP1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("%s: got %d, want it refused", a.name, resp.StatusCode)
		}
	}
	if got := getOrder(t, page, o.GetId()); got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID {
		t.Errorf("order after cross-origin attempts: %v, want PAID", got.GetStatus())
	}
	// The page itself may: a same-origin cancel with the cookie.
	if _, err := page.CancelOrder(context.Background(), connect.NewRequest(&ordersv1.CancelOrderRequest{Id: o.GetId()})); err != nil {
		t.Errorf("same-origin cancel with the page's cookie: %v", err)
	}
}

// sameOriginCookie sends cookie and the headers a browser adds to the page's
// own fetches.
func sameOriginCookie(s *shop, cookie *http.Cookie) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Cookie", cookie.String())
			req.Header().Set("Origin", strings.TrimSuffix(s.orders.URL(), "/"))
			req.Header().Set("Sec-Fetch-Site", "same-origin")
			return next(ctx, req)
		}
	}
}

func getOrder(t *testing.T, c ordersv1connect.OrderServiceClient, id string) *ordersv1.Order {
	t.Helper()
	resp, err := c.GetOrder(ctxWithTimeout(t, 10*time.Second), connect.NewRequest(&ordersv1.GetOrderRequest{Id: id}))
	if err != nil {
		t.Fatalf("GetOrder(%s): %v", id, err)
	}
	return resp.Msg.GetOrder()
}

// signSession signs a session token for customer with key that expires at
// expires, as orders would have.
func signSession(t *testing.T, key auth.Key, customer string, expires time.Time) string {
	t.Helper()
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Issuer:    "connectshop-orders",
		Audience:  jwt.ClaimStrings{"connectshop-orders"},
		Subject:   customer,
		IssuedAt:  jwt.NewNumericDate(expires.Add(-24 * time.Hour)),
		ExpiresAt: jwt.NewNumericDate(expires),
	}).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// serviceToken is a valid token of another kind, signed with the session
// key: a service token for payments.
func serviceToken(t *testing.T, key auth.Key) string {
	t.Helper()
	return strings.TrimPrefix(auth.ServiceAuthorization(key, auth.OrdersCaller, auth.PaymentsAudience)(), "Bearer ")
}

// CreateSession renews the session of a bearer token, but never turns the
// page's HttpOnly cookie into a token a script could read.
func TestCreateSessionRenewsBearerOnly(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	o := createOrder(t, s.client(), visaOrder("renew"))
	renew := func(header http.Header) *ordersv1.CreateSessionResponse {
		t.Helper()
		req := connect.NewRequest(&ordersv1.CreateSessionRequest{})
		for k, v := range header {
			req.Header()[k] = v
		}
		resp, err := ordersv1connect.NewOrderServiceClient(s.orders.Client(), s.orders.URL()).CreateSession(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.Msg
	}
	if got := renew(http.Header{"Authorization": {"Bearer " + s.token}}); got.GetCustomerId() != o.GetCustomerId() {
		t.Errorf("renewed with a bearer token: got customer %s, want %s", got.GetCustomerId(), o.GetCustomerId())
	}
	cookie := &http.Cookie{Name: "shop_session", Value: s.token}
	if got := renew(http.Header{"Cookie": {cookie.String()}}); got.GetCustomerId() == o.GetCustomerId() {
		t.Errorf("CreateSession with the page's cookie gave a token of the cookie's customer %s, want a new customer", got.GetCustomerId())
	}
}
