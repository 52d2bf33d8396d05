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
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/bufbuild/httplb/resolver"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/orders"
	orderssqlite "github.com/connectshop/connectshop/orders/sqlite"
	"github.com/connectshop/connectshop/payments"
	paymentssqlite "github.com/connectshop/connectshop/payments/sqlite"
)

// Replica is one running payments replica.
type Replica struct {
	Name string
	Addr string // host:port
	srv  *payments.Server
}

// Kill stops the replica at once, dropping calls in flight, as a crashed
// process or a deleted pod would.
func (r *Replica) Kill() { r.srv.HTTPServer().Close() }

// Replicas is a set of payments replicas sharing one database file.
type Replicas struct {
	List  []*Replica
	Key   auth.Key              // the service key orders must prove itself with
	store *paymentssqlite.Store // for checks: every replica writes this file
}

// StartReplicas starts one payments replica per address (host:port; port 0
// picks a free one), named payments-1, payments-2..., sharing dir/payments.db.
func StartReplicas(ctx context.Context, dir string, addrs []string, faults payments.Faults) (*Replicas, error) {
	key, err := auth.NewKey()
	if err != nil {
		return nil, err
	}
	store, err := paymentssqlite.Open(ctx, filepath.Join(dir, "payments.db"))
	if err != nil {
		return nil, err
	}
	rs := &Replicas{Key: key, store: store}
	for i, addr := range addrs {
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			rs.Close()
			return nil, err
		}
		name := "payments-" + strconv.Itoa(i+1)
		srv, err := payments.New(payments.Config{Name: name, Store: store.Share(), ServiceKey: key, Faults: faults})
		if err != nil {
			lis.Close()
			rs.Close()
			return nil, err
		}
		go srv.HTTPServer().Serve(lis)
		rs.List = append(rs.List, &Replica{Name: name, Addr: lis.Addr().String(), srv: srv})
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
	for _, r := range rs.List {
		r.srv.HTTPServer().Close()
		r.srv.Close()
	}
	rs.store.Close()
}

// Orders is one running orders instance.
type Orders struct {
	URL  string
	srv  *orders.Server
	stop func()
}

// StartOrders starts orders, as cmd/orders does, on a free loopback port with
// its data in dir, calling payments at target with the service key of
// replicas (health checks here run every second). resolver, if not nil,
// replaces the one the target implies.
func StartOrders(ctx context.Context, dir string, replicas *Replicas, target string, resolver resolver.Resolver) (*Orders, error) {
	// Warnings only (a payments call that failed, with its code): go test shows
	// them for a failing package, and they are what explains a failure.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	sessionKey, err := auth.NewKey()
	if err != nil {
		lis.Close()
		return nil, err
	}
	store, err := orderssqlite.Open(ctx, filepath.Join(dir, "orders.db"))
	if err != nil {
		lis.Close()
		return nil, err
	}
	srv, err := orders.New(orders.Config{
		Logger:     logger,
		Store:      store,
		SessionKey: sessionKey,
		Payments: orders.PaymentsConfig{
			Target:         target,
			ServiceKey:     replicas.Key,
			HealthInterval: time.Second,
			Resolver:       resolver,
		},
	})
	if err != nil {
		lis.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	return &Orders{URL: "http://" + lis.Addr().String(), srv: srv, stop: func() {
		cancel()
		<-done
		srv.Close()
	}}, nil
}

// WaitForPayments waits until orders sees n healthy payments replicas, or
// ctx is done.
func (o *Orders) WaitForPayments(ctx context.Context, n int) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for o.srv.HealthyPayments() < n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("orders sees %d healthy payments replicas, want %d: %w", o.srv.HealthyPayments(), n, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Close stops orders.
func (o *Orders) Close() { o.stop() }

// Client returns a Connect client (binary) for orders over h2c.
func (o *Orders) Client() ordersv1connect.OrderServiceClient {
	return ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), o.URL)
}

// ErrNoHAProxy means the haproxy program is not installed.
var ErrNoHAProxy = errors.New("haproxy not found in PATH (Debian package haproxy)")
