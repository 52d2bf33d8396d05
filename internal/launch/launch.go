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
	"net/url"
	"strings"
	"time"

	"github.com/bufbuild/httplb"
	"github.com/bufbuild/httplb/resolver"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/payments"
)

// RecoveryInterval is how often orders settles orders left pending.
const RecoveryInterval = 30 * time.Second

// Payments serves one payments replica named name on lis, with its data in
// the SQLite file dbPath, until ctx is done.
func Payments(ctx context.Context, logger *slog.Logger, lis net.Listener, name, dbPath string, allowedOrigins []string) error {
	defer lis.Close() // in case setup fails before Serve owns it
	store, err := payments.OpenStore(ctx, dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := payments.NewService(logger, store, name)
	srv := rpc.NewHTTPServer(payments.NewServer(logger, svc, allowedOrigins), logger)
	return rpc.Serve(ctx, srv, lis, logger)
}

// Orders serves the orders service and the page on lis, with its data in the
// SQLite file dbPath and payments at the given targets, until ctx is done.
func Orders(ctx context.Context, logger *slog.Logger, lis net.Listener, dbPath string, paymentTargets []string, page http.Handler, allowedOrigins []string) error {
	defer lis.Close() // in case setup fails before Serve owns it
	httpClient, baseURL, closeClient, err := PaymentsHTTPClient(paymentTargets)
	if err != nil {
		return err
	}
	defer closeClient()
	store, err := orders.OpenStore(ctx, dbPath)
	if err != nil {
		return err
	}
	defer store.Close()
	svc := orders.NewService(logger, store, orders.NewPaymentsClient(httpClient, baseURL))
	srv := rpc.NewHTTPServer(orders.NewServer(logger, svc, page, allowedOrigins), logger)
	srv.RegisterOnShutdown(svc.Close)
	go svc.RunRecovery(ctx, RecoveryInterval)
	return rpc.Serve(ctx, srv, lis, logger)
}

// PaymentsHTTPClient returns the HTTP/2 cleartext client orders uses to reach
// payments, and the base URL to call. targets are "http://host:port" URLs.
// With one target the client holds one multiplexed connection to it. With
// several, it holds one to each and spreads requests over them round robin
// (per request, not per connection), so no replica idles behind a long-lived
// HTTP/2 connection. Call closeClient when done with it.
func PaymentsHTTPClient(targets []string) (client *http.Client, baseURL string, closeClient func(), err error) {
	var hostPorts []string
	for _, t := range targets {
		u, err := url.Parse(strings.TrimSpace(t))
		if err != nil || u.Scheme != "http" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, "", nil, fmt.Errorf("payments target %q: want http://host:port", t)
		}
		hostPorts = append(hostPorts, u.Host)
	}
	switch len(hostPorts) {
	case 0:
		return nil, "", nil, errors.New("no payments target")
	case 1:
		c := rpc.NewH2CClient()
		return c, "http://" + hostPorts[0], c.CloseIdleConnections, nil
	}
	lb := httplb.NewClient(
		httplb.WithResolver(resolver.NewPollingResolver(staticAddresses(hostPorts), time.Hour)),
		httplb.WithDialer((&net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}).DialContext),
	)
	// The host is a name for the group; the resolver above supplies its
	// addresses. The h2c scheme makes httplb speak HTTP/2 with prior knowledge.
	return lb.Client, "h2c://payments", func() { lb.Close() }, nil
}

// staticAddresses resolves any name to a fixed list of addresses.
type staticAddresses []string

func (s staticAddresses) ResolveOnce(context.Context, string, string) ([]resolver.Address, time.Duration, error) {
	addrs := make([]resolver.Address, len(s))
	for i, hp := range s {
		addrs[i] = resolver.Address{HostPort: hp}
	}
	return addrs, 0, nil
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
