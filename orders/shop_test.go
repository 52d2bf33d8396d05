package orders_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/memhttp"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/connectshop/connectshop/internal/telemetry"
	"github.com/connectshop/connectshop/orders"
	orderspostgres "github.com/connectshop/connectshop/orders/postgres"
	orderssqlite "github.com/connectshop/connectshop/orders/sqlite"
	"github.com/connectshop/connectshop/payments"
	paymentssqlite "github.com/connectshop/connectshop/payments/sqlite"
	"github.com/connectshop/connectshop/web"
)

// shop is orders and one payments replica, each assembled as in production
// and served in memory with the production HTTP server setup, talking over
// real HTTP/2.
type shop struct {
	orders         *memhttp.Server
	payments       *memhttp.Server
	ordersServer   *orders.Server
	paymentsServer *payments.Server
	paymentsStore  *paymentssqlite.Store                  // for checks, shared with the replica
	paymentsClient paymentsv1connect.PaymentServiceClient // for checks, over gRPC, as orders
	token          string                                 // session of the first customer
	dir            string                                 // data directory
	cfg            shopConfig
}

type shopConfig struct {
	dir            string                                // data directory; a new temporary one if empty
	ordersDB       string                                // a postgres:// URL for orders; "": SQLite in dir
	logger         *slog.Logger                          // of orders and payments; nil: discard
	limits         orders.Limits                         // of orders; zero: the defaults
	paymentTimeout time.Duration                         // default: production's
	paymentsFaults payments.Faults                       // of the replica
	wrapPayments   func(orders.Payments) orders.Payments // to inject failures
	allowedOrigins []string                              // CORS
	telemetry      *telemetry.Telemetry                  // scopes for orders and payments-1; nil: none
}

func newShop(t testing.TB, cfg shopConfig) *shop {
	t.Helper()
	ctx := context.Background()
	if cfg.dir == "" {
		cfg.dir = t.TempDir()
	}

	pstore, err := paymentssqlite.Open(ctx, filepath.Join(cfg.dir, "payments.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pstore.Close() })
	// Keys are kept in the data directory, as cmd/orders keeps its session
	// key: a shop restarted on it knows its customers' sessions.
	serviceKey, sessionKey := loadKey(t, cfg.dir, "service.key"), loadKey(t, cfg.dir, "session.key")
	replica, err := payments.New(payments.Config{Name: "payments-1", Logger: cfg.logger, Store: pstore.Share(), ServiceKey: serviceKey, Faults: cfg.paymentsFaults,
		Telemetry: scope(t, cfg.telemetry, "payments", "payments-1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Close() })
	psrv := memhttptest.Serve(t, replica.HTTPServer())

	osrv := startOrders(t, cfg, psrv, serviceKey, sessionKey)
	s := &shop{
		orders:         memhttptest.Serve(t, osrv.HTTPServer()),
		payments:       psrv,
		ordersServer:   osrv,
		paymentsServer: replica,
		paymentsStore:  pstore,
		paymentsClient: paymentsv1connect.NewPaymentServiceClient(psrv.Client(), psrv.URL(), connect.WithGRPC(),
			connect.WithInterceptors(auth.ServiceCredentials(serviceKey, auth.OrdersCaller, auth.PaymentsAudience))),
	}
	s.dir = cfg.dir
	s.cfg = cfg
	s.token = s.newCustomer(t)
	return s
}

// startOrders assembles an orders instance of the shop: on the SQLite file
// in cfg.dir, or the PostgreSQL database cfg.ordersDB.
func startOrders(t testing.TB, cfg shopConfig, psrv *memhttp.Server, serviceKey, sessionKey auth.Key) *orders.Server {
	t.Helper()
	var (
		ostore orders.Store
		err    error
	)
	if cfg.ordersDB != "" {
		ostore, err = orderspostgres.Open(context.Background(), cfg.ordersDB)
	} else {
		ostore, err = orderssqlite.Open(context.Background(), filepath.Join(cfg.dir, "orders.db"))
	}
	if err != nil {
		t.Fatal(err)
	}
	ocfg := orders.Config{
		Logger: cfg.logger,
		Store:  ostore,
		Payments: orders.PaymentsConfig{
			Target:     psrv.URL(),
			Timeout:    cfg.paymentTimeout,
			ServiceKey: serviceKey,
			Dial:       psrv.Listener().DialContext,
		},
		SessionKey:     sessionKey,
		Limits:         cfg.limits,
		Page:           web.Handler(),
		AllowedOrigins: cfg.allowedOrigins,
		Telemetry:      scope(t, cfg.telemetry, "orders", ""),
	}
	if cfg.wrapPayments != nil {
		orders.WrapPayments(&ocfg, cfg.wrapPayments)
	}
	osrv, err := orders.New(ocfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { osrv.Close() }) // after the server below has shut down
	return osrv
}

// anotherOrders starts a second orders instance of the shop, on the same
// database and payments, with the same keys, and returns its server.
func (s *shop) anotherOrders(t *testing.T) *memhttp.Server {
	t.Helper()
	osrv := startOrders(t, s.cfg, s.payments, loadKey(t, s.dir, "service.key"), loadKey(t, s.dir, "session.key"))
	return memhttptest.Serve(t, osrv.HTTPServer())
}

// scope returns a scope of tel for a server of service, or nil without
// telemetry. An instance name taken already (a second orders instance of
// the shop) is numbered: orders-2, orders-3...
func scope(t testing.TB, tel *telemetry.Telemetry, service, instance string) *telemetry.Scope {
	t.Helper()
	if tel == nil {
		return nil
	}
	s, err := tel.Scope(service, instance)
	for i := 2; err != nil && strings.Contains(err.Error(), "exists") && i < 100; i++ {
		s, err = tel.Scope(service, fmt.Sprintf("%s-%d", service, i))
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func loadKey(t testing.TB, dir, name string) auth.Key {
	t.Helper()
	key, err := auth.LoadOrCreateKeyFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// client returns an orders client of the shop's first customer over h2c with
// the given protocol options (none: Connect with the binary codec).
func (s *shop) client(opts ...connect.ClientOption) ordersv1connect.OrderServiceClient {
	return s.clientAs(s.token, s.orders.Client(), opts...)
}

// clientAs returns an orders client over httpClient that sends the session
// token with every call ("": none).
func (s *shop) clientAs(token string, httpClient connect.HTTPClient, opts ...connect.ClientOption) ordersv1connect.OrderServiceClient {
	if token != "" {
		opts = append(opts, connect.WithInterceptors(auth.Bearer(token)))
	}
	return ordersv1connect.NewOrderServiceClient(httpClient, s.orders.URL(), opts...)
}

// newCustomer starts a session with CreateSession, as any client does, and
// returns its token.
func (s *shop) newCustomer(t testing.TB) string {
	t.Helper()
	c := ordersv1connect.NewOrderServiceClient(s.orders.Client(), s.orders.URL())
	resp, err := c.CreateSession(ctxWithTimeout(t, 10*time.Second), connect.NewRequest(&ordersv1.CreateSessionRequest{}))
	if err != nil {
		t.Fatalf("CreateSession: %v", err)
	}
	return resp.Msg.GetToken()
}

// chargesFor counts the charges payments recorded for an order.
func (s *shop) chargesFor(t *testing.T, orderID string) int {
	t.Helper()
	counts, err := s.paymentsStore.ChargeCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return counts[orderID]
}

// paymentStatus returns the status of a payment, as payments has it.
func (s *shop) paymentStatus(t *testing.T, id string) paymentsv1.PaymentStatus {
	t.Helper()
	p, err := s.paymentsClient.GetPayment(context.Background(), connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: id}))
	if err != nil {
		t.Fatalf("GetPayment(%s): %v", id, err)
	}
	return p.Msg.GetPayment().GetStatus()
}

func visaOrder(key string) *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{
		Items: []*ordersv1.CartItem{
			{ProductId: "gopher-plush", Quantity: 2},
			{ProductId: "sticker-pack", Quantity: 1},
		},
		PaymentToken:   "tok_visa",
		IdempotencyKey: key,
	}
}

// visaTotal is what visaOrder costs: 2 × 19.99 + 4.99 USD.
const visaTotal = 2*1999 + 499

func ctxWithTimeout(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func createOrder(t *testing.T, c ordersv1connect.OrderServiceClient, req *ordersv1.CreateOrderRequest) *ordersv1.Order {
	t.Helper()
	resp, err := c.CreateOrder(ctxWithTimeout(t, 10*time.Second), connect.NewRequest(req))
	if err != nil {
		t.Fatalf("CreateOrder: %v", err)
	}
	return resp.Msg.GetOrder()
}
