package main

import (
	"context"
	"io"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/internal/rpc"
)

// A replica's admin listener: liveness, readiness and pprof answer, and
// /metrics has its Charge calls by code, its charges by outcome and its
// store latencies, labelled with its name, and nothing of orders; the
// payment's id and reference label nothing.
func TestAdminServesMetrics(t *testing.T) {
	t.Parallel()
	args := []string{"payments", "-addr", "127.0.0.1:0", "-admin-addr", "127.0.0.1:0", "-name", "payments-3",
		"-db", filepath.Join(t.TempDir(), "payments.db"), "-insecure"}
	logs, stop := cmdtest.Start(t, func(ctx context.Context, stderr io.Writer) error {
		return run(ctx, args, func(string) string { return "" }, stderr)
	})
	url := "http://" + logs.WaitFor(t, regexp.MustCompile(`msg=serving service=payments-3 addr=(\S+)`))[1]
	admin := "http://" + logs.WaitFor(t, regexp.MustCompile(`msg=serving service=payments-3 listener=admin addr=(\S+)`))[1]
	cmdtest.CheckAdmin(t, admin)

	c := paymentsv1connect.NewPaymentServiceClient(rpc.NewH2CClient(), url, connect.WithGRPC())
	chargeWith := func(key, token string) (*connect.Response[paymentsv1.ChargeResponse], error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return c.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{
			IdempotencyKey: key,
			Amount:         &paymentsv1.Money{CurrencyCode: "USD", MinorUnits: 1299},
			PaymentToken:   token,
			Reference:      "ord_" + key,
		}))
	}
	paid, err := chargeWith("k1", "tok_visa")
	if err != nil {
		t.Fatalf("Charge: %v", err)
	}
	if _, err := chargeWith("k1", "tok_visa"); err != nil { // the same payment again
		t.Fatalf("Charge again: %v", err)
	}
	if _, err := chargeWith("k2", "tok_declined"); connect.CodeOf(err) != connect.CodeFailedPrecondition {
		t.Fatalf("Charge with tok_declined: got %v, want failed_precondition", err)
	}

	const charge = "/payments.v1.PaymentService/Charge"
	metrics := cmdtest.Scrape(t, admin+"/metrics")
	metrics.Check(t, []cmdtest.Want{
		cmdtest.AtLeast(2, "rpc_server_duration_seconds", "server", "payments-3", "procedure", charge, "protocol", "grpc", "code", "ok"),
		cmdtest.AtLeast(1, "rpc_server_duration_seconds", "server", "payments-3", "procedure", charge, "protocol", "grpc", "code", "failed_precondition"),
		cmdtest.AtLeast(1, "payments_charges_total", "server", "payments-3", "outcome", "captured"),
		cmdtest.AtLeast(1, "payments_charges_total", "server", "payments-3", "outcome", "replayed"),
		cmdtest.AtLeast(1, "payments_charges_total", "server", "payments-3", "outcome", "declined"),
		cmdtest.AtLeast(3, "store_operation_duration_seconds", "server", "payments-3", "operation", "Charge"),
	}, paid.Msg.GetPayment().GetId())
	for name := range metrics {
		if strings.HasPrefix(name, "orders_") {
			t.Errorf("a payments replica exports %s", name)
		}
	}
	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
}
