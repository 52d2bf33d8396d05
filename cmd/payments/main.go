// Command payments runs one payments replica.
//
//	go run ./cmd/payments -addr localhost:8081 -name payments-1 -db data/payments.db -service-key-file service.key
//
// Several replicas may share one database file. It serves only callers that
// prove they hold the key in -service-key-file: orders, given the same file.
package main

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/connectshop/connectshop/internal/cli"
	"github.com/connectshop/connectshop/payments"
)

func main() { cli.Main("payments", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) (err error) {
	fs := cli.NewFlagSet(args[0], stderr)
	addr := fs.String("addr", "localhost:8081", "address to listen on (Connect, gRPC, gRPC-Web; HTTP/1.1 and h2c)")
	name := fs.String("name", "payments-1", "replica name, recorded on every payment it charges")
	db := fs.String("db", "data/payments.db", "SQLite database file, or a postgres:// URL; replicas may share one")
	origins := cli.Origins(fs, getenv)
	keyFile := cli.ServiceKeyFile(fs, getenv)
	insecure := fs.Bool("insecure", false, "serve payments without -service-key-file: anyone who reaches the port can charge and refund (demos only)")
	faults := cli.Faults(fs, "every payment call")
	maxConns := cli.MaxConns(fs)
	obs := cli.TelemetryFlags(fs, getenv, "")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cli.CheckMaxConns(*maxConns); err != nil {
		return err
	}
	key, err := cli.ReadServiceKey(*keyFile)
	if err != nil {
		return err
	}
	if key == nil && !*insecure {
		return errors.New("-service-key-file is required: it holds the key orders proves itself with, so that nobody else can charge or refund (pass -insecure to serve any caller)")
	}
	tel, err := obs.Setup(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cli.Shutdown(tel)) }()
	scope, err := tel.Scope("payments", *name)
	if err != nil {
		return err
	}
	logger := scope.Logger()
	if *insecure {
		logger.Warn("running with -insecure: any caller can charge and refund")
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
	store, err := cli.OpenPayments(ctx, *db)
	if err != nil {
		return err
	}
	srv, err := payments.New(payments.Config{
		Name:           *name,
		Logger:         logger,
		Store:          store,
		ServiceKey:     key,
		Insecure:       *insecure,
		Faults:         *faults,
		AllowedOrigins: *origins,
		MaxConns:       *maxConns,
		Telemetry:      scope,
		DrainDelay:     *obs.DrainDelay,
	})
	if err != nil {
		return err
	}
	serve := func(ctx context.Context) error { return srv.Serve(ctx, lis) }
	return errors.Join(cli.ServeAdmin(ctx, admin, tel, srv.Readiness(), logger, serve), srv.Close())
}
