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
	"github.com/connectshop/connectshop/internal/contract"
	"github.com/connectshop/connectshop/orders"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// NewStore returns a store on a new, empty database, and a function that
// opens the same database again; see [contract.Factory].
type NewStore = contract.Factory[orders.Store]

// Run runs the contract suite against the stores newStore makes.
func Run(t *testing.T, newStore NewStore) {
	contract.Run(t, newStore,
		contract.Test[NewStore]{Name: "CreateThenRead", Run: testCreateThenRead},
		contract.Test[NewStore]{Name: "CreateIsIdempotent", Run: testCreateIsIdempotent},
		contract.Test[NewStore]{Name: "KeysArePerCustomer", Run: testKeysArePerCustomer},
		contract.Test[NewStore]{Name: "ConcurrentCreatesWithOneKey", Run: testConcurrentCreates},
		contract.Test[NewStore]{Name: "Update", Run: testUpdate},
		contract.Test[NewStore]{Name: "DeletePending", Run: testDeletePending},
		contract.Test[NewStore]{Name: "ListPagesNewestFirst", Run: testList},
		contract.Test[NewStore]{Name: "Unsettled", Run: testUnsettled},
		contract.Test[NewStore]{Name: "SurvivesReopen", Run: testSurvivesReopen},
		contract.Test[NewStore]{Name: "Ping", Run: testPing},
		contract.Test[NewStore]{Name: "ChangeFeed", Run: testChangeFeed},
		contract.Test[NewStore]{Name: "ChangeFeedNumbersConcurrentUpdatesInOrder", Run: testChangeFeedConcurrent},
		contract.Test[NewStore]{Name: "ListenHearsUpdates", Run: testListen},
	)
}

var (
	hashA = []byte("request-a")
	hashB = []byte("request-b")
)

// newOrder returns a pending order of customer cus_a with the given id,
// created and updated at.
func newOrder(id string, at time.Time) *ordersv1.Order {
	return &ordersv1.Order{
		Id:         id,
		CustomerId: "cus_a",
		Status:     ordersv1.OrderStatus_ORDER_STATUS_PENDING,
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

func testCreateThenRead(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	o := newOrder("ord_1", time.Now())
	contract.Equal(t, o, create(t, s, "key-1", o))
	got, err := s.Order(context.Background(), "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	contract.Equal(t, o, got)
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
	contract.Equal(t, first, again)
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

// The same key from two customers places two orders, each listed only for
// its customer.
func testKeysArePerCustomer(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	a := create(t, s, "key-1", newOrder("ord_a", time.Now()))
	other := newOrder("ord_b", time.Now())
	other.CustomerId = "cus_b"
	// Even with another request behind the key: it is not a's key.
	b, err := s.Create(ctx, "key-1", hashB, "tok_visa", other)
	if err != nil {
		t.Fatal(err)
	}
	if a.GetId() != "ord_a" || b.GetId() != "ord_b" {
		t.Fatalf("got orders %s and %s, want ord_a and ord_b", a.GetId(), b.GetId())
	}
	for customer, want := range map[string]string{"cus_a": "ord_a", "cus_b": "ord_b"} {
		list, _, err := s.List(ctx, customer, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].GetId() != want {
			t.Errorf("List(%s): got %v, want just %s", customer, list, want)
		}
	}
	if list, _, err := s.List(ctx, "cus_nobody", 0, 10); err != nil || len(list) != 0 {
		t.Errorf("List of a customer without orders: got %d (err %v), want none", len(list), err)
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
	contract.Equal(t, got, again)
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
	contract.Equal(t, got, stored)
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
		// Another customer's orders in between are on nobody else's pages.
		other := newOrder(fmt.Sprintf("ord_other_%d", i), time.Now())
		other.CustomerId = "cus_other"
		create(t, s, fmt.Sprintf("key-%d", i), other)
	}
	var (
		got    []string
		cursor int64
		pages  int
	)
	for {
		list, next, err := s.List(ctx, "cus_a", cursor, 2)
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
	if list, next, err := s.List(ctx, "cus_a", 0, 5); err != nil || len(list) != 5 || next != 0 {
		t.Errorf("List of exactly all: got %d orders, next %d (err %v), want 5 and no next page", len(list), next, err)
	}
}

func testUnsettled(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx := context.Background()
	now := time.Now()
	pending := newOrder("ord_pending", now.Add(-2*time.Minute))
	create(t, s, "key-pending", pending)
	cancelling := newOrder("ord_cancelling", now.Add(-time.Minute))
	cancelling.Status = ordersv1.OrderStatus_ORDER_STATUS_CANCELLING
	create(t, s, "key-cancelling", cancelling)
	create(t, s, "key-new", newOrder("ord_new", now)) // too recent
	for i, st := range []ordersv1.OrderStatus{ordersv1.OrderStatus_ORDER_STATUS_PAID, ordersv1.OrderStatus_ORDER_STATUS_CANCELLED, ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED} {
		settled := newOrder(fmt.Sprintf("ord_settled_%d", i), now.Add(-time.Minute))
		settled.Status = st
		create(t, s, fmt.Sprintf("key-settled-%d", i), settled)
	}

	got, err := s.Unsettled(ctx, now.Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].PaymentToken != "tok_visa" {
		t.Fatalf("Unsettled: got %v, want ord_pending then ord_cancelling, with their tokens", got)
	}
	contract.Equal(t, pending, got[0].Order)
	contract.Equal(t, cancelling, got[1].Order)
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
	contract.Equal(t, o, got)
	if again := create(t, s, "key-1", newOrder("ord_2", time.Now())); again.GetId() != o.GetId() {
		t.Errorf("Create after reopen: got %s, want %s (the key is remembered)", again.GetId(), o.GetId())
	}
}

// setStatus returns an Update function that moves an order to status.
func setStatus(status ordersv1.OrderStatus) func(*ordersv1.Order) (bool, error) {
	return func(o *ordersv1.Order) (bool, error) {
		if o.GetStatus() == status {
			return false, nil
		}
		o.Status = status
		return true, nil
	}
}

// feed returns the statuses and sequence numbers of customer's changes after
// the given one.
func feed(t *testing.T, s orders.Store, customer string, after int64, limit int) (statuses []string, seqs []int64) {
	t.Helper()
	changes, err := s.Changes(context.Background(), customer, after, limit)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range changes {
		statuses = append(statuses, c.Order.GetId()+":"+c.Order.GetStatus().String())
		seqs = append(seqs, c.Seq)
	}
	return statuses, seqs
}

func testChangeFeed(t *testing.T, newStore NewStore) {
	s, reopen := newStore(t)
	ctx := context.Background()
	if last, err := s.LastChange(ctx, "cus_a"); err != nil || last != 0 {
		t.Fatalf("LastChange of a new customer: got %d (err %v), want 0", last, err)
	}
	create(t, s, "key-1", newOrder("ord_1", time.Now()))
	create(t, s, "key-2", newOrder("ord_2", time.Now()))
	if got, _ := feed(t, s, "cus_a", 0, 10); len(got) != 0 {
		t.Fatalf("after Create: feed %v, want empty (a new order enters with its first update)", got)
	}
	for _, step := range []struct {
		id     string
		status ordersv1.OrderStatus
	}{
		{"ord_1", ordersv1.OrderStatus_ORDER_STATUS_PAID},
		{"ord_2", ordersv1.OrderStatus_ORDER_STATUS_PAID},
		{"ord_1", ordersv1.OrderStatus_ORDER_STATUS_PAID}, // no change: not on the feed
		{"ord_1", ordersv1.OrderStatus_ORDER_STATUS_CANCELLING},
		{"ord_1", ordersv1.OrderStatus_ORDER_STATUS_CANCELLED},
	} {
		if _, _, err := s.Update(ctx, step.id, setStatus(step.status)); err != nil {
			t.Fatal(err)
		}
	}
	other := newOrder("ord_b", time.Now())
	other.CustomerId = "cus_b"
	create(t, s, "key-1", other)
	if _, _, err := s.Update(ctx, "ord_b", setStatus(ordersv1.OrderStatus_ORDER_STATUS_PAID)); err != nil {
		t.Fatal(err)
	}

	want := []string{"ord_1:ORDER_STATUS_PAID", "ord_2:ORDER_STATUS_PAID", "ord_1:ORDER_STATUS_CANCELLING", "ord_1:ORDER_STATUS_CANCELLED"}
	got, seqs := feed(t, s, "cus_a", 0, 10)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("cus_a's feed (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{1, 2, 3, 4}, seqs); diff != "" {
		t.Errorf("cus_a's sequence numbers (-want +got):\n%s", diff)
	}
	if got, seqs := feed(t, s, "cus_b", 0, 10); !cmp.Equal(got, []string{"ord_b:ORDER_STATUS_PAID"}) || !cmp.Equal(seqs, []int64{1}) {
		t.Errorf("cus_b's feed: got %v %v, want its one change numbered 1", got, seqs)
	}
	if got, seqs := feed(t, s, "cus_a", 1, 2); !cmp.Equal(got, want[1:3]) || !cmp.Equal(seqs, []int64{2, 3}) {
		t.Errorf("Changes(after 1, limit 2): got %v %v, want %v numbered 2, 3", got, seqs, want[1:3])
	}
	if last, err := s.LastChange(ctx, "cus_a"); err != nil || last != 4 {
		t.Errorf("LastChange: got %d (err %v), want 4", last, err)
	}

	// Pruning drops old changes but never reuses their numbers, also after a
	// restart.
	if err := s.PruneChanges(ctx, time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _ := feed(t, s, "cus_a", 0, 10); len(got) != 4 {
		t.Fatalf("after pruning what is older than an hour: %d changes, want 4", len(got))
	}
	if err := s.PruneChanges(ctx, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := feed(t, s, "cus_a", 0, 10); len(got) != 0 {
		t.Fatalf("after pruning everything: %v, want none", got)
	}
	s.Close()
	s = reopen()
	if last, err := s.LastChange(ctx, "cus_a"); err != nil || last != 4 {
		t.Errorf("LastChange after pruning and reopening: got %d (err %v), want 4", last, err)
	}
	if _, _, err := s.Update(ctx, "ord_2", setStatus(ordersv1.OrderStatus_ORDER_STATUS_CANCELLED)); err != nil {
		t.Fatal(err)
	}
	if got, seqs := feed(t, s, "cus_a", 0, 10); !cmp.Equal(got, []string{"ord_2:ORDER_STATUS_CANCELLED"}) || !cmp.Equal(seqs, []int64{5}) {
		t.Errorf("after pruning: got %v %v, want the new change numbered 5", got, seqs)
	}
}

// testChangeFeedConcurrent updates one customer's orders from two stores on
// the same database at once: every change gets its own number, without gaps.
func testChangeFeedConcurrent(t *testing.T, newStore NewStore) {
	s, reopen := newStore(t)
	stores := []orders.Store{s, reopen()}
	const n = 20
	for i := range n {
		create(t, s, fmt.Sprintf("key-%d", i), newOrder(fmt.Sprintf("ord_%d", i), time.Now()))
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, _, err := stores[i%2].Update(context.Background(), fmt.Sprintf("ord_%d", i), setStatus(ordersv1.OrderStatus_ORDER_STATUS_PAID)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, seqs := feed(t, stores[1], "cus_a", 0, 2*n)
	if len(got) != n {
		t.Fatalf("got %d changes, want %d", len(got), n)
	}
	for i, seq := range seqs {
		if seq != int64(i+1) {
			t.Fatalf("sequence numbers %v, want 1..%d", seqs, n)
		}
	}
}

// testListen checks that Listen says it listens (changed("")), then names
// the customer of each update made through the store.
func testListen(t *testing.T, newStore NewStore) {
	s, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	heard := make(chan string, 100)
	done := make(chan error, 1)
	go func() { done <- s.Listen(ctx, func(customer string) { heard <- customer }) }()
	next := func() string {
		t.Helper()
		select {
		case c := <-heard:
			return c
		case err := <-done:
			t.Fatalf("Listen returned %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("heard nothing in 5s")
		}
		return ""
	}
	if c := next(); c != "" {
		t.Fatalf("first call: changed(%q), want changed(\"\") once listening", c)
	}
	create(t, s, "key-1", newOrder("ord_1", time.Now()))
	if _, _, err := s.Update(context.Background(), "ord_1", setStatus(ordersv1.OrderStatus_ORDER_STATUS_PAID)); err != nil {
		t.Fatal(err)
	}
	for c := next(); c != "cus_a"; c = next() {
		if c != "" {
			t.Fatalf("changed(%q) after an update of cus_a's order", c)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Listen after its context ended: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Listen still running 5s after its context ended")
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
