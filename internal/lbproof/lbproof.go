// Package lbproof reproduces the HTTP/2 load-balancing trap and its fixes
// with real processes on loopback: payments replicas, HAProxy in TCP (L4) and
// HTTP (L7) mode, and orders balancing per request itself. cmd/lbproof prints
// the comparison; this package's tests assert it.
package lbproof

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/balance"
	"github.com/connectshop/connectshop/internal/launch"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/web"
)

// Replica is one running payments replica.
type Replica struct {
	Name string
	Addr string // host:port
	srv  *http.Server
}

// Kill stops the replica at once, dropping calls in flight, as a crashed
// process or a deleted pod would.
func (r *Replica) Kill() { r.srv.Close() }

// Replicas is a set of payments replicas sharing one database file.
type Replicas struct {
	List  []*Replica
	store *payments.Store // for checks: every replica writes this file
	stops []func()
}

// StartReplicas starts one payments replica per address (host:port; port 0
// picks a free one), named payments-1, payments-2..., sharing dir/payments.db.
func StartReplicas(ctx context.Context, dir string, addrs []string, faults payments.Faults) (*Replicas, error) {
	logger := slog.New(slog.DiscardHandler)
	path := filepath.Join(dir, "payments.db")
	store, err := payments.OpenStore(ctx, path)
	if err != nil {
		return nil, err
	}
	rs := &Replicas{store: store, stops: []func(){func() { store.Close() }}}
	for i, addr := range addrs {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			rs.Close()
			return nil, err
		}
		// Each replica opens the file itself, as separate processes would.
		rstore, err := payments.OpenStore(ctx, path)
		if err != nil {
			lis.Close()
			rs.Close()
			return nil, err
		}
		name := "payments-" + strconv.Itoa(i+1)
		svc := payments.NewService(logger, rstore, name)
		srv := rpc.NewHTTPServer(payments.NewServer(logger, svc, faults, nil), logger)
		go srv.Serve(lis)
		rs.List = append(rs.List, &Replica{Name: name, Addr: lis.Addr().String(), srv: srv})
		rs.stops = append(rs.stops, func() { srv.Close(); rstore.Close() })
	}
	return rs, nil
}

// Targets returns the replicas as a -payments flag value.
func (rs *Replicas) Targets() string {
	var t []string
	for _, r := range rs.List {
		t = append(t, "http://"+r.Addr)
	}
	return strings.Join(t, ",")
}

// Addrs returns the replicas' host:port addresses.
func (rs *Replicas) Addrs() []string {
	var a []string
	for _, r := range rs.List {
		a = append(a, r.Addr)
	}
	return a
}

// DoubleCharges returns the references (order ids) that payments charged
// more than once, and how many references were charged at all, read from the
// database the replicas share.
func (rs *Replicas) DoubleCharges(ctx context.Context) (twice []string, charged int, err error) {
	counts, err := rs.store.ChargeCounts(ctx)
	if err != nil {
		return nil, 0, err
	}
	for ref, n := range counts {
		if n > 1 {
			twice = append(twice, ref)
		}
	}
	return twice, len(counts), nil
}

// Close stops every replica.
func (rs *Replicas) Close() {
	for _, stop := range slices.Backward(rs.stops) {
		stop()
	}
}

// Orders is one running orders instance.
type Orders struct {
	URL  string
	stop func()
}

// StartOrders starts orders, wired as cmd/orders wires it, on a free
// loopback port with its data in dir, calling payments at target; opts
// change its balancer (health checks here run every second). It returns once
// orders answers.
func StartOrders(ctx context.Context, dir, target string, opts ...balance.Option) (*Orders, error) {
	// Warnings only (a payments call that failed, with its code): go test shows
	// them for a failing package, and they are what explains a failure.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	opts = append([]balance.Option{balance.WithHealthCheck(paymentsv1connect.PaymentServiceName, time.Second)}, opts...)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- launch.Orders(ctx, logger, lis, filepath.Join(dir, "orders.db"), target, web.Handler(), nil, opts...)
	}()
	o := &Orders{URL: "http://" + lis.Addr().String(), stop: func() { cancel(); <-done }}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		select {
		case err := <-done:
			cancel()
			return nil, fmt.Errorf("start orders: %w", err)
		default:
		}
		if resp, err := http.Get(o.URL + "/"); err == nil {
			resp.Body.Close()
			return o, nil
		}
		if time.Now().After(deadline) {
			o.Close()
			return nil, errors.New("start orders: no answer within 5s")
		}
	}
}

// Close stops orders.
func (o *Orders) Close() { o.stop() }

// Client returns a Connect client (binary) for orders over h2c.
func (o *Orders) Client() ordersv1connect.OrderServiceClient {
	return ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), o.URL)
}

// ErrNoHAProxy means the haproxy program is not installed.
var ErrNoHAProxy = errors.New("haproxy not found in PATH (Debian package haproxy)")
