package postgres_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/orders/postgres"
	"github.com/connectshop/connectshop/orders/sqlite"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// BenchmarkCreateUpdate measures what CreateOrder asks of the store, from 32
// concurrent callers: Create a pending order, then Update it to PAID. One op
// is one order. SQLite is here to compare:
//
//	TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable \
//	  go test -run '^$' -bench CreateUpdate -benchtime 5s ./orders/postgres/
func BenchmarkCreateUpdate(b *testing.B) {
	b.Run("sqlite", func(b *testing.B) {
		s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "orders.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		benchCreateUpdate(b, s)
	})
	for _, conns := range []int{4, 10, 32} {
		b.Run(fmt.Sprintf("postgres/pool=%d", conns), func(b *testing.B) {
			s, err := postgres.Open(context.Background(), pgtest.URL(b)+fmt.Sprintf("&pool_max_conns=%d", conns))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			benchCreateUpdate(b, s)
		})
	}
}

func benchCreateUpdate(b *testing.B, s orders.Store) {
	const callers = 32
	ctx := context.Background()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	for range callers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				now := timestamppb.New(time.Now())
				o := &ordersv1.Order{
					Id: fmt.Sprintf("ord_%d", i), CustomerId: fmt.Sprintf("cus_%d", i%100),
					Status: ordersv1.OrderStatus_ORDER_STATUS_PENDING, CreatedAt: now, UpdatedAt: now,
					Items: []*ordersv1.OrderItem{{ProductId: "gopher-plush", ProductName: "Gopher plush", Quantity: 2,
						UnitPrice: &ordersv1.Money{CurrencyCode: "USD", MinorUnits: 1999},
						LineTotal: &ordersv1.Money{CurrencyCode: "USD", MinorUnits: 3998}}},
					Total: &ordersv1.Money{CurrencyCode: "USD", MinorUnits: 3998},
				}
				if _, err := s.Create(ctx, fmt.Sprintf("key-%d", i), []byte("h"), "tok_visa", o); err != nil {
					b.Error(err)
					return
				}
				if _, _, err := s.Update(ctx, o.GetId(), func(o *ordersv1.Order) (bool, error) {
					o.Status = ordersv1.OrderStatus_ORDER_STATUS_PAID
					o.UpdatedAt = timestamppb.Now()
					return true, nil
				}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
