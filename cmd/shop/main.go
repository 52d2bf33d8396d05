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
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"

	"github.com/connectshop/connectshop/internal/cli"
	"github.com/connectshop/connectshop/internal/shop"
	"github.com/connectshop/connectshop/web"
)

func main() { cli.Main("shop", run) }

func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) (err error) {
	fs := cli.NewFlagSet(args[0], stderr)
	addr := fs.String("addr", "localhost:8080", "address of orders and the page; payments replicas take the next ports")
	replicas := fs.Int("replicas", 3, "number of payments replicas")
	data := fs.String("data", "data", "directory for the SQLite files (orders.db, payments.db)")
	origins := cli.Origins(fs, getenv)
	faults := cli.Faults(fs, "every call to payments-1 (the others stay healthy, for contrast)")
	limits := cli.OrderLimits(fs)
	obs := cli.TelemetryFlags(fs, getenv, "localhost:9090")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	lim, err := limits()
	if err != nil {
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
	tel, err := obs.Setup(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cli.Shutdown(tel)) }()
	logger := tel.Logger
	sessionKey, err := cli.SessionKey("", filepath.Join(*data, "orders.db"))
	if err != nil {
		return err
	}

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
	admin, err := obs.ListenAdmin()
	if err != nil {
		return err
	}
	return shop.Run(ctx, shop.Config{
		Logger:         logger,
		Orders:         ordersLis,
		Payments:       paymentLis,
		Dir:            *data,
		Page:           web.Handler(),
		SessionKey:     sessionKey,
		Faults:         *faults,
		AllowedOrigins: *origins,
		Limits:         lim,
		Telemetry:      tel,
		Admin:          admin,
		DrainDelay:     *obs.DrainDelay,
	})
}
