package orders_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/orders"
	paymentssqlite "github.com/connectshop/connectshop/payments/sqlite"
)

// NewPaymentsClient calls payments as orders does: with the service key it
// charges, with another key payments refuses it.
func TestNewPaymentsClient(t *testing.T) {
	t.Parallel()
	pstore, err := paymentssqlite.Open(context.Background(), filepath.Join(t.TempDir(), "payments.db"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	_, psrv := startReplica(t, "payments-1", pstore, key, 0)
	charge := func(key auth.Key) (*paymentsv1.Payment, error) {
		client, closer, err := orders.NewPaymentsClient(orders.PaymentsConfig{
			Target: psrv.URL(), Dial: psrv.Listener().DialContext, ServiceKey: key, Timeout: 2 * time.Second,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer closer.Close()
		resp, err := client.Charge(context.Background(), connect.NewRequest(&paymentsv1.ChargeRequest{
			IdempotencyKey: "ord_client_test",
			Amount:         &paymentsv1.Money{CurrencyCode: "USD", MinorUnits: 499},
			PaymentToken:   "tok_visa",
			Reference:      "ord_client_test",
		}))
		if err != nil {
			return nil, err
		}
		return resp.Msg.GetPayment(), nil
	}
	p, err := charge(key)
	if err != nil {
		t.Fatalf("Charge with the service key: %v", err)
	}
	if p.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED || p.GetReplica() != "payments-1" {
		t.Errorf("got payment %v, want CAPTURED by payments-1", p)
	}
	other, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := charge(other); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("Charge with another key: %v, want unauthenticated", err)
	}
}
