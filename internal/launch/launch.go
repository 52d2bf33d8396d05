// Package launch wires the shop's services together: stores, services,
// servers and the orders-to-payments client. The commands in cmd/ parse flags
// and call it; cmd/shop runs everything in one process.
package launch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
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
// balanceOpts, if any, apply after the defaults.
func Orders(ctx context.Context, logger *slog.Logger, lis net.Listener, dbPath, paymentsTarget string, page http.Handler, allowedOrigins []string, balanceOpts ...balance.Option) error {
	defer lis.Close() // in case setup fails before Serve owns it
	balanceOpts = append([]balance.Option{balance.WithHealthCheck(paymentsv1connect.PaymentServiceName, balance.DefaultHealthInterval)}, balanceOpts...)
	lb, err := balance.NewClient(paymentsTarget, balanceOpts...)
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

// Shop runs the whole shop in this process until ctx is done or a service
// fails: a payments replica on each of paymentLis (payments-1, payments-2...,
// sharing dataDir/payments.db; faults go to payments-1 only, the others stay
// healthy for contrast) and orders with page on ordersLis (dataDir/orders.db),
// spreading its calls over all replicas. The first service to stop stops the
// others.
func Shop(ctx context.Context, logger *slog.Logger, ordersLis net.Listener, paymentLis []net.Listener, dataDir string, page http.Handler, faults payments.Faults, allowedOrigins []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(paymentLis)+1)
	var targets []string
	for i, lis := range paymentLis {
		targets = append(targets, "http://"+lis.Addr().String())
		name := "payments-" + strconv.Itoa(i+1)
		f := faults
		if i > 0 {
			f = payments.Faults{}
		}
		go func() {
			errc <- Payments(ctx, logger.With("service", name), lis, name, filepath.Join(dataDir, "payments.db"), f, allowedOrigins)
		}()
	}
	go func() {
		errc <- Orders(ctx, logger.With("service", "orders"), ordersLis, filepath.Join(dataDir, "orders.db"), strings.Join(targets, ","), page, allowedOrigins)
	}()
	logger.Info("shop is open", "page", "http://"+ordersLis.Addr().String(), "payments", targets)
	var errs []error
	for range len(paymentLis) + 1 {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
		cancel()
	}
	return errors.Join(errs...)
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
