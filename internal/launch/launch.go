// Package launch wires the shop's services together: stores, services,
// servers and the orders-to-payments client. The commands in cmd/ parse flags
// and call it; cmd/shop runs everything in one process.
package launch

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/balance"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/payments"
)

// RecoveryInterval is how often orders settles orders left pending.
const RecoveryInterval = 30 * time.Second

// Payments serves one payments replica named name on lis, with its data in
// the SQLite file dbPath and faults injected, until ctx is done.
func Payments(ctx context.Context, logger *slog.Logger, lis net.Listener, name, dbPath string, faults payments.Faults, allowedOrigins []string) error {
	defer lis.Close() // in case setup fails before Serve owns it
	store, err := payments.OpenStore(ctx, dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := payments.NewService(logger, store, name)
	srv := rpc.NewHTTPServer(payments.NewServer(logger, svc, faults, allowedOrigins), logger)
	return rpc.Serve(ctx, srv, lis, logger)
}

// Orders serves the orders service and the page on lis, with its data in the
// SQLite file dbPath, until ctx is done. paymentsTarget names the payments
// replicas: "http://host:port,..." or "dns:///name:port" (see
// [balance.NewClient]); orders spreads its calls over them per request.
func Orders(ctx context.Context, logger *slog.Logger, lis net.Listener, dbPath, paymentsTarget string, page http.Handler, allowedOrigins []string) error {
	defer lis.Close() // in case setup fails before Serve owns it
	lb, err := balance.NewClient(paymentsTarget, balance.WithHealthCheck(paymentsv1connect.PaymentServiceName, balance.DefaultHealthInterval))
	if err != nil {
		return fmt.Errorf("-payments: %w", err)
	}
	defer lb.Close()
	store, err := orders.OpenStore(ctx, dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := orders.NewService(logger, store, orders.NewPaymentsClient(lb.Client.Client, lb.BaseURL()))
	srv := rpc.NewHTTPServer(orders.NewServer(logger, svc, page, allowedOrigins), logger)
	srv.RegisterOnShutdown(svc.Close)
	go svc.RunRecovery(ctx, RecoveryInterval)
	return rpc.Serve(ctx, srv, lis, logger)
}

// SplitList splits a comma-separated flag value, dropping empty entries.
func SplitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
