// Command payments runs one payments replica.
//
//	go run ./cmd/payments -addr localhost:8081 -name payments-1 -db data/payments.db
//
// Several replicas may share one database file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/connectshop/connectshop/internal/cli"
	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/payments/sqlite"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "payments: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "localhost:8081", "address to listen on (Connect, gRPC, gRPC-Web; HTTP/1.1 and h2c)")
	name := fs.String("name", "payments-1", "replica name, recorded on every payment it charges")
	db := fs.String("db", "data/payments.db", "SQLite database file; replicas may share one")
	var origins cli.List
	origins.Set(getenv("CORS_ORIGINS"))
	fs.Var(&origins, "cors-origins", "comma-separated browser origins allowed to call (env CORS_ORIGINS)")
	var faults payments.Faults
	fs.DurationVar(&faults.Latency, "fault-latency", 0, "inject this latency into every payment call (demos, tests)")
	fs.Float64Var(&faults.ErrorRate, "fault-error-rate", 0, "fail this share (0-1) of payment calls with UNAVAILABLE (demos, tests)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil)).With("service", *name)
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer lis.Close() // in case setup fails before Serve owns it
	store, err := sqlite.Open(ctx, *db)
	if err != nil {
		return err
	}
	srv, err := payments.New(payments.Config{Name: *name, Logger: logger, Store: store, Faults: faults, AllowedOrigins: origins})
	if err != nil {
		return err
	}
	return errors.Join(srv.Serve(ctx, lis), srv.Close())
}
