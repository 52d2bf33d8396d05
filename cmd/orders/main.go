// Command orders runs the orders service and the demo page.
//
//	go run ./cmd/orders -addr localhost:8080 -db data/orders.db -payments http://localhost:8081,http://localhost:8082
//	go run ./cmd/orders -payments dns:///payments.shop.svc.cluster.local:8081
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
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/orders/sqlite"
	"github.com/connectshop/connectshop/web"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "orders: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "localhost:8080", "address to listen on (Connect, gRPC, gRPC-Web, the page; HTTP/1.1 and h2c)")
	db := fs.String("db", "data/orders.db", "SQLite database file")
	targets := fs.String("payments", "http://localhost:8081", "payments replicas: comma-separated http://host:port, or dns:///name:port for every address of name, re-resolved every 5s")
	var origins cli.List
	origins.Set(getenv("CORS_ORIGINS"))
	fs.Var(&origins, "cors-origins", "comma-separated browser origins allowed to call (env CORS_ORIGINS)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil)).With("service", "orders")
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer lis.Close() // in case setup fails before Serve owns it
	store, err := sqlite.Open(ctx, *db)
	if err != nil {
		return err
	}
	srv, err := orders.New(orders.Config{
		Logger:         logger,
		Store:          store,
		Payments:       orders.PaymentsConfig{Target: *targets},
		Page:           web.Handler(),
		AllowedOrigins: origins,
	})
	if err != nil {
		return err
	}
	return errors.Join(srv.Serve(ctx, lis), srv.Close())
}
