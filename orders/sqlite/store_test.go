package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/orders/sqlite"
	"github.com/connectshop/connectshop/orders/storetest"
)

func TestStoreContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) (orders.Store, func() orders.Store) {
		path := filepath.Join(t.TempDir(), "orders.db")
		open := func() orders.Store {
			s, err := sqlite.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open
	})
}
