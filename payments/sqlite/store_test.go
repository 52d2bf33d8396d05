package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/payments/sqlite"
	"github.com/connectshop/connectshop/payments/storetest"
)

func TestStoreContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) (payments.Store, func() payments.Store) {
		path := filepath.Join(t.TempDir(), "payments.db")
		open := func() payments.Store {
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
