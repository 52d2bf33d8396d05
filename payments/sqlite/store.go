// Package sqlite keeps the payments of the payments service in SQLite: a
// [payments.Store] on one file, which replicas may share (see
// internal/sqlitedb).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/scan"
	"github.com/connectshop/connectshop/internal/sqlitedb"
	"github.com/connectshop/connectshop/payments"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const schema = `
CREATE TABLE IF NOT EXISTS payments (
	id              TEXT PRIMARY KEY,
	idempotency_key TEXT NOT NULL UNIQUE,
	request_hash    BLOB NOT NULL,
	status          INTEGER NOT NULL,
	currency_code   TEXT NOT NULL,
	minor_units     INTEGER NOT NULL,
	reference       TEXT NOT NULL,
	replica         TEXT NOT NULL,
	created_at      INTEGER NOT NULL, -- Unix nanoseconds
	refunded_at     INTEGER           -- Unix nanoseconds, NULL unless refunded
) STRICT;`

// Store keeps payments in SQLite. Several replicas may share one file:
// idempotency is enforced inside write transactions and by a unique key, so
// it holds across replicas, processes and restarts.
type Store struct {
	db *sqlitedb.DB
}

var _ payments.Store = (*Store)(nil)

// Open opens or creates the payments database at path.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sqlitedb.Open(ctx, path, schema)
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Share returns another store on the same file and writer, to close on its
// own: replicas in one process share one this way (see [sqlitedb.DB.Share]).
func (s *Store) Share() *Store { return &Store{db: s.db.Share()} }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Collectors returns the metrics of the database's group commits (see
// [sqlitedb.DB.Collectors]).
func (s *Store) Collectors() []prometheus.Collector { return s.db.Collectors() }

// Ping implements [payments.Store].
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Charge implements [payments.Store].
func (s *Store) Charge(ctx context.Context, key string, requestHash []byte, p *paymentsv1.Payment) (*paymentsv1.Payment, error) {
	var stored *paymentsv1.Payment
	err := s.db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error {
		prev, prevHash, err := scanPayment(tx.QueryRowContext(ctx,
			`SELECT `+paymentColumns+`, request_hash FROM payments WHERE idempotency_key = ?`, key))
		switch {
		case err == nil:
			if string(prevHash) != string(requestHash) {
				return payments.ErrKeyReused
			}
			stored = prev
			return nil
		case !errors.Is(err, payments.ErrNotFound):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO payments
			(id, idempotency_key, request_hash, status, currency_code, minor_units, reference, replica, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.GetId(), key, requestHash, int64(p.GetStatus()), p.GetAmount().GetCurrencyCode(),
			p.GetAmount().GetMinorUnits(), p.GetReference(), p.GetReplica(), p.GetCreatedAt().AsTime().UnixNano())
		stored = p
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("charge %s: %w", key, err)
	}
	return stored, nil
}

// Refund implements [payments.Store].
func (s *Store) Refund(ctx context.Context, id string, now time.Time) (*paymentsv1.Payment, error) {
	var p *paymentsv1.Payment
	err := s.db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error {
		var err error
		p, _, err = scanPayment(tx.QueryRowContext(ctx,
			`SELECT `+paymentColumns+`, request_hash FROM payments WHERE id = ?`, id))
		if err != nil {
			return err
		}
		switch p.GetStatus() {
		case paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED:
			return nil
		case paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED:
			return payments.ErrNotRefundable
		}
		_, err = tx.ExecContext(ctx, `UPDATE payments SET status = ?, refunded_at = ? WHERE id = ?`,
			int64(paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED), now.UnixNano(), id)
		p.Status = paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED
		p.RefundedAt = timestamppb.New(now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("refund %s: %w", id, err)
	}
	return p, nil
}

// Payment implements [payments.Store].
func (s *Store) Payment(ctx context.Context, id string) (*paymentsv1.Payment, error) {
	p, _, err := scanPayment(s.db.QueryRow(ctx,
		`SELECT `+paymentColumns+`, request_hash FROM payments WHERE id = ?`, id))
	if err != nil {
		return nil, fmt.Errorf("get payment %s: %w", id, err)
	}
	return p, nil
}

const paymentColumns = `id, status, currency_code, minor_units, reference, replica, created_at, refunded_at`

func scanPayment(row *sql.Row) (*paymentsv1.Payment, []byte, error) {
	var (
		p               paymentsv1.Payment
		amount          paymentsv1.Money
		status, created int64
		refunded        sql.NullInt64
		requestHash     []byte
	)
	err := row.Scan(&p.Id, &status, &amount.CurrencyCode, &amount.MinorUnits, &p.Reference, &p.Replica, &created, &refunded, &requestHash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, payments.ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	p.Status = paymentsv1.PaymentStatus(status)
	p.Amount = &amount
	p.CreatedAt = timestamppb.New(time.Unix(0, created))
	if refunded.Valid {
		p.RefundedAt = timestamppb.New(time.Unix(0, refunded.Int64))
	}
	return &p, requestHash, nil
}

// ChargeCounts returns, per reference, how many payments were charged
// (captured or refunded). A value over 1 is a double charge.
func (s *Store) ChargeCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.db.Query(ctx, `SELECT reference, count(*) FROM payments WHERE status IN (?, ?) GROUP BY reference`,
		int64(paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED), int64(paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED))
	if err != nil {
		return nil, fmt.Errorf("count charges: %w", err)
	}
	defer rows.Close()
	counts, err := scan.Counts(rows)
	if err != nil {
		return nil, fmt.Errorf("count charges: %w", err)
	}
	return counts, nil
}
