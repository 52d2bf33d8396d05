// Package storetest checks that an [orders.Store] keeps the contract the
// orders service relies on. Every implementation runs [Run] from its own
// tests, the way io/fs implementations run fstest.TestFS.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/orders"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// NewStore returns a store on a new, empty database, and a function that
// opens the same database again, as another process or a restarted one
// would. Every store it returns must be closed when the test ends (Close may
// be called more than once).
type NewStore func(t *testing.T) (store orders.Store, reopen func() orders.Store)

// Run runs the contract suite against the stores newStore makes.
func Run(t *testing.T, newStore NewStore) {
	tests := []struct {
		name string
		test func(*testing.T, NewStore)
	}{
		{"CreateThenRead", testCreateThenRead},
		{"CreateIsIdempotent", testCreateIsIdempotent},
		{"ConcurrentCreatesWithOneKey", testConcurrentCreates},
		{"Update", testUpdate},
		{"DeletePending", testDeletePending},
		{"ListPagesNewestFirst", testList},
		{"Pending", testPending},
		{"SurvivesReopen", testSurvivesReopen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newStore)
		})
	}
}

var (
	hashA = []byte("request-a")
	hashB = []byte("request-b")
)

// newOrder returns a pending order with the given id, updated at.
func newOrder(id string, at time.Time) *ordersv1.Order {
	return &ordersv1.Order{
		Id:     id,
		Status: ordersv1.OrderStatus_ORDER_STATUS_PENDING,
		Items: []*ordersv1.OrderItem{{
			ProductId: "gopher-plush", ProductName: "Gopher plush", Quantity: 2,
			UnitPrice: &ordersv1.Money{CurrencyCode: "USD", MinorUnits: 1999},
			LineTotal: &ordersv1.Money{CurrencyCode: "USD", MinorUnits: 3998},
		}},
		Total:     &ordersv1.Money{CurrencyCode: "USD", MinorUnits: 3998},
		CreatedAt: timestamppb.New(at),
		UpdatedAt: timestamppb.New(at),
	}
}

func create(t *testing.T, s orders.Store, key string, o *ordersv1.Order) *ordersv1.Order {
	t.Helper()
	got, err := s.Create(context.Background(), key, hashA, "tok_visa", o)
	if err != nil {
		t.Fatalf("Create(%s): %v", key, err)
	}
	return got
}

func assertEqual(t *testing.T, want, got *ordersv1.Order) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

func testCreateThenRead(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	o := newOrder("ord_1", time.Now())
	assertEqual(t, o, create(t, s, "key-1", o))
	got, err := s.Order(context.Background(), "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, o, got)
	if _, err := s.Order(context.Background(), "ord_unknown"); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("Order(unknown): got %v, want ErrNotFound", err)
	}
}

func testCreateIsIdempotent(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	first := create(t, s, "key-1", newOrder("ord_1", time.Now()))
	// The same key and request again: the first order, not the new one.
	again, err := s.Create(ctx, "key-1", hashA, "tok_visa", newOrder("ord_2", time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, first, again)
	// The same key for another request: refused.
	if _, err := s.Create(ctx, "key-1", hashB, "tok_visa", newOrder("ord_3", time.Now())); !errors.Is(err, orders.ErrKeyReused) {
		t.Errorf("Create with a reused key: got %v, want ErrKeyReused", err)
	}
	for _, id := range []string{"ord_2", "ord_3"} {
		if _, err := s.Order(ctx, id); !errors.Is(err, orders.ErrNotFound) {
			t.Errorf("Order(%s): got %v, want ErrNotFound: a duplicate was stored", id, err)
		}
	}
}

// Two stores on one database (two orders instances, or a restart racing a
// retry) creating under one key at once store one order.
func testConcurrentCreates(t *testing.T, newStore NewStore) {
	s, reopen := newStore(t)
	stores := []orders.Store{s, reopen()}
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]bool{}
	)
	for i := range 10 {
		wg.Go(func() {
			o, err := stores[i%2].Create(context.Background(), "key-1", hashA, "tok_visa", newOrder(fmt.Sprintf("ord_%d", i), time.Now()))
			if err != nil {
				t.Errorf("Create: %v", err)
				return
			}
			mu.Lock()
			ids[o.GetId()] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Errorf("got orders %v under one key, want one", ids)
	}
}

func testUpdate(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	create(t, s, "key-1", newOrder("ord_1", time.Now()))
	pay := func(o *ordersv1.Order) (bool, error) {
		if o.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PENDING {
			return false, nil
		}
		o.Status = ordersv1.OrderStatus_ORDER_STATUS_PAID
		o.PaymentId = "pay_1"
		return true, nil
	}
	got, changed, err := s.Update(ctx, "ord_1", pay)
	if err != nil || !changed || got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID {
		t.Fatalf("Update: got %v changed=%v (err %v), want PAID changed", got, changed, err)
	}
	// fn sees what the first update stored, and changes nothing.
	again, changed, err := s.Update(ctx, "ord_1", pay)
	if err != nil || changed {
		t.Fatalf("second Update: got changed=%v (err %v), want unchanged", changed, err)
	}
	assertEqual(t, got, again)
	// An error from fn writes nothing.
	boom := errors.New("boom")
	if _, _, err := s.Update(ctx, "ord_1", func(o *ordersv1.Order) (bool, error) {
		o.Status = ordersv1.OrderStatus_ORDER_STATUS_CANCELLED
		return true, boom
	}); !errors.Is(err, boom) {
		t.Errorf("Update with failing fn: got %v, want boom", err)
	}
	stored, err := s.Order(ctx, "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, got, stored)
	if _, _, err := s.Update(ctx, "ord_unknown", pay); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("Update(unknown): got %v, want ErrNotFound", err)
	}
}

func testDeletePending(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	create(t, s, "key-1", newOrder("ord_pending", time.Now()))
	paid := newOrder("ord_paid", time.Now())
	paid.Status = ordersv1.OrderStatus_ORDER_STATUS_PAID
	create(t, s, "key-2", paid)
	for _, id := range []string{"ord_pending", "ord_paid", "ord_unknown"} {
		if err := s.DeletePending(ctx, id); err != nil {
			t.Fatalf("DeletePending(%s): %v", id, err)
		}
	}
	if _, err := s.Order(ctx, "ord_pending"); !errors.Is(err, orders.ErrNotFound) {
		t.Errorf("pending order after DeletePending: got %v, want ErrNotFound", err)
	}
	if _, err := s.Order(ctx, "ord_paid"); err != nil {
		t.Errorf("paid order after DeletePending: %v, want it kept", err)
	}
	// Its key is free again: the request left nothing behind.
	if o := create(t, s, "key-1", newOrder("ord_new", time.Now())); o.GetId() != "ord_new" {
		t.Errorf("Create after DeletePending: got %s, want ord_new", o.GetId())
	}
}

func testList(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	var want []string
	for i := range 5 {
		o := create(t, s, fmt.Sprintf("key-%d", i), newOrder(fmt.Sprintf("ord_%d", i), time.Now()))
		want = append([]string{o.GetId()}, want...)
	}
	var (
		got    []string
		cursor int64
		pages  int
	)
	for {
		list, next, err := s.List(ctx, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, o := range list {
			got = append(got, o.GetId())
		}
		if next == 0 {
			break
		}
		if pages > 5 {
			t.Fatalf("more than 5 pages of 2 for 5 orders: %v", got)
		}
		cursor = next
	}
	if diff := cmp.Diff(want, got); diff != "" || pages != 3 {
		t.Errorf("got %d pages, want 3; ids (-want +got):\n%s", pages, diff)
	}
	if list, next, err := s.List(ctx, 0, 5); err != nil || len(list) != 5 || next != 0 {
		t.Errorf("List of exactly all: got %d orders, next %d (err %v), want 5 and no next page", len(list), next, err)
	}
}

func testPending(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Now()
	old := newOrder("ord_old", now.Add(-time.Minute))
	create(t, s, "key-old", old)
	create(t, s, "key-new", newOrder("ord_new", now))
	paid := newOrder("ord_paid", now.Add(-time.Minute))
	paid.Status = ordersv1.OrderStatus_ORDER_STATUS_PAID
	create(t, s, "key-paid", paid)

	got, err := s.Pending(ctx, now.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].PaymentToken != "tok_visa" {
		t.Fatalf("Pending: got %v, want ord_old with its token", got)
	}
	assertEqual(t, old, got[0].Order)
}

func testSurvivesReopen(t *testing.T, newStore NewStore) {
	s, reopen := newStore(t)
	o := create(t, s, "key-1", newOrder("ord_1", time.Now()))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = reopen()
	got, err := s.Order(context.Background(), o.GetId())
	if err != nil {
		t.Fatal(err)
	}
	assertEqual(t, o, got)
	if again := create(t, s, "key-1", newOrder("ord_2", time.Now())); again.GetId() != o.GetId() {
		t.Errorf("Create after reopen: got %s, want %s (the key is remembered)", again.GetId(), o.GetId())
	}
}
