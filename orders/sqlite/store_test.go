package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/connectshop/connectshop/internal/contract"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/orders/sqlite"
	"github.com/connectshop/connectshop/orders/storetest"
)

func TestStoreContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) (orders.Store, func() orders.Store) {
		path := filepath.Join(t.TempDir(), "orders.db")
		return contract.Reopenable(t, func() (orders.Store, error) { return sqlite.Open(context.Background(), path) })
	})
}
