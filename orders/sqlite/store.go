// Package sqlite keeps the orders of the orders service in SQLite: an
// [orders.Store] on one file, with group commit (see internal/sqlitedb).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/scan"
	"github.com/connectshop/connectshop/internal/sqlitedb"
	"github.com/connectshop/connectshop/orders"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// migrations take the schema from one version to the next; see
// [sqlitedb.Open]. The order itself is stored as its protobuf encoding, so
// items and hops need no tables of their own; the columns beside it are what
// queries filter on.
var migrations = []string{
	// 1: the first version, created with IF NOT EXISTS because databases made
	// before versioning have it at version 0.
	`CREATE TABLE IF NOT EXISTS orders (
		seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- list order, page cursor
		id              TEXT NOT NULL UNIQUE,
		idempotency_key TEXT NOT NULL UNIQUE,
		request_hash    BLOB NOT NULL,
		payment_token   TEXT NOT NULL, -- test tokens only; a real shop stores a payment-method reference
		status          INTEGER NOT NULL,
		updated_at      INTEGER NOT NULL, -- Unix nanoseconds
		data            BLOB NOT NULL     -- orders.v1.Order, binary
	) STRICT;
	CREATE INDEX IF NOT EXISTS orders_pending ON orders (updated_at) WHERE status = 1;`,
	// 2: orders belong to customers, and idempotency keys are per customer.
	// Orders from before have no customer: nobody can see them.
	`CREATE TABLE orders_v2 (
		seq             INTEGER PRIMARY KEY AUTOINCREMENT,
		id              TEXT NOT NULL UNIQUE,
		customer_id     TEXT NOT NULL,
		idempotency_key TEXT NOT NULL,
		request_hash    BLOB NOT NULL,
		payment_token   TEXT NOT NULL,
		status          INTEGER NOT NULL,
		updated_at      INTEGER NOT NULL,
		data            BLOB NOT NULL,
		UNIQUE (customer_id, idempotency_key)
	) STRICT;
	INSERT INTO orders_v2 (seq, id, customer_id, idempotency_key, request_hash, payment_token, status, updated_at, data)
		SELECT seq, id, '', idempotency_key, request_hash, payment_token, status, updated_at, data FROM orders;
	DROP TABLE orders;
	ALTER TABLE orders_v2 RENAME TO orders;
	CREATE INDEX orders_pending ON orders (updated_at) WHERE status = 1;
	CREATE INDEX orders_by_customer ON orders (customer_id, seq);`,
	// 3: cancels are recorded (CANCELLING, 5) before their refund, and
	// settled like pending orders.
	`DROP INDEX orders_pending;
	CREATE INDEX orders_unsettled ON orders (updated_at) WHERE status IN (1, 5);`,
	// 4: every customer has a change feed for WatchOrders: the order as each
	// update left it, numbered per customer (order_feeds keeps the last
	// number, so pruning old changes never reuses one).
	`CREATE TABLE order_feeds (
		customer_id TEXT PRIMARY KEY,
		last_seq    INTEGER NOT NULL
	) STRICT, WITHOUT ROWID;
	CREATE TABLE order_changes (
		customer_id TEXT NOT NULL,
		seq         INTEGER NOT NULL,
		created_at  INTEGER NOT NULL, -- Unix nanoseconds, for pruning
		data        BLOB NOT NULL,    -- orders.v1.Order, binary
		PRIMARY KEY (customer_id, seq)
	) STRICT, WITHOUT ROWID;
	CREATE INDEX order_changes_by_time ON order_changes (created_at);`,
}

// Store keeps orders in SQLite.
//
// Only one orders instance uses a SQLite database, so [Store.Listen] hears
// the changes made through this Store only.
type Store struct {
	db        *sqlitedb.DB
	listeners listeners
}

var _ orders.Store = (*Store)(nil)

// Open opens or creates the orders database at path.
func Open(ctx context.Context, path string) (*Store, error) {
	db, err := sqlitedb.Open(ctx, path, migrations...)
	if err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Collectors returns the metrics of the database's group commits (see
// [sqlitedb.DB.Collectors]).
func (s *Store) Collectors() []prometheus.Collector { return s.db.Collectors() }

// Ping implements [orders.Store].
func (s *Store) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// Create implements [orders.Store].
func (s *Store) Create(ctx context.Context, key string, requestHash []byte, paymentToken string, o *ordersv1.Order) (*ordersv1.Order, error) {
	data, err := proto.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("create order: %w", err)
	}
	var stored *ordersv1.Order
	err = s.db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error {
		var prevHash, prevData []byte
		err := tx.QueryRowContext(ctx, `SELECT request_hash, data FROM orders WHERE customer_id = ? AND idempotency_key = ?`,
			o.GetCustomerId(), key).
			Scan(&prevHash, &prevData)
		switch {
		case err == nil:
			if string(prevHash) != string(requestHash) {
				return orders.ErrKeyReused
			}
			stored, err = unmarshalOrder(prevData)
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO orders
			(id, customer_id, idempotency_key, request_hash, payment_token, status, updated_at, data)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			o.GetId(), o.GetCustomerId(), key, requestHash, paymentToken, int64(o.GetStatus()), o.GetUpdatedAt().AsTime().UnixNano(), data)
		stored = o
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create order: %w", err)
	}
	return stored, nil
}

// Update implements [orders.Store].
func (s *Store) Update(ctx context.Context, id string, fn func(*ordersv1.Order) (bool, error)) (*ordersv1.Order, bool, error) {
	var (
		o       *ordersv1.Order
		changed bool
	)
	err := s.db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error {
		var err error
		if o, err = orderByID(ctx, tx.QueryRowContext, id); err != nil {
			return err
		}
		if changed, err = fn(o); err != nil || !changed {
			return err
		}
		data, err := proto.Marshal(o)
		if err != nil {
			return err
		}
		if _, err = tx.ExecContext(ctx, `UPDATE orders SET status = ?, updated_at = ?, data = ? WHERE id = ?`,
			int64(o.GetStatus()), o.GetUpdatedAt().AsTime().UnixNano(), data, id); err != nil {
			return err
		}
		return appendChange(ctx, tx, o.GetCustomerId(), data)
	})
	if err != nil {
		return nil, false, fmt.Errorf("update order %s: %w", id, err)
	}
	if changed {
		s.listeners.notify(o.GetCustomerId())
	}
	return o, changed, nil
}

// appendChange appends the order encoded as data to its customer's feed.
func appendChange(ctx context.Context, tx *sqlitedb.Tx, customerID string, data []byte) error {
	var seq int64
	err := tx.QueryRowContext(ctx, `INSERT INTO order_feeds (customer_id, last_seq) VALUES (?, 1)
		ON CONFLICT (customer_id) DO UPDATE SET last_seq = last_seq + 1 RETURNING last_seq`, customerID).Scan(&seq)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO order_changes (customer_id, seq, created_at, data) VALUES (?, ?, ?, ?)`,
		customerID, seq, time.Now().UnixNano(), data)
	return err
}

// DeletePending implements [orders.Store].
func (s *Store) DeletePending(ctx context.Context, id string) error {
	err := s.db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM orders WHERE id = ? AND status = ?`,
			id, int64(ordersv1.OrderStatus_ORDER_STATUS_PENDING))
		return err
	})
	if err != nil {
		return fmt.Errorf("delete order %s: %w", id, err)
	}
	return nil
}

// Order implements [orders.Store].
func (s *Store) Order(ctx context.Context, id string) (*ordersv1.Order, error) {
	o, err := orderByID(ctx, s.db.QueryRow, id)
	if err != nil {
		return nil, fmt.Errorf("get order %s: %w", id, err)
	}
	return o, nil
}

// List implements [orders.Store].
func (s *Store) List(ctx context.Context, customerID string, before int64, limit int) ([]*ordersv1.Order, int64, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, err := s.db.Query(ctx, `SELECT seq, data FROM orders WHERE customer_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?`,
		customerID, before, limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("list orders: %w", err)
	}
	defer rows.Close()
	list, next, err := scan.Page(rows, limit, scan.Message[ordersv1.Order])
	if err != nil {
		return nil, 0, fmt.Errorf("list orders: %w", err)
	}
	return list, next, nil
}

// Unsettled implements [orders.Store].
func (s *Store) Unsettled(ctx context.Context, cutoff time.Time) ([]orders.UnsettledOrder, error) {
	rows, err := s.db.Query(ctx, `SELECT payment_token, data FROM orders
		WHERE status IN (1, 5) AND updated_at < ? ORDER BY updated_at LIMIT 100`, cutoff.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("list unsettled orders: %w", err)
	}
	defer rows.Close()
	var list []orders.UnsettledOrder
	for rows.Next() {
		var (
			p    orders.UnsettledOrder
			data []byte
		)
		if err := rows.Scan(&p.PaymentToken, &data); err != nil {
			return nil, fmt.Errorf("list unsettled orders: %w", err)
		}
		if p.Order, err = unmarshalOrder(data); err != nil {
			return nil, fmt.Errorf("list unsettled orders: %w", err)
		}
		list = append(list, p)
	}
	return list, rows.Err()
}

// Changes implements [orders.Store].
func (s *Store) Changes(ctx context.Context, customerID string, after int64, limit int) ([]orders.Change, error) {
	rows, err := s.db.Query(ctx, `SELECT seq, data FROM order_changes WHERE customer_id = ? AND seq > ? ORDER BY seq LIMIT ?`,
		customerID, after, max(limit, 0))
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	defer rows.Close()
	changes, err := scan.All(rows, func(r scan.Rows) (orders.Change, error) {
		seq, o, err := scan.Message[ordersv1.Order](r)
		return orders.Change{Seq: seq, Order: o}, err
	})
	if err != nil {
		return nil, fmt.Errorf("read changes: %w", err)
	}
	return changes, nil
}

// LastChange implements [orders.Store].
func (s *Store) LastChange(ctx context.Context, customerID string) (int64, error) {
	var seq int64
	err := s.db.QueryRow(ctx, `SELECT last_seq FROM order_feeds WHERE customer_id = ?`, customerID).Scan(&seq)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read last change: %w", err)
	}
	return seq, nil
}

// PruneChanges implements [orders.Store].
func (s *Store) PruneChanges(ctx context.Context, cutoff time.Time) error {
	err := s.db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM order_changes WHERE created_at < ?`, cutoff.UnixNano())
		return err
	})
	if err != nil {
		return fmt.Errorf("prune changes: %w", err)
	}
	return nil
}

// Listen implements [orders.Store]: it hears the updates made through s.
func (s *Store) Listen(ctx context.Context, changed func(customerID string)) error {
	defer s.listeners.add(changed)()
	changed("")
	<-ctx.Done()
	return nil
}

// listeners are the callbacks of the Listen calls in progress.
type listeners struct {
	mu   sync.Mutex
	next int
	fns  map[int]func(string)
}

// add registers fn and returns the function that removes it.
func (l *listeners) add(fn func(string)) (remove func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fns == nil {
		l.fns = make(map[int]func(string))
	}
	id := l.next
	l.next++
	l.fns[id] = fn
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.fns, id)
	}
}

func (l *listeners) notify(customerID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, fn := range l.fns {
		fn(customerID)
	}
}

// orderByID reads an order with queryRow: the read pool's, or a write
// transaction's.
func orderByID(ctx context.Context, queryRow func(ctx context.Context, query string, args ...any) *sql.Row, id string) (*ordersv1.Order, error) {
	var data []byte
	err := queryRow(ctx, `SELECT data FROM orders WHERE id = ?`, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, orders.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return unmarshalOrder(data)
}

func unmarshalOrder(data []byte) (*ordersv1.Order, error) {
	return scan.Decode[ordersv1.Order](data)
}
