// Package shop runs the whole shop in one process: payments replicas, each on
// its own listener and sharing one database, and orders, which spreads its
// payment calls over all of them, with the page. cmd/shop, the page's browser
// test and the flow benchmark run it.
package shop

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/cli"
	"github.com/connectshop/connectshop/internal/telemetry"
	"github.com/connectshop/connectshop/orders"
	orderssqlite "github.com/connectshop/connectshop/orders/sqlite"
	"github.com/connectshop/connectshop/payments"
	paymentssqlite "github.com/connectshop/connectshop/payments/sqlite"
)

// Config is a shop to run. Orders and at least one Payments listener are
// required.
type Config struct {
	// Logger gets every server's lines, each with a "service" attribute.
	Logger *slog.Logger
	// Orders is where orders and the page listen.
	Orders net.Listener
	// Payments are where the replicas listen: payments-1, payments-2...
	Payments []net.Listener
	// Dir holds the SQLite files: orders.db, and payments.db, which every
	// replica shares.
	Dir string
	// Page is served by orders at "/".
	Page http.Handler
	// SessionKey signs customer sessions.
	SessionKey auth.Key
	// Faults are injected into payments-1 only; the others stay healthy, for
	// contrast.
	Faults payments.Faults
	// AllowedOrigins are the browser origins allowed to call across origins.
	AllowedOrigins []string
	// Limits are orders' limits; their MaxConns caps every replica's
	// connections too. A zero field is its default.
	Limits orders.Limits
	// Telemetry traces and measures every server, each in a scope of its
	// own; nil records nothing.
	Telemetry *telemetry.Telemetry
	// Admin, if not nil, serves the admin endpoints of the whole shop:
	// metrics of every server, ready when every server is.
	Admin net.Listener
	// DrainDelay: see [orders.Config.DrainDelay].
	DrainDelay time.Duration
}

// server is what the shop runs of orders and payments.
type server interface {
	Serve(context.Context, net.Listener) error
	Readiness() *telemetry.Readiness
	Close() error
}

// Run runs the shop until ctx is done or a server fails; the first server to
// stop stops the others. It closes every listener.
func Run(ctx context.Context, cfg Config) error {
	servers, listeners, err := build(ctx, cfg)
	if err != nil {
		for _, lis := range append([]net.Listener{cfg.Orders, cfg.Admin}, cfg.Payments...) {
			if lis != nil {
				lis.Close()
			}
		}
		return err
	}
	attrs := []any{"page", "http://" + cfg.Orders.Addr().String(), "payments", targets(cfg.Payments)}
	if cfg.Admin != nil {
		attrs = append(attrs, "admin", "http://"+cfg.Admin.Addr().String()+"/metrics")
	}
	cfg.Logger.Info("shop is open", attrs...)

	// The shop is ready when every server is.
	var checks []telemetry.Check
	for i, srv := range servers {
		name := "orders" // servers are orders, then the replicas
		if i > 0 {
			name = "payments-" + strconv.Itoa(i)
		}
		checks = append(checks, telemetry.Check{Name: name, Func: srv.Readiness().Check})
	}
	serve := func(ctx context.Context) error {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		errc := make(chan error, len(servers))
		for i, srv := range servers {
			go func() { errc <- srv.Serve(ctx, listeners[i]) }()
		}
		var errs []error
		for range servers {
			errs = append(errs, <-errc)
			cancel()
		}
		// Orders first: it calls payments until it is closed.
		for _, srv := range servers {
			errs = append(errs, srv.Close())
		}
		return errors.Join(errs...)
	}
	if cfg.Admin == nil {
		return serve(ctx)
	}
	return cli.ServeAdmin(ctx, cfg.Admin, cfg.Telemetry, telemetry.NewReadiness(checks...), cfg.Logger, serve)
}

// build assembles orders and the replicas, and returns them with their
// listeners, orders first.
func build(ctx context.Context, cfg Config) (servers []server, listeners []net.Listener, err error) {
	if cfg.Orders == nil || len(cfg.Payments) == 0 {
		return nil, nil, errors.New("shop: want an orders listener and at least one payments listener")
	}
	defer func() {
		if err != nil {
			for _, srv := range slices.Backward(servers) {
				srv.Close()
			}
			servers = nil
		}
	}()
	// A fresh service key for each run: it never leaves this process, and
	// only this run's orders can call this run's replicas.
	serviceKey, err := auth.NewKey()
	if err != nil {
		return nil, nil, err
	}
	paymentsStore, err := paymentssqlite.Open(ctx, filepath.Join(cfg.Dir, "payments.db"))
	if err != nil {
		return nil, nil, err
	}
	scope := func(service, instance string) (*telemetry.Scope, error) {
		if cfg.Telemetry == nil {
			return nil, nil
		}
		return cfg.Telemetry.Scope(service, instance)
	}
	var replicas []server
	for i := range cfg.Payments {
		name := "payments-" + strconv.Itoa(i+1)
		store := paymentsStore // the first replica takes the handle, the others share its file
		if i > 0 {
			store = paymentsStore.Share()
		}
		faults := cfg.Faults
		if i > 0 {
			faults = payments.Faults{}
		}
		tel, err := scope("payments", name)
		if err != nil {
			return replicas, nil, errors.Join(err, store.Close())
		}
		srv, err := payments.New(payments.Config{
			Telemetry:      tel,
			DrainDelay:     cfg.DrainDelay,
			Name:           name,
			Logger:         cfg.Logger.With("service", name),
			Store:          store,
			ServiceKey:     serviceKey,
			Faults:         faults,
			AllowedOrigins: cfg.AllowedOrigins,
			MaxConns:       cfg.Limits.MaxConns,
		})
		if err != nil {
			return replicas, nil, err
		}
		replicas = append(replicas, srv)
	}
	ordersStore, err := orderssqlite.Open(ctx, filepath.Join(cfg.Dir, "orders.db"))
	if err != nil {
		return replicas, nil, err
	}
	tel, err := scope("orders", "")
	if err != nil {
		return replicas, nil, errors.Join(err, ordersStore.Close())
	}
	ordersSrv, err := orders.New(orders.Config{
		Telemetry:      tel,
		DrainDelay:     cfg.DrainDelay,
		Logger:         cfg.Logger.With("service", "orders"),
		Store:          ordersStore,
		Payments:       orders.PaymentsConfig{Target: targets(cfg.Payments), ServiceKey: serviceKey},
		SessionKey:     cfg.SessionKey,
		Page:           cfg.Page,
		AllowedOrigins: cfg.AllowedOrigins,
		Limits:         cfg.Limits,
	})
	if err != nil {
		return replicas, nil, err
	}
	return append([]server{ordersSrv}, replicas...), append([]net.Listener{cfg.Orders}, cfg.Payments...), nil
}

// targets returns the replicas' listeners as a payments target.
func targets(lis []net.Listener) string {
	t := make([]string, len(lis))
	for i, l := range lis {
		t[i] = "http://" + l.Addr().String()
	}
	return strings.Join(t, ",")
}
