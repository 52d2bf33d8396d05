package postgres_test

import (
	"context"
	"testing"

	"github.com/connectshop/connectshop/internal/contract"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/orders/postgres"
	"github.com/connectshop/connectshop/orders/storetest"
)

func TestStoreContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) (orders.Store, func() orders.Store) {
		url := pgtest.URL(t)
		return contract.Reopenable(t, func() (orders.Store, error) { return postgres.Open(context.Background(), url) })
	})
}
