package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/contract"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/payments/postgres"
	"github.com/connectshop/connectshop/payments/storetest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestStoreContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) (payments.Store, func() payments.Store) {
		url := pgtest.URL(t)
		return contract.Reopenable(t, func() (payments.Store, error) { return postgres.Open(context.Background(), url) })
	})
}

func open(t *testing.T) *postgres.Store {
	t.Helper()
	url := pgtest.URL(t)
	s, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestChargeCounts(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	for i, c := range []struct {
		ref    string
		status paymentsv1.PaymentStatus
	}{
		{"ord_a", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED},
		{"ord_b", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED},
		{"ord_b", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED}, // a double charge: refunded below
		{"ord_c", paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED},
	} {
		p := &paymentsv1.Payment{
			Id: fmt.Sprintf("pay_%d", i), Status: c.status, Reference: c.ref,
			Amount: &paymentsv1.Money{CurrencyCode: "USD", MinorUnits: 100}, CreatedAt: timestamppb.Now(),
		}
		if _, err := s.Charge(ctx, p.Id, []byte("h"), p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Refund(ctx, "pay_2", time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err := s.ChargeCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]int{"ord_a": 1, "ord_b": 2}, got); diff != "" {
		t.Errorf("ChargeCounts (-want +got):\n%s", diff)
	}
}

// Times keep their nanoseconds, as in payments/sqlite: a retried charge
// returns exactly what the first one did.
func TestNanosecondTimes(t *testing.T) {
	t.Parallel()
	s := open(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 25, 12, 0, 0, 123456789, time.UTC)
	p := &paymentsv1.Payment{Id: "pay_1", Status: paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED, Reference: "ord_1",
		Amount: &paymentsv1.Money{CurrencyCode: "USD", MinorUnits: 100}, CreatedAt: timestamppb.New(at)}
	if _, err := s.Charge(ctx, "key-1", []byte("h"), p); err != nil {
		t.Fatal(err)
	}
	again, err := s.Charge(ctx, "key-1", []byte("h"), p)
	if err != nil {
		t.Fatal(err)
	}
	contract.Equal(t, p, again)
	refunded, err := s.Refund(ctx, "pay_1", at.Add(time.Nanosecond))
	if err != nil {
		t.Fatal(err)
	}
	if got := refunded.GetRefundedAt().AsTime(); !got.Equal(at.Add(time.Nanosecond)) {
		t.Errorf("refunded at %v, want %v", got, at.Add(time.Nanosecond))
	}
}
