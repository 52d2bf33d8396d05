// Package storetest checks that a [payments.Store] keeps the contract the
// payments service relies on. Every implementation runs [Run] from its own
// tests, the way io/fs implementations run fstest.TestFS.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/contract"
	"github.com/connectshop/connectshop/payments"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// NewStore returns a store on a new, empty database, and a function that
// opens the same database again; see [contract.Factory].
type NewStore = contract.Factory[payments.Store]

// Run runs the contract suite against the stores newStore makes.
func Run(t *testing.T, newStore NewStore) {
	contract.Run(t, newStore,
		contract.Test[NewStore]{Name: "ChargeThenRead", Run: testChargeThenRead},
		contract.Test[NewStore]{Name: "ChargeIsIdempotent", Run: testChargeIsIdempotent},
		contract.Test[NewStore]{Name: "ConcurrentChargesAcrossReplicas", Run: testConcurrentCharges},
		contract.Test[NewStore]{Name: "Refund", Run: testRefund},
		contract.Test[NewStore]{Name: "SurvivesReopen", Run: testSurvivesReopen},
		contract.Test[NewStore]{Name: "Ping", Run: testPing},
	)
}

var (
	hashA = []byte("request-a")
	hashB = []byte("request-b")
	// Timestamps are kept to the microsecond by every implementation.
	createdAt = time.Date(2026, 11, 25, 12, 0, 0, 123456000, time.UTC)
)

func newPayment(id string, status paymentsv1.PaymentStatus) *paymentsv1.Payment {
	return &paymentsv1.Payment{
		Id:        id,
		Status:    status,
		Amount:    &paymentsv1.Money{CurrencyCode: "USD", MinorUnits: 4497},
		Reference: "ord_" + id,
		Replica:   "payments-1",
		CreatedAt: timestamppb.New(createdAt),
	}
}

func charge(t *testing.T, s payments.Store, key string, p *paymentsv1.Payment) *paymentsv1.Payment {
	t.Helper()
	got, err := s.Charge(context.Background(), key, hashA, p)
	if err != nil {
		t.Fatalf("Charge(%s): %v", key, err)
	}
	return got
}

func testChargeThenRead(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	p := newPayment("pay_1", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED)
	contract.Equal(t, p, charge(t, s, "key-1", p))
	got, err := s.Payment(context.Background(), "pay_1")
	if err != nil {
		t.Fatal(err)
	}
	contract.Equal(t, p, got)
	if _, err := s.Payment(context.Background(), "pay_unknown"); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("Payment(unknown): got %v, want ErrNotFound", err)
	}
}

func testChargeIsIdempotent(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	first := charge(t, s, "key-1", newPayment("pay_1", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED))
	again, err := s.Charge(ctx, "key-1", hashA, newPayment("pay_2", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED))
	if err != nil {
		t.Fatal(err)
	}
	contract.Equal(t, first, again)
	if _, err := s.Charge(ctx, "key-1", hashB, newPayment("pay_3", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED)); !errors.Is(err, payments.ErrKeyReused) {
		t.Errorf("Charge with a reused key: got %v, want ErrKeyReused", err)
	}
	// A declined charge is kept too: a retry stays declined.
	declined := charge(t, s, "key-2", newPayment("pay_4", paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED))
	if again := charge(t, s, "key-2", newPayment("pay_5", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED)); again.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED {
		t.Errorf("retry of a declined charge: got %v, want %v", again, declined)
	}
	for _, id := range []string{"pay_2", "pay_3", "pay_5"} {
		if _, err := s.Payment(ctx, id); !errors.Is(err, payments.ErrNotFound) {
			t.Errorf("Payment(%s): got %v, want ErrNotFound: a duplicate was stored", id, err)
		}
	}
}

// Replicas sharing a database charge a key once, even all at the same moment.
func testConcurrentCharges(t *testing.T, newStore NewStore) {
	s, reopen := newStore(t)
	stores := []payments.Store{s, reopen(), reopen()}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]bool{}
	)
	for i := range 12 {
		wg.Go(func() {
			p, err := stores[i%3].Charge(context.Background(), "key-1", hashA, newPayment(fmt.Sprintf("pay_%d", i), paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED))
			if err != nil {
				t.Errorf("Charge: %v", err)
				return
			}
			mu.Lock()
			ids[p.GetId()] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Errorf("got payments %v under one key, want one", ids)
	}
}

func testRefund(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	charge(t, s, "key-1", newPayment("pay_1", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED))
	refundedAt := createdAt.Add(time.Hour)
	refunded, err := s.Refund(ctx, "pay_1", refundedAt)
	if err != nil {
		t.Fatal(err)
	}
	want := newPayment("pay_1", paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED)
	want.RefundedAt = timestamppb.New(refundedAt)
	contract.Equal(t, want, refunded)
	// Refunding again changes nothing, not even the time.
	again, err := s.Refund(ctx, "pay_1", refundedAt.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	contract.Equal(t, want, again)
	stored, err := s.Payment(ctx, "pay_1")
	if err != nil {
		t.Fatal(err)
	}
	contract.Equal(t, want, stored)

	charge(t, s, "key-2", newPayment("pay_2", paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED))
	if _, err := s.Refund(ctx, "pay_2", refundedAt); !errors.Is(err, payments.ErrNotRefundable) {
		t.Errorf("Refund(declined): got %v, want ErrNotRefundable", err)
	}
	if _, err := s.Refund(ctx, "pay_unknown", refundedAt); !errors.Is(err, payments.ErrNotFound) {
		t.Errorf("Refund(unknown): got %v, want ErrNotFound", err)
	}
}

func testSurvivesReopen(t *testing.T, newStore NewStore) {
	s, reopen := newStore(t)
	p := charge(t, s, "key-1", newPayment("pay_1", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	got, err := s.Payment(context.Background(), p.GetId())
	if err != nil {
		t.Fatal(err)
	}
	contract.Equal(t, p, got)
	if again := charge(t, s, "key-1", newPayment("pay_2", paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED)); again.GetId() != p.GetId() {
		t.Errorf("Charge after reopen: got %s, want %s (the key is remembered)", again.GetId(), p.GetId())
	}
}

// testPing checks that an open store answers a ping, as readiness checks
// ask.
func testPing(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
