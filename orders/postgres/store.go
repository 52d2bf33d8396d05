// Package postgres keeps the orders of the orders service in PostgreSQL: an
// [orders.Store] that several orders instances, on several hosts, share.
//
// Use it for multi-host deployments, where orders instances cannot share a
// SQLite file; orders/sqlite stays the default, embedded and with nothing to
// run beside the service. Both pass the same suite (orders/storetest) and
// behave alike: orders are stored as their protobuf encoding beside the
// columns queries filter on, idempotency keys are unique per customer in the
// database, and an update holds the order's row lock.
//
// [Open] applies the schema's migrations first, safely when instances start
// together (see internal/pgdb).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/pgdb"
	"github.com/connectshop/connectshop/internal/scan"
	"github.com/connectshop/connectshop/orders"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
)

// schema is the orders schema, migration by migration. The order itself is
// stored as its protobuf encoding, so items and hops need no tables of their
// own; the columns beside it are what queries filter on. Times are Unix
// nanoseconds, as in orders/sqlite: the cutoff of [Store.Unsettled] compares
// them exactly as the orders carry them.
var schema = pgdb.Schema{
	Service: "orders",
	LockKey: 0x6f72646572730000, // "orders\0\0"
	Migrations: []string{
		// 1: the schema of orders/sqlite at its version 3.
		`CREATE TABLE orders (
			seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, -- list order, page cursor
			id              text   NOT NULL UNIQUE,
			customer_id     text   NOT NULL,
			idempotency_key text   NOT NULL,
			request_hash    bytea  NOT NULL,
			payment_token   text   NOT NULL, -- test tokens only; a real shop stores a payment-method reference
			status          integer NOT NULL,
			updated_at      bigint NOT NULL, -- Unix nanoseconds
			data            bytea  NOT NULL, -- orders.v1.Order, binary
			UNIQUE (customer_id, idempotency_key)
		);
		CREATE INDEX orders_by_customer ON orders (customer_id, seq);
		CREATE INDEX orders_unsettled ON orders (updated_at) WHERE status IN (1, 5);`,
		// 2: unsettled orders can be claimed for a while by one instance's
		// recovery loop (see claimUnsettled).
		`ALTER TABLE orders ADD COLUMN claimed_until bigint; -- Unix nanoseconds, NULL unless claimed`,
		// 3: every customer has a change feed for WatchOrders: the order as
		// each update left it, numbered per customer. The order_feeds row
		// holds the last number; taking the next one locks it until commit,
		// so one customer's changes commit in the order of their numbers, on
		// every instance, and pruning old changes never reuses a number. Each
		// change NOTIFYs (at commit) the channel "<schema>.order_changes"
		// with its customer id, which wakes the watchers of every instance
		// (until migration 4).
		`CREATE TABLE order_feeds (
			customer_id text   PRIMARY KEY,
			last_seq    bigint NOT NULL
		);
		CREATE TABLE order_changes (
			customer_id text   NOT NULL,
			seq         bigint NOT NULL,
			created_at  bigint NOT NULL, -- Unix nanoseconds, for pruning
			data        bytea  NOT NULL, -- orders.v1.Order, binary
			PRIMARY KEY (customer_id, seq)
		);
		CREATE INDEX order_changes_by_time ON order_changes (created_at);
		CREATE FUNCTION notify_order_change() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM pg_notify(TG_TABLE_SCHEMA || '.order_changes', NEW.customer_id);
			RETURN NULL;
		END $$;
		CREATE TRIGGER order_changes_notify AFTER INSERT ON order_changes
			FOR EACH ROW EXECUTE FUNCTION notify_order_change();`,
		// 4: Update notifies after its commit instead (see Store.notify): a
		// NOTIFY inside the transaction holds PostgreSQL's database-wide
		// notify lock through the commit's WAL flush, so every order update
		// committed one at a time. While instances of before and after this
		// migration run together (a rolling update), the older ones' updates
		// wake nobody; watchers catch up at their next wake-up.
		`DROP TRIGGER order_changes_notify ON order_changes;
		DROP FUNCTION notify_order_change();`,
	},
}

// Statuses the queries name.
const (
	statusPending    = int32(ordersv1.OrderStatus_ORDER_STATUS_PENDING)
	statusCancelling = int32(ordersv1.OrderStatus_ORDER_STATUS_CANCELLING)
)

// maxCreateAttempts bounds the inserts of one Create, each of which found the
// key taken and then free again.
const maxCreateAttempts = 5

// unsettledLimit is how many orders [Store.Unsettled] returns at most.
const unsettledLimit = 100

// Store keeps orders in PostgreSQL. Any number of stores, in any number of
// processes, may share one database.
type Store struct {
	pool      *pgxpool.Pool
	wakeEvery time.Duration // missedWakeInterval; shorter in tests
}

var _ orders.Store = (*Store)(nil)

// Open connects to the database at url (postgres://user@host:port/db?…, with
// pgx's settings such as pool_max_conns; see [pgdb.Open]) and brings the
// orders schema up to date. Its tables are in the first schema of the
// search_path.
func Open(ctx context.Context, url string) (*Store, error) {
	pool, err := pgdb.Open(ctx, url, schema)
	if err != nil {
		return nil, err
	}
	return &Store{pool: pool, wakeEvery: missedWakeInterval}, nil
}

// Close closes the connections, waiting for those in use. Closing again does
// nothing (pgxpool closes once).
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// Ping implements [orders.Store].
func (s *Store) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }

// Create implements [orders.Store].
//
// The unique (customer_id, idempotency_key) decides which order a key gets,
// without an explicit transaction: the INSERT ... ON CONFLICT DO NOTHING is
// one atomic statement. Under a concurrent create with the same key it waits
// for the other's transaction, and inserts nothing if that committed; the
// SELECT after it, a statement with a new snapshot (READ COMMITTED), then
// sees the winner. If the winner was deleted in between (DeletePending), the
// key is free again and the insert is tried again.
func (s *Store) Create(ctx context.Context, key string, requestHash []byte, paymentToken string, o *ordersv1.Order) (*ordersv1.Order, error) {
	data, err := proto.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("create order: %w", err)
	}
	for attempt := 0; ; attempt++ {
		if attempt == maxCreateAttempts {
			return nil, fmt.Errorf("create order: key %s taken and freed %d times in a row", key, attempt)
		}
		tag, err := s.pool.Exec(ctx, `INSERT INTO orders
			(id, customer_id, idempotency_key, request_hash, payment_token, status, updated_at, data)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (customer_id, idempotency_key) DO NOTHING`,
			o.GetId(), o.GetCustomerId(), key, requestHash, paymentToken, int32(o.GetStatus()), o.GetUpdatedAt().AsTime().UnixNano(), data)
		if err != nil {
			return nil, fmt.Errorf("create order: %w", err)
		}
		if tag.RowsAffected() == 1 {
			return o, nil
		}
		var prevHash, prevData []byte
		err = s.pool.QueryRow(ctx, `SELECT request_hash, data FROM orders WHERE customer_id = $1 AND idempotency_key = $2`,
			o.GetCustomerId(), key).Scan(&prevHash, &prevData)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			continue // deleted since the insert: the key is free again
		case err != nil:
			return nil, fmt.Errorf("create order: %w", err)
		case string(prevHash) != string(requestHash):
			return nil, fmt.Errorf("create order: %w", orders.ErrKeyReused)
		}
		prev, err := unmarshalOrder(prevData)
		if err != nil {
			return nil, fmt.Errorf("create order: %w", err)
		}
		return prev, nil
	}
}

// Update implements [orders.Store]. It reads the order with SELECT ... FOR
// UPDATE, so concurrent updates of one order, from any instance, take turns:
// each fn sees what the one before stored.
func (s *Store) Update(ctx context.Context, id string, fn func(*ordersv1.Order) (bool, error)) (*ordersv1.Order, bool, error) {
	var (
		o       *ordersv1.Order
		changed bool
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var data []byte
		err := tx.QueryRow(ctx, `SELECT data FROM orders WHERE id = $1 FOR UPDATE`, id).Scan(&data)
		if errors.Is(err, pgx.ErrNoRows) {
			return orders.ErrNotFound
		}
		if err != nil {
			return err
		}
		if o, err = unmarshalOrder(data); err != nil {
			return err
		}
		if changed, err = fn(o); err != nil || !changed {
			return err
		}
		if data, err = proto.Marshal(o); err != nil {
			return err
		}
		// One statement updates the order and appends it to the feed.
		_, err = tx.Exec(ctx, `WITH updated AS (
				UPDATE orders SET status = $1, updated_at = $2, data = $3 WHERE id = $4
			), feed AS (
				INSERT INTO order_feeds (customer_id, last_seq) VALUES ($5, 1)
				ON CONFLICT (customer_id) DO UPDATE SET last_seq = order_feeds.last_seq + 1
				RETURNING last_seq
			)
			INSERT INTO order_changes (customer_id, seq, created_at, data) SELECT $5, last_seq, $6, $3 FROM feed`,
			int32(o.GetStatus()), o.GetUpdatedAt().AsTime().UnixNano(), data, id, o.GetCustomerId(), time.Now().UnixNano())
		return err
	})
	if err != nil {
		return nil, false, fmt.Errorf("update order %s: %w", id, err)
	}
	if changed {
		s.notify(ctx, o.GetCustomerId())
	}
	return o, changed, nil
}

// notifyTimeout bounds the NOTIFY that follows an update.
const notifyTimeout = time.Second

// notify tells the [Store.Listen] of every instance that customer's feed
// grew: a NOTIFY of its own, after the update committed. Inside the update's
// transaction, PostgreSQL would hold its database-wide notify lock from the
// NOTIFY through the commit's WAL flush, and all order updates would commit
// one at a time: BenchmarkCreateUpdate at 32 callers took 1.6× as long per
// order with it. Alone, the NOTIFY writes no WAL and holds the lock for an
// instant.
//
// A NOTIFY that fails, or never comes because the process died after the
// commit, loses a wake-up, not a change: every Listen also wakes all its
// watchers every [missedWakeInterval], and they read their feeds.
func (s *Store) notify(ctx context.Context, customerID string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), notifyTimeout)
	defer cancel()
	_, _ = s.pool.Exec(ctx, `SELECT pg_notify(current_schema() || '.order_changes', $1)`, customerID)
}

// DeletePending implements [orders.Store].
func (s *Store) DeletePending(ctx context.Context, id string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM orders WHERE id = $1 AND status = $2`, id, statusPending); err != nil {
		return fmt.Errorf("delete order %s: %w", id, err)
	}
	return nil
}

// Order implements [orders.Store].
func (s *Store) Order(ctx context.Context, id string) (*ordersv1.Order, error) {
	var data []byte
	err := s.pool.QueryRow(ctx, `SELECT data FROM orders WHERE id = $1`, id).Scan(&data)
	if errors.Is(err, pgx.ErrNoRows) {
		err = orders.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get order %s: %w", id, err)
	}
	o, err := unmarshalOrder(data)
	if err != nil {
		return nil, fmt.Errorf("get order %s: %w", id, err)
	}
	return o, nil
}

// List implements [orders.Store]. Pages follow seq, taken from a sequence
// when an order is inserted. Concurrent creates of one customer may commit
// out of seq order, so a page read at that moment can miss an order that
// commits just after it with a lower seq; the next List from the start shows
// it. (orders/sqlite commits one write at a time and cannot.)
func (s *Store) List(ctx context.Context, customerID string, before int64, limit int) ([]*ordersv1.Order, int64, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	limit = max(limit, 0)
	rows, err := s.pool.Query(ctx, `SELECT seq, data FROM orders WHERE customer_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`,
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

// Changes implements [orders.Store].
func (s *Store) Changes(ctx context.Context, customerID string, after int64, limit int) ([]orders.Change, error) {
	rows, err := s.pool.Query(ctx, `SELECT seq, data FROM order_changes WHERE customer_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
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
	err := s.pool.QueryRow(ctx, `SELECT last_seq FROM order_feeds WHERE customer_id = $1`, customerID).Scan(&seq)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return 0, fmt.Errorf("read last change: %w", err)
	}
	return seq, nil
}

// PruneChanges implements [orders.Store].
func (s *Store) PruneChanges(ctx context.Context, cutoff time.Time) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM order_changes WHERE created_at < $1`, cutoff.UnixNano()); err != nil {
		return fmt.Errorf("prune changes: %w", err)
	}
	return nil
}

// missedWakeInterval is how often [Store.Listen] wakes every watcher, in
// case a NOTIFY was lost (see [Store.notify]): the longest a watcher can
// wait for a change whose wake-up never came. Each wake-up costs a watcher
// one read of its feed.
const missedWakeInterval = 5 * time.Second

// Listen implements [orders.Store] with LISTEN on a connection of its own,
// taken out of the pool for good: no other use of the pool should inherit a
// listening connection. Besides each change, it calls changed("") every
// [missedWakeInterval].
func (s *Store) Listen(ctx context.Context, changed func(customerID string)) error {
	pooled, err := s.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("listen for changes: %w", err)
	}
	conn := pooled.Hijack()
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	var channel string
	if err := conn.QueryRow(ctx, `SELECT current_schema() || '.order_changes'`).Scan(&channel); err != nil {
		return fmt.Errorf("listen for changes: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return fmt.Errorf("listen for changes: %w", err)
	}
	changed("")
	stopWaking := make(chan struct{})
	var waking sync.WaitGroup
	defer func() {
		close(stopWaking)
		waking.Wait() // no call of changed after Listen returns
	}()
	waking.Go(func() {
		ticker := time.NewTicker(s.wakeEvery)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				changed("")
			case <-stopWaking:
				return
			}
		}
	})
	for {
		n, err := conn.WaitForNotification(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("listen for changes: %w", err)
		}
		changed(n.Payload)
	}
}

// unsettledLease is how long an orders instance holds the unsettled orders
// it took, before another instance may take them: longer than settling a
// batch takes, and no longer than a recovery period.
const unsettledLease = 30 * time.Second

// Unsettled implements [orders.Store]. Several orders instances share the
// database and each runs the recovery loop, so every call claims the orders
// it returns for [unsettledLease] (see claimUnsettled): concurrent loops
// settle disjoint sets, and the orders of an instance that stopped half-way
// go to another once the claim expires. (Settling an order twice would be
// safe, as every step is idempotent, but it is wasted work.)
func (s *Store) Unsettled(ctx context.Context, cutoff time.Time) ([]orders.UnsettledOrder, error) {
	return s.claimUnsettled(ctx, cutoff, time.Now(), unsettledLease)
}

// claimUnsettled is [Store.Unsettled] for recovery loops of several
// instances: it returns unsettled orders that nobody has claimed, or whose
// claim has expired, and claims them until now+lease, so that concurrent
// callers get disjoint sets (FOR UPDATE SKIP LOCKED: a caller never waits
// for another's claim). A claim is not released: it expires, which lets
// another instance take over the orders of one that stopped half-way. The
// lease should exceed the time it takes to settle a batch.
func (s *Store) claimUnsettled(ctx context.Context, cutoff, now time.Time, lease time.Duration) ([]orders.UnsettledOrder, error) {
	rows, err := s.pool.Query(ctx, `UPDATE orders SET claimed_until = $5 WHERE seq IN (
			SELECT seq FROM orders
			WHERE status IN ($1, $2) AND updated_at < $3 AND (claimed_until IS NULL OR claimed_until <= $4)
			ORDER BY updated_at, seq LIMIT $6
			FOR UPDATE SKIP LOCKED)
		RETURNING payment_token, data`,
		statusPending, statusCancelling, cutoff.UnixNano(), now.UnixNano(), now.Add(lease).UnixNano(), unsettledLimit)
	if err != nil {
		return nil, fmt.Errorf("claim unsettled orders: %w", err)
	}
	list, err := scanUnsettled(rows)
	if err != nil {
		return nil, fmt.Errorf("claim unsettled orders: %w", err)
	}
	// RETURNING keeps no order: oldest first, as Unsettled.
	slices.SortStableFunc(list, func(a, b orders.UnsettledOrder) int {
		return a.Order.GetUpdatedAt().AsTime().Compare(b.Order.GetUpdatedAt().AsTime())
	})
	return list, nil
}

func scanUnsettled(rows pgx.Rows) ([]orders.UnsettledOrder, error) {
	defer rows.Close()
	var list []orders.UnsettledOrder
	for rows.Next() {
		var (
			u    orders.UnsettledOrder
			data []byte
			err  error
		)
		if err := rows.Scan(&u.PaymentToken, &data); err != nil {
			return nil, err
		}
		if u.Order, err = unmarshalOrder(data); err != nil {
			return nil, err
		}
		list = append(list, u)
	}
	rows.Close()
	return list, rows.Err()
}

func unmarshalOrder(data []byte) (*ordersv1.Order, error) {
	return scan.Decode[ordersv1.Order](data)
}
