// Package postgres keeps the payments of the payments service in PostgreSQL:
// a [payments.Store] that replicas on several hosts share.
//
// Use it for multi-host deployments, where replicas cannot share a SQLite
// file; payments/sqlite stays the default, embedded and with nothing to run
// beside the service. Both pass the same suite (payments/storetest) and
// behave alike: a unique idempotency key in the database charges each key
// once across replicas, processes and restarts.
//
// [Open] applies the schema's migrations first, safely when replicas start
// together (see internal/pgdb).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/pgdb"
	"github.com/connectshop/connectshop/internal/scan"
	"github.com/connectshop/connectshop/payments"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// schema is the payments schema, migration by migration. Times are Unix
// nanoseconds, as in payments/sqlite, not timestamptz (microseconds): a
// payment read back is the payment stored, to the nanosecond, so a retried
// charge returns exactly what the first one did.
var schema = pgdb.Schema{
	Service: "payments",
	LockKey: 0x7061796d656e7473, // "payments"
	Migrations: []string{
		// 1: the schema of payments/sqlite.
		`CREATE TABLE payments (
			id              text    PRIMARY KEY,
			idempotency_key text    NOT NULL UNIQUE,
			request_hash    bytea   NOT NULL,
			status          integer NOT NULL,
			currency_code   text    NOT NULL,
			minor_units     bigint  NOT NULL,
			reference       text    NOT NULL,
			replica         text    NOT NULL,
			created_at      bigint  NOT NULL, -- Unix nanoseconds
			refunded_at     bigint            -- Unix nanoseconds, NULL unless refunded
		);`,
	},
}

// Statuses the queries name.
const (
	statusCaptured = int32(paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED)
	statusDeclined = int32(paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED)
	statusRefunded = int32(paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED)
)

// Store keeps payments in PostgreSQL. Any number of stores, in any number of
// processes, may share one database.
type Store struct {
	pool *pgxpool.Pool
}

var _ payments.Store = (*Store)(nil)

// Open connects to the database at url (postgres://user@host:port/db?…, with
// pgx's settings such as pool_max_conns; see [pgdb.Open]) and brings the
// payments schema up to date. Its tables are in the first schema of the
// search_path.
func Open(ctx context.Context, url string) (*Store, error) {
	pool, err := pgdb.Open(ctx, url, schema)
	if err != nil {
		return nil, err
	}
	return &Store{pool: pool}, nil
}

// Close closes the connections, waiting for those in use. Closing again does
// nothing (pgxpool closes once).
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping implements [payments.Store].
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Charge implements [payments.Store].
//
// The unique idempotency_key decides which payment a key gets: the INSERT
// ... ON CONFLICT DO NOTHING is one atomic statement that, under a concurrent
// charge with the same key, waits for the other's transaction and inserts
// nothing if it committed. The SELECT after it, a statement with a new
// snapshot (READ COMMITTED), then sees the winner. Payments are never
// deleted, so it always does.
func (s *Store) Charge(ctx context.Context, key string, requestHash []byte, p *paymentsv1.Payment) (*paymentsv1.Payment, error) {
	tag, err := s.pool.Exec(ctx, `INSERT INTO payments
		(id, idempotency_key, request_hash, status, currency_code, minor_units, reference, replica, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (idempotency_key) DO NOTHING`,
		p.GetId(), key, requestHash, int32(p.GetStatus()), p.GetAmount().GetCurrencyCode(),
		p.GetAmount().GetMinorUnits(), p.GetReference(), p.GetReplica(), p.GetCreatedAt().AsTime().UnixNano())
	if err != nil {
		return nil, fmt.Errorf("charge %s: %w", key, err)
	}
	if tag.RowsAffected() == 1 {
		return p, nil
	}
	prev, prevHash, err := scanPayment(s.pool.QueryRow(ctx,
		`SELECT `+paymentColumns+`, request_hash FROM payments WHERE idempotency_key = $1`, key))
	switch {
	case err != nil:
		return nil, fmt.Errorf("charge %s: %w", key, err)
	case string(prevHash) != string(requestHash):
		return nil, fmt.Errorf("charge %s: %w", key, payments.ErrKeyReused)
	}
	return prev, nil
}

// Refund implements [payments.Store]. One conditional UPDATE refunds the
// payment unless it is refunded or declined, so concurrent refunds of one
// payment refund it once, at the first one's time; only when it changed
// nothing does a second statement read why.
func (s *Store) Refund(ctx context.Context, id string, now time.Time) (*paymentsv1.Payment, error) {
	p, _, err := scanPayment(s.pool.QueryRow(ctx, `UPDATE payments SET status = $1, refunded_at = $2
		WHERE id = $3 AND status NOT IN ($1, $4)
		RETURNING `+paymentColumns+`, request_hash`,
		statusRefunded, now.UnixNano(), id, statusDeclined))
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, payments.ErrNotFound) {
		return nil, fmt.Errorf("refund %s: %w", id, err)
	}
	// Not refunded now: unknown, declined, or refunded already (for good:
	// a refunded payment never changes again).
	p, _, err = scanPayment(s.pool.QueryRow(ctx,
		`SELECT `+paymentColumns+`, request_hash FROM payments WHERE id = $1`, id))
	if err == nil && p.GetStatus() == paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED {
		err = payments.ErrNotRefundable
	}
	if err != nil {
		return nil, fmt.Errorf("refund %s: %w", id, err)
	}
	return p, nil
}

// Payment implements [payments.Store].
func (s *Store) Payment(ctx context.Context, id string) (*paymentsv1.Payment, error) {
	p, _, err := scanPayment(s.pool.QueryRow(ctx,
		`SELECT `+paymentColumns+`, request_hash FROM payments WHERE id = $1`, id))
	if err != nil {
		return nil, fmt.Errorf("get payment %s: %w", id, err)
	}
	return p, nil
}

// ChargeCounts returns, per reference, how many payments were charged
// (captured or refunded). A value over 1 is a double charge.
func (s *Store) ChargeCounts(ctx context.Context) (map[string]int, error) {
	rows, err := s.pool.Query(ctx, `SELECT reference, count(*) FROM payments WHERE status IN ($1, $2) GROUP BY reference`,
		statusCaptured, statusRefunded)
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

const paymentColumns = `id, status, currency_code, minor_units, reference, replica, created_at, refunded_at`

// scanPayment reads a payment and its request hash from a row of
// paymentColumns and request_hash, or returns [payments.ErrNotFound].
func scanPayment(row pgx.Row) (*paymentsv1.Payment, []byte, error) {
	var (
		p           paymentsv1.Payment
		amount      paymentsv1.Money
		status      int32
		created     int64
		refunded    *int64
		requestHash []byte
	)
	err := row.Scan(&p.Id, &status, &amount.CurrencyCode, &amount.MinorUnits, &p.Reference, &p.Replica, &created, &refunded, &requestHash)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, payments.ErrNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	p.Status = paymentsv1.PaymentStatus(status)
	p.Amount = &amount
	p.CreatedAt = timestamppb.New(time.Unix(0, created))
	if refunded != nil {
		p.RefundedAt = timestamppb.New(time.Unix(0, *refunded))
	}
	return &p, requestHash, nil
}
