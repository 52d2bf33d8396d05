// Command orders runs the orders service and the demo page.
//
//	go run ./cmd/orders -addr localhost:8080 -db data/orders.db -payments http://localhost:8081,http://localhost:8082
//	go run ./cmd/orders -payments dns:///payments.shop.svc.cluster.local:8081 -service-key-file /secrets/service.key
//
// It proves itself to payments with the key in -service-key-file, and signs
// customer sessions with the key in -session-key-file.
package main

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"github.com/connectshop/connectshop/internal/cli"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/web"
)

func main() { cli.Main("orders", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) (err error) {
	fs := cli.NewFlagSet(args[0], stderr)
	addr := fs.String("addr", "localhost:8080", "address to listen on (Connect, gRPC, gRPC-Web, REST, the page; HTTP/1.1 and h2c)")
	db := fs.String("db", "data/orders.db", "SQLite database file, or a postgres:// URL (several orders instances may share one)")
	targets := fs.String("payments", "http://localhost:8081", "payments replicas: comma-separated http://host:port, or dns:///name:port for every address of name, re-resolved every 5s")
	origins := cli.Origins(fs, getenv)
	keyFile := cli.ServiceKeyFile(fs, getenv)
	sessionKeyFile := fs.String("session-key-file", getenv("SESSION_KEY_FILE"),
		"file with the key that signs customer sessions, base64; every orders instance needs the same one (env SESSION_KEY_FILE; default: session.key beside -db, made on first start)")
	recovery := fs.Duration("recovery-interval", 30*time.Second, "how often orders left half-way (PENDING, CANCELLING) are settled; each waits twice the payment timeout (10s) first")
	limits := cli.OrderLimits(fs)
	obs := cli.TelemetryFlags(fs, getenv, "")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	lim, err := limits()
	if err != nil {
		return err
	}
	tel, err := obs.Setup(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cli.Shutdown(tel)) }()
	scope, err := tel.Scope("orders", "")
	if err != nil {
		return err
	}
	logger := scope.Logger()
	serviceKey, err := cli.ReadServiceKey(*keyFile)
	if err != nil {
		return err
	}
	if serviceKey == nil {
		logger.Warn("no -service-key-file: calling payments without a service token, which only a payments running with -insecure accepts")
	}
	sessionKey, err := cli.SessionKey(*sessionKeyFile, *db)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer lis.Close() // in case setup fails before Serve owns it
	admin, err := obs.ListenAdmin()
	if err != nil {
		return err
	}
	if admin != nil {
		defer admin.Close()
	}
	store, err := cli.OpenOrders(ctx, *db)
	if err != nil {
		return err
	}
	srv, err := orders.New(orders.Config{
		Logger:           logger,
		Store:            store,
		Payments:         orders.PaymentsConfig{Target: *targets, ServiceKey: serviceKey},
		SessionKey:       sessionKey,
		RecoveryInterval: *recovery,
		Page:             web.Handler(),
		AllowedOrigins:   *origins,
		Limits:           lim,
		Telemetry:        scope,
		DrainDelay:       *obs.DrainDelay,
	})
	if err != nil {
		return err
	}
	serve := func(ctx context.Context) error { return srv.Serve(ctx, lis) }
	return errors.Join(cli.ServeAdmin(ctx, admin, tel, srv.Readiness(), logger, serve), srv.Close())
}
