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
// ends. It returns the URL of orders and the page.
func Start(tb testing.TB, logger *slog.Logger) string {
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
	go func() {
		done <- shop.Run(ctx, shop.Config{Logger: logger, Orders: lis[0], Payments: lis[1:], Dir: tb.TempDir(), Page: web.Handler(), SessionKey: sessionKey})
	}()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("shop: %v", err)
		}
	})
	return "http://" + lis[0].Addr().String()
}
