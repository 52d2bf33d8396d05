// Package shoptest runs the whole shop for a test or a benchmark.
package shoptest

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/shop"
	"github.com/connectshop/connectshop/web"
)

// Start runs the shop as cmd/shop does (three payments replicas sharing one
// SQLite file, orders spreading calls over them, the page) on loopback ports
// the system chooses, with data in a temporary directory, until the test
// ends. It returns the URL of orders and the page. Options change the
// shop's configuration before it starts (e.g. to give it telemetry).
func Start(tb testing.TB, logger *slog.Logger, options ...func(*shop.Config)) string {
	tb.Helper()
	lis := make([]net.Listener, 4) // orders, then the replicas
	for i := range lis {
		var err error
		if lis[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
	}
	sessionKey, err := auth.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cfg := shop.Config{Logger: logger, Orders: lis[0], Payments: lis[1:], Dir: tb.TempDir(), Page: web.Handler(), SessionKey: sessionKey}
	for _, option := range options {
		option(&cfg)
	}
	go func() { done <- shop.Run(ctx, cfg) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("shop: %v", err)
		}
	})
	return "http://" + lis[0].Addr().String()
}
