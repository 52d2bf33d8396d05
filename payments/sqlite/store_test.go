package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/connectshop/connectshop/internal/contract"
	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/payments/sqlite"
	"github.com/connectshop/connectshop/payments/storetest"
)

func TestStoreContract(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) (payments.Store, func() payments.Store) {
		path := filepath.Join(t.TempDir(), "payments.db")
		return contract.Reopenable(t, func() (payments.Store, error) { return sqlite.Open(context.Background(), path) })
	})
}
