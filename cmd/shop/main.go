// Command shop runs the whole shop in one process: payments replicas, each on
// its own port and sharing one database, and an orders service that spreads
// its payment calls over all of them, with the page.
//
//	go run ./cmd/shop                 # orders on :8080, payments on :8081-8083
//	go run ./cmd/shop -replicas 5 -addr localhost:9090 -data /tmp/shop
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
	"strconv"
	"syscall"

	"github.com/connectshop/connectshop/internal/cli"
	"github.com/connectshop/connectshop/internal/shop"
	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/web"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "shop: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "localhost:8080", "address of orders and the page; payments replicas take the next ports")
	replicas := fs.Int("replicas", 3, "number of payments replicas")
	data := fs.String("data", "data", "directory for the SQLite files (orders.db, payments.db)")
	var origins cli.List
	origins.Set(getenv("CORS_ORIGINS"))
	fs.Var(&origins, "cors-origins", "comma-separated browser origins allowed to call (env CORS_ORIGINS)")
	var faults payments.Faults
	fs.DurationVar(&faults.Latency, "fault-latency", 0, "inject this latency into every call to payments-1 (the others stay healthy, for contrast)")
	fs.Float64Var(&faults.ErrorRate, "fault-error-rate", 0, "fail this share (0-1) of calls to payments-1 with UNAVAILABLE")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *replicas < 1 {
		return errors.New("-replicas must be at least 1")
	}
	host, portText, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("-addr: %w", err)
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return fmt.Errorf("-addr: port: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))

	// Listen on every port first, so a port in use fails before anything runs.
	ordersLis, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	var paymentLis []net.Listener
	for i := range *replicas {
		replicaPort := 0 // port 0 (tests): let the system choose every port
		if port != 0 {
			replicaPort = port + 1 + i
		}
		lis, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(replicaPort)))
		if err != nil {
			return err
		}
		paymentLis = append(paymentLis, lis)
	}
	return shop.Run(ctx, shop.Config{
		Logger:         logger,
		Orders:         ordersLis,
		Payments:       paymentLis,
		Dir:            *data,
		Page:           web.Handler(),
		Faults:         faults,
		AllowedOrigins: origins,
	})
}
