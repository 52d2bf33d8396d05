package main

import (
	"context"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/connectshop/connectshop/internal/rpc"
)

// start runs payments with args and returns its URL.
func start(t *testing.T, args ...string) string {
	t.Helper()
	args = append([]string{"payments", "-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "payments.db")}, args...)
	logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, args, func(string) string { return "" }, stderr)
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return "http://" + logs.WaitFor(t, regexp.MustCompile(`msg=serving .*addr=(\S+)`))[1]
}

func charge(c paymentsv1connect.PaymentServiceClient) (*connect.Response[paymentsv1.ChargeResponse], error) {
	return c.Charge(context.Background(), connect.NewRequest(&paymentsv1.ChargeRequest{
		IdempotencyKey: "k1",
		Amount:         &paymentsv1.Money{CurrencyCode: "EUR", MinorUnits: 250},
		PaymentToken:   "tok_visa",
	}))
}

// With -service-key-file, payments charges for whoever holds the key (orders)
// and for nobody else.
func TestRunServesOrdersOnly(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "service.key")
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	url := start(t, "-name", "payments-9", "-service-key-file", keyFile)

	if _, err := charge(paymentsv1connect.NewPaymentServiceClient(rpc.NewH2CClient(), url, connect.WithGRPC())); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("Charge without the key: got %v, want unauthenticated", err)
	}
	asOrders := paymentsv1connect.NewPaymentServiceClient(rpc.NewH2CClient(), url, connect.WithGRPC(),
		connect.WithInterceptors(auth.ServiceCredentials(key, auth.OrdersCaller, auth.PaymentsAudience)))
	resp, err := charge(asOrders)
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Msg.GetPayment().GetReplica(); got != "payments-9" {
		t.Errorf("got replica %q, want the -name flag, payments-9", got)
	}
}

// Without a key, payments refuses to start and says why, unless -insecure
// says that any caller may charge.
func TestRunNeedsAKeyOrInsecure(t *testing.T) {
	t.Parallel()
	err := run(context.Background(), []string{"payments", "-addr", "127.0.0.1:0", "-db", filepath.Join(t.TempDir(), "p.db")}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-service-key-file is required") || !strings.Contains(err.Error(), "-insecure") {
		t.Fatalf("run without a key: got %v, want an error naming -service-key-file and -insecure", err)
	}
	url := start(t, "-insecure")
	if _, err := charge(paymentsv1connect.NewPaymentServiceClient(rpc.NewH2CClient(), url, connect.WithGRPC())); err != nil {
		t.Errorf("Charge with -insecure and no token: %v", err)
	}
}

// With a postgres:// -db, payments keeps its payments in PostgreSQL: a
// restarted replica (or another one) finds the charge again.
func TestRunOnPostgreSQL(t *testing.T) {
	t.Parallel()
	db := pgtest.URL(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "service.key")
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteKeyFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	var first string
	for i := range 2 {
		args := []string{"payments", "-addr", "127.0.0.1:0", "-db", db, "-service-key-file", keyFile}
		logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
			return run(ctx, args, func(string) string { return "" }, stderr)
		})
		url := "http://" + logs.WaitFor(t, regexp.MustCompile(`msg=serving .*addr=(\S+)`))[1]
		c := paymentsv1connect.NewPaymentServiceClient(rpc.NewH2CClient(), url, connect.WithGRPC(),
			connect.WithInterceptors(auth.ServiceCredentials(key, auth.OrdersCaller, auth.PaymentsAudience)))
		resp, err := charge(c)
		if err != nil {
			t.Fatalf("run %d: Charge: %v", i, err)
		}
		if i == 0 {
			first = resp.Msg.GetPayment().GetId()
		} else if got := resp.Msg.GetPayment().GetId(); got != first {
			t.Errorf("after a restart: got payment %s for the same key, want %s", got, first)
		}
		if err := stop(); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}
