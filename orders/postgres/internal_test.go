package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/connectshop/connectshop/orders"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// openTwo returns two stores on one fresh database, as two instances.
func openTwo(t *testing.T) (*Store, *Store) {
	t.Helper()
	url := pgtest.URL(t)
	var stores [2]*Store
	for i := range stores {
		s, err := Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	return stores[0], stores[1]
}

func pending(id string, at time.Time) *ordersv1.Order {
	return &ordersv1.Order{
		Id: id, CustomerId: "cus_a", Status: ordersv1.OrderStatus_ORDER_STATUS_PENDING,
		CreatedAt: timestamppb.New(at), UpdatedAt: timestamppb.New(at),
	}
}

// Recovery loops of two instances claiming at once get disjoint orders, and
// an expired claim can be taken again.
func TestClaimUnsettled(t *testing.T) {
	t.Parallel()
	a, b := openTwo(t)
	ctx := context.Background()
	now := time.Now()
	for i := range 150 {
		if _, err := a.Create(ctx, fmt.Sprintf("key-%d", i), []byte("h"), "tok_visa", pending(fmt.Sprintf("ord_%03d", i), now.Add(-time.Hour+time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := now.Add(-time.Minute)
	var (
		wg     sync.WaitGroup
		claims [2][]orders.UnsettledOrder
	)
	for i, s := range []*Store{a, b} {
		wg.Go(func() {
			var err error
			if claims[i], err = s.claimUnsettled(ctx, cutoff, now, time.Minute); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, list := range claims {
		if len(list) > unsettledLimit {
			t.Errorf("claimed %d, want at most %d", len(list), unsettledLimit)
		}
		for j, u := range list {
			if seen[u.Order.GetId()] {
				t.Errorf("%s claimed twice", u.Order.GetId())
			}
			seen[u.Order.GetId()] = true
			if j > 0 && u.Order.GetUpdatedAt().AsTime().Before(list[j-1].Order.GetUpdatedAt().AsTime()) {
				t.Errorf("claims not oldest first at %d", j)
			}
		}
	}
	if len(seen) != 150 {
		t.Errorf("claimed %d orders in all, want 150", len(seen))
	}
	// Claimed: nothing left until the claims expire.
	if list, err := a.claimUnsettled(ctx, cutoff, now.Add(30*time.Second), time.Minute); err != nil || len(list) != 0 {
		t.Errorf("claim during the lease: got %d (err %v), want none", len(list), err)
	}
	list, err := b.claimUnsettled(ctx, cutoff, now.Add(2*time.Minute), time.Minute)
	if err != nil || len(list) != unsettledLimit || list[0].Order.GetId() != "ord_000" {
		t.Errorf("claim after the lease: got %d (err %v), want the oldest %d", len(list), err, unsettledLimit)
	}
	// Unsettled claims too, so it respects the claims above: every order is
	// claimed now.
	if list, err := a.Unsettled(ctx, cutoff); err != nil || len(list) != 0 {
		t.Errorf("Unsettled while every order is claimed: got %d (err %v), want none", len(list), err)
	}
}

// Updates of one order from two instances take turns: none is lost.
func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	a, b := openTwo(t)
	ctx := context.Background()
	if _, err := a.Create(ctx, "key-1", []byte("h"), "tok_visa", pending("ord_1", time.Now())); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			s := []*Store{a, b}[i%2]
			if _, _, err := s.Update(ctx, "ord_1", func(o *ordersv1.Order) (bool, error) {
				o.Hops = append(o.Hops, &ordersv1.Hop{Server: fmt.Sprint(i)})
				return true, nil
			}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	o, err := b.Order(ctx, "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	if len(o.GetHops()) != 20 {
		t.Errorf("got %d hops, want 20: updates were lost", len(o.GetHops()))
	}
}

// Creates racing with the deletion of the order that holds their key (a
// declined order, removed by DeletePending) each end with one order.
func TestCreatesRacingDeletes(t *testing.T) {
	t.Parallel()
	a, b := openTwo(t)
	ctx := context.Background()
	for round := range 20 {
		var wg sync.WaitGroup
		for i := range 6 {
			wg.Go(func() {
				s := []*Store{a, b}[i%2]
				o, err := s.Create(ctx, "key-1", []byte("h"), "tok_visa", pending(fmt.Sprintf("ord_%d_%d", round, i), time.Now()))
				if err != nil {
					t.Errorf("Create: %v", err)
					return
				}
				if i%3 == 0 {
					if err := s.DeletePending(ctx, o.GetId()); err != nil {
						t.Errorf("DeletePending: %v", err)
					}
				}
			})
		}
		wg.Wait()
		list, _, err := a.List(ctx, "cus_a", 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) > 1 {
			t.Fatalf("round %d: %d orders under one key", round, len(list))
		}
		for _, o := range list {
			if err := a.DeletePending(ctx, o.GetId()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Every query is bounded by its caller's context.
func TestContext(t *testing.T) {
	t.Parallel()
	a, b := openTwo(t)
	ctx := context.Background()
	if _, err := a.Create(ctx, "key-1", []byte("h"), "tok_visa", pending("ord_1", time.Now())); err != nil {
		t.Fatal(err)
	}
	// a holds the order's row lock until release is closed: b's update waits
	// for it until its deadline.
	locked, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, _, err := a.Update(ctx, "ord_1", func(*ordersv1.Order) (bool, error) {
			close(locked)
			<-release
			return false, nil
		})
		done <- err
	}()
	<-locked
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := b.Update(short, "ord_1", func(*ordersv1.Order) (bool, error) { return false, nil })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("Update of a locked order past its deadline: got %v after %v, want DeadlineExceeded at once", err, time.Since(start))
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The pool is still usable.
	if _, err := b.Order(ctx, "ord_1"); err != nil {
		t.Fatal(err)
	}
}

// Updates NOTIFY after their commit, not from a trigger inside it (which
// made every order update commit one at a time, see Store.notify), and a
// lost NOTIFY costs a watcher at most one wake-up interval: Listen wakes
// everyone on its own too. (That an update is heard is the contract suite's
// ListenHearsUpdates, across instances orders' TestWatchAcrossInstances.)
func TestNotifyOutsideTheTransaction(t *testing.T) {
	t.Parallel()
	s, _ := openTwo(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var triggers int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_trigger WHERE tgrelid = 'order_changes'::regclass AND NOT tgisinternal`).Scan(&triggers); err != nil {
		t.Fatal(err)
	}
	if triggers != 0 {
		t.Fatalf("order_changes has %d triggers, want none", triggers)
	}

	s.wakeEvery = 100 * time.Millisecond
	heard := make(chan time.Time, 100)
	go s.Listen(ctx, func(c string) {
		if c == "" {
			heard <- time.Now()
		}
	})
	var wakes []time.Time // once listening, then on its own with nothing changed
	for len(wakes) < 2 {
		select {
		case at := <-heard:
			wakes = append(wakes, at)
		case <-time.After(5 * time.Second):
			t.Fatalf("Listen woke everyone %d times in 5 s, want 2", len(wakes))
		}
	}
	if gap := wakes[1].Sub(wakes[0]); gap < 50*time.Millisecond || gap > 2*time.Second {
		t.Errorf("woken again after %v with nothing heard, want about %v", gap, s.wakeEvery)
	}
}
