package orders_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/memhttp"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/web"
)

// shop is orders and one payments replica, each on its own in-memory server
// with the production HTTP server setup, talking over real HTTP/2.
type shop struct {
	orders         *memhttp.Server
	payments       *memhttp.Server
	ordersSvc      *orders.Service
	ordersStore    *orders.Store
	paymentsStore  *payments.Store
	paymentsClient paymentsv1connect.PaymentServiceClient // for checks, over gRPC
}

type shopConfig struct {
	dir            string // data directory; a new temporary one if empty
	opts           []orders.Option
	wrapPayment    func(orders.Payments) orders.Payments // to inject failures
	allowedOrigins []string                              // CORS
}

func newShop(t *testing.T, cfg shopConfig) *shop {
	t.Helper()
	ctx := context.Background()
	if cfg.dir == "" {
		cfg.dir = t.TempDir()
	}
	logger := slog.New(slog.DiscardHandler)

	pstore, err := payments.OpenStore(ctx, filepath.Join(cfg.dir, "payments.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pstore.Close() })
	psvc := payments.NewService(logger, pstore, "payments-1")
	psrv := memhttptest.Serve(t, rpc.NewHTTPServer(payments.NewServer(logger, psvc, payments.Faults{}, nil), logger))

	ostore, err := orders.OpenStore(ctx, filepath.Join(cfg.dir, "orders.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ostore.Close() })
	var pay orders.Payments = orders.NewPaymentsClient(psrv.Client(), psrv.URL())
	if cfg.wrapPayment != nil {
		pay = cfg.wrapPayment(pay)
	}
	osvc := orders.NewService(logger, ostore, pay, cfg.opts...)
	osrvConfig := rpc.NewHTTPServer(orders.NewServer(logger, osvc, web.Handler(), cfg.allowedOrigins), logger)
	osrvConfig.RegisterOnShutdown(osvc.Close)
	osrv := memhttptest.Serve(t, osrvConfig)

	return &shop{
		orders:         osrv,
		payments:       psrv,
		ordersSvc:      osvc,
		ordersStore:    ostore,
		paymentsStore:  pstore,
		paymentsClient: paymentsv1connect.NewPaymentServiceClient(psrv.Client(), psrv.URL(), connect.WithGRPC()),
	}
}

// client returns an orders client over h2c with the given protocol options
// (none: Connect with the binary codec).
func (s *shop) client(opts ...connect.ClientOption) ordersv1connect.OrderServiceClient {
	return ordersv1connect.NewOrderServiceClient(s.orders.Client(), s.orders.URL(), opts...)
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

func ctxWithTimeout(t *testing.T, d time.Duration) context.Context {
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
