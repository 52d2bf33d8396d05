package main

import (
	"context"
	"io"
	"path/filepath"
	"regexp"
	"testing"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/internal/rpc"
)

func TestRunServesPayments(t *testing.T) {
	t.Parallel()
	db := filepath.Join(t.TempDir(), "payments.db")
	args := []string{"payments", "-addr", "127.0.0.1:0", "-name", "payments-9", "-db", db}
	logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, args, func(string) string { return "" }, stderr)
	})
	addr := logs.WaitFor(t, regexp.MustCompile(`msg=serving .*addr=(\S+)`))[1]

	c := paymentsv1connect.NewPaymentServiceClient(rpc.NewH2CClient(), "http://"+addr, connect.WithGRPC())
	resp, err := c.Charge(context.Background(), connect.NewRequest(&paymentsv1.ChargeRequest{
		IdempotencyKey: "k1",
		Amount:         &paymentsv1.Money{CurrencyCode: "EUR", MinorUnits: 250},
		PaymentToken:   "tok_visa",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.Msg.GetPayment().GetReplica(); got != "payments-9" {
		t.Errorf("got replica %q, want the -name flag, payments-9", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}
