package cli

import (
	"context"
	"errors"
	"strings"

	"github.com/connectshop/connectshop/orders"
	orderspostgres "github.com/connectshop/connectshop/orders/postgres"
	orderssqlite "github.com/connectshop/connectshop/orders/sqlite"
	"github.com/connectshop/connectshop/payments"
	paymentspostgres "github.com/connectshop/connectshop/payments/postgres"
	paymentssqlite "github.com/connectshop/connectshop/payments/sqlite"
)

// IsPostgres reports whether a -db value names a PostgreSQL database (a
// postgres:// or postgresql:// URL) rather than a SQLite file.
func IsPostgres(db string) bool {
	return strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://")
}

// OpenOrders opens the orders store that -db names: PostgreSQL for a
// postgres:// URL (several orders instances may share it), else the SQLite
// file at that path.
func OpenOrders(ctx context.Context, db string) (orders.Store, error) {
	if IsPostgres(db) {
		s, err := orderspostgres.Open(ctx, db)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := orderssqlite.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// OpenPayments opens the payments store that -db names, as [OpenOrders]
// does; every replica of a shop opens the same one.
func OpenPayments(ctx context.Context, db string) (payments.Store, error) {
	if IsPostgres(db) {
		s, err := paymentspostgres.Open(ctx, db)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	s, err := paymentssqlite.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	return s, nil
}

var errSessionKeyForPostgres = errors.New("-session-key-file is required with a postgres:// -db: every orders instance must sign sessions with the same key")
