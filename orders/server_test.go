package orders_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/memhttp"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Both servers answer server reflection, which grpcurl and buf curl use to
// learn the schema, and list the health service beside their own.
func TestReflection(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	for name, srv := range map[string]*memhttp.Server{"orders.v1.OrderService": s.orders, "payments.v1.PaymentService": s.payments} {
		stream := grpcreflect.NewClient(srv.Client(), srv.URL()).NewStream(context.Background())
		names, err := stream.ListServices()
		if err != nil {
			t.Fatal(err)
		}
		stream.Close()
		for _, want := range []protoreflect.FullName{protoreflect.FullName(name), "grpc.health.v1.Health"} {
			if !slices.Contains(names, want) {
				t.Errorf("%s lists %v, want %s among them", name, names, want)
			}
		}
	}
}

// Health answers SERVING once the server is ready: orders as soon as its
// balancer has found a healthy payments replica, just after it starts.
func TestHealth(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	for _, check := range []struct {
		srv     *memhttp.Server
		service string
	}{{s.orders, "orders.v1.OrderService"}, {s.orders, ""}, {s.payments, "payments.v1.PaymentService"}} {
		waitFor(t, 5*time.Second, "health of "+check.service+" is not SERVING", func() bool {
			return healthStatus(t, check.srv, check.service) == "SERVING_STATUS_SERVING"
		})
	}
}

// healthStatus asks srv's gRPC health service, in Connect JSON, for the
// status of service.
func healthStatus(t *testing.T, srv *memhttp.Server, service string) string {
	t.Helper()
	resp, err := srv.HTTP1Client().Post(srv.URL()+"/grpc.health.v1.Health/Check", "application/json",
		strings.NewReader(`{"service":"`+service+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct{ Status string }
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	return got.Status
}

// A page on an allowed origin may call the API with the Connect and
// gRPC-Web headers; other origins get no CORS headers.
func TestCORS(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{allowedOrigins: []string{"https://shop.example"}})
	preflight := func(origin string) http.Header {
		req, _ := http.NewRequest(http.MethodOptions, s.orders.URL()+"/orders.v1.OrderService/CreateOrder", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "connect-protocol-version,content-type,x-grpc-web") // as browsers send it: sorted, lower case
		resp, err := s.orders.HTTP1Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.Header
	}
	h := preflight("https://shop.example")
	if got := h.Get("Access-Control-Allow-Origin"); got != "https://shop.example" {
		t.Errorf("allowed origin: got Access-Control-Allow-Origin %q", got)
	}
	if got := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(got, "connect-protocol-version") || !strings.Contains(got, "x-grpc-web") {
		t.Errorf("got Access-Control-Allow-Headers %q, want the Connect and gRPC-Web headers", got)
	}
	if got := preflight("https://evil.example").Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("other origin: got Access-Control-Allow-Origin %q, want none", got)
	}
	// Requests from the allowed origin expose the headers a client reads.
	c := s.client(connect.WithInterceptors(connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Origin", "https://shop.example")
			return next(ctx, req)
		}
	})))
	resp, err := c.ListProducts(context.Background(), connect.NewRequest(&ordersv1.ListProductsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Header().Get("Access-Control-Expose-Headers"); !strings.Contains(got, "Shop-Hop") {
		t.Errorf("got Access-Control-Expose-Headers %q, want Shop-Hop among them", got)
	}
}

func TestPageIsServed(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	resp, err := s.orders.HTTP1Client().Get(s.orders.URL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(body), "connectshop") {
		t.Errorf("GET /: got %d %q, want the HTML page", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
