// Package launchtest runs the whole shop for a test or a benchmark.
package launchtest

import (
	"context"
	"log/slog"
	"net"
	"testing"

	"github.com/connectshop/connectshop/internal/launch"
	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/web"
)

// Shop runs the shop as cmd/shop does (three payments replicas sharing one
// SQLite file, orders spreading calls over them, the page) on loopback ports
// the system chooses, with data in a temporary directory, until the test
// ends. It returns the URL of orders and the page.
func Shop(tb testing.TB, logger *slog.Logger) string {
	tb.Helper()
	lis := make([]net.Listener, 4) // orders, then the replicas
	for i := range lis {
		var err error
		if lis[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			tb.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- launch.Shop(ctx, logger, lis[0], lis[1:], tb.TempDir(), web.Handler(), payments.Faults{}, nil)
	}()
	tb.Cleanup(func() { cancel(); <-done })
	return "http://" + lis[0].Addr().String()
}
