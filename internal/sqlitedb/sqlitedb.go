// Package sqlitedb opens SQLite databases the way every SQLite store here
// needs them: pure Go (no cgo), WAL, a busy timeout, full durability, reads on
// read-only connections, and every write through one queue that takes the
// write lock up front and commits in groups.
package sqlitedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is a handle on a SQLite database opened by [Open]. It offers reads
// ([DB.QueryRow], [DB.Query]) on connections that SQLite itself keeps
// read-only, and writes only through [DB.InTx], which queues them and commits
// them in groups: no write can bypass the queue.
type DB struct {
	file   *file
	shared bool // made by Share: the file's metrics are the opener's to export
	closed atomic.Bool
}

// file is what every handle on one opened database shares: a read-only
// connection pool, the writer's connection and its loop. Handles made with
// [DB.Share] (payments replicas running in one process) share one file;
// separate processes meet at SQLite's lock.
type file struct {
	reads  *sql.DB     // query_only connections
	writes *sql.DB     // one connection, used by the writer loop alone
	queue  chan *write // unbuffered: the writer loop takes what is waiting
	closed chan struct{}
	loop   sync.WaitGroup

	mu   sync.Mutex
	refs int // handles open

	// What the writer loop observes, exported by [DB.Collectors].
	commitSeconds, groupSize prometheus.Histogram

	stmtMu sync.Mutex
	stmts  map[string]*sql.Stmt // write statements, prepared once
}

// write is one caller's transaction function, waiting for its group.
type write struct {
	ctx  context.Context
	fn   func(context.Context, *Tx) error
	done chan error
}

// maxGroup bounds how many writes one commit carries.
const maxGroup = 64

// commitBuckets bound the commit duration histogram, in seconds: an fsync
// takes from tens of microseconds (a write cache) to tens of milliseconds.
var commitBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

// ErrClosed is returned by [DB.InTx] after [DB.Close].
var ErrClosed = errors.New("database closed")

// Open opens (creating if needed) the database file at path and brings its
// schema up to date: migrations[i] takes the schema from version i to i+1
// (SQLite's user_version). Each runs in its own write transaction that
// checks the version again, so processes opening one file at once apply each
// migration once.
//
// Every connection uses WAL, so readers never block the writer and several
// processes (payments replicas) can share one file; synchronous=FULL, so a
// committed transaction survives a crash or power loss; a 10 s busy timeout;
// and BEGIN IMMEDIATE for every write transaction, so writers of other
// processes queue for the lock instead of failing with SQLITE_BUSY halfway
// through.
//
// Each call opens the file afresh, with its own writer: to share one writer
// between handles in one process, use [DB.Share].
func Open(ctx context.Context, path string, migrations ...string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	writes, err := sql.Open("sqlite", dsn(abs, "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)")+"&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	// The writer loop alone writes, one transaction at a time; the second
	// connection only prepares a statement met for the first time while the
	// loop's transaction holds the first (see [file.stmt]).
	writes.SetMaxOpenConns(2)
	if err := migrate(ctx, writes, migrations); err != nil {
		writes.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	reads, err := sql.Open("sqlite", dsn(abs, "query_only(1)"))
	if err != nil {
		writes.Close()
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	f := &file{reads: reads, writes: writes, queue: make(chan *write), closed: make(chan struct{}), refs: 1,
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sqlite_commit_duration_seconds",
			Help:    "Time of each group commit, from BEGIN to the durable COMMIT (synchronous=FULL).",
			Buckets: commitBuckets,
		}),
		groupSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "sqlite_commit_group_size",
			Help:    "Writes carried by each group commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, maxGroup},
		}),
	}
	f.loop.Go(f.writeLoop)
	return &DB{file: f}, nil
}

// migrate applies the migrations the database has not had yet.
func migrate(ctx context.Context, db *sql.DB, migrations []string) error {
	for version, m := range migrations {
		err := func() error {
			tx, err := db.BeginTx(ctx, nil) // BEGIN IMMEDIATE: one migrator at a time
			if err != nil {
				return err
			}
			defer tx.Rollback()
			var current int
			if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&current); err != nil {
				return err
			}
			if current > version {
				return nil
			}
			if _, err := tx.ExecContext(ctx, m); err != nil {
				return fmt.Errorf("to version %d: %w", version+1, err)
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version+1)); err != nil {
				return err
			}
			return tx.Commit()
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// dsn returns the modernc.org/sqlite data source for the file at abs with a
// busy timeout and the given pragmas.
func dsn(abs string, pragmas ...string) string {
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return "file:" + abs + "?" + q.Encode()
}

// Share returns another handle on db's file, with the same connections and
// the same writer, to close on its own: the file closes with its last handle.
// Replicas of one service that run in one process share a file this way, so
// their writes are grouped by one writer instead of contending for SQLite's
// lock.
func (db *DB) Share() *DB {
	db.file.mu.Lock()
	defer db.file.mu.Unlock()
	db.file.refs++
	return &DB{file: db.file, shared: true}
}

// Close closes this handle. The last handle on a file waits for the group
// being committed and closes the file.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	f := db.file
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs--; f.refs > 0 {
		return nil
	}
	close(f.closed)
	f.loop.Wait()
	var errs []error
	for _, s := range f.stmts {
		errs = append(errs, s.Close())
	}
	return errors.Join(append(errs, f.writes.Close(), f.reads.Close())...)
}

// Tx is a write transaction of [DB.InTx]. Its statements are prepared once
// per file and reused by every later transaction: preparing each statement
// afresh took a tenth of the CPU of a whole order (14 statements, savepoints
// included, for its three writes).
type Tx struct {
	tx *sql.Tx
	f  *file
}

// ExecContext runs a statement that returns no rows, as [sql.Tx.ExecContext].
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := t.f.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return t.tx.StmtContext(ctx, s).ExecContext(ctx, args...)
}

// QueryRowContext runs a query that returns at most one row, as
// [sql.Tx.QueryRowContext].
func (t *Tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	s, err := t.f.stmt(ctx, query)
	if err != nil {
		return t.tx.QueryRowContext(ctx, query, args...) // fails the same way, in the Row
	}
	return t.tx.StmtContext(ctx, s).QueryRowContext(ctx, args...)
}

// stmt returns query prepared on the writer's connections. A statement met
// for the first time is prepared on a second connection, since the loop's
// transaction holds the first; database/sql then prepares it once on each
// connection a transaction uses, and reuses it from there on.
func (f *file) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	f.stmtMu.Lock()
	defer f.stmtMu.Unlock()
	if s, ok := f.stmts[query]; ok {
		return s, nil
	}
	s, err := f.writes.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if f.stmts == nil {
		f.stmts = make(map[string]*sql.Stmt)
	}
	f.stmts[query] = s
	return s, nil
}

// Ping reads the file's schema, to tell whether the database answers.
func (db *DB) Ping(ctx context.Context) error {
	var n int
	return db.file.reads.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_schema`).Scan(&n)
}

// QueryRow runs a query that reads one row. It sees every committed write.
func (db *DB) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return db.file.reads.QueryRowContext(ctx, query, args...)
}

// Query runs a query that reads rows. It sees every committed write.
func (db *DB) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return db.file.reads.QueryContext(ctx, query, args...)
}

// InTx runs fn in a write transaction and returns once it is committed: nil
// if fn returned nil and the commit succeeded, else the error. fn must not
// commit or roll back; it gets a context that its caller's cancellation does
// not reach, since fn shares its transaction with others (see below), and a
// statement interrupted by one caller would roll back all of them.
//
// Writes are committed in groups. With synchronous=FULL every commit waits
// for the disk; one writer loop per file takes every write that is waiting,
// runs each inside its own SAVEPOINT (so a write that fails is undone alone;
// a write alone in its group needs none, which saves two statements at low
// load), and commits them together: one disk wait for the group. Nobody's
// write is acknowledged before the commit that carries it is durable.
// Queueing in Go also spares writers SQLite's busy handler, which polls with
// sleeps of up to 100 ms.
func (db *DB) InTx(ctx context.Context, fn func(context.Context, *Tx) error) error {
	if db.closed.Load() {
		return ErrClosed
	}
	w := &write{ctx: context.WithoutCancel(ctx), fn: fn, done: make(chan error, 1)}
	select {
	case db.file.queue <- w:
	case <-ctx.Done():
		return fmt.Errorf("begin: %w", ctx.Err())
	case <-db.file.closed:
		return ErrClosed
	}
	return <-w.done // bounded: the group's statements are bounded by the busy timeout
}

func (f *file) writeLoop() {
	for {
		var group []*write
		select {
		case w := <-f.queue:
			group = append(group, w)
		case <-f.closed:
			return
		}
	collect:
		for len(group) < maxGroup {
			select {
			case w := <-f.queue:
				group = append(group, w)
			default:
				break collect
			}
		}
		f.commit(group)
	}
}

// commit runs a group of writes in one transaction and tells each its result.
func (f *file) commit(group []*write) {
	start := time.Now()
	results := make([]error, len(group))
	err := func() (err error) {
		sqlTx, err := f.writes.BeginTx(context.Background(), nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer func() {
			if err != nil {
				err = errors.Join(err, ignoreDone(sqlTx.Rollback()))
			}
		}()
		tx := &Tx{tx: sqlTx, f: f}
		if len(group) == 1 {
			// A write alone needs no savepoint: if it fails, the whole
			// transaction is rolled back, and its error is its own.
			if results[0] = run(group[0], tx); results[0] != nil {
				return results[0]
			}
			return commitTx(sqlTx)
		}
		ctx := context.Background()
		for i, w := range group {
			if _, err := tx.ExecContext(ctx, "SAVEPOINT write"); err != nil {
				return err
			}
			if results[i] = run(w, tx); results[i] != nil {
				if _, err := tx.ExecContext(ctx, "ROLLBACK TO write"); err != nil {
					return err
				}
			}
			if _, err := tx.ExecContext(ctx, "RELEASE write"); err != nil {
				return err
			}
		}
		return commitTx(sqlTx)
	}()
	f.groupSize.Observe(float64(len(group)))
	f.commitSeconds.Observe(time.Since(start).Seconds())
	for i, w := range group {
		if results[i] == nil {
			results[i] = err
		}
		w.done <- results[i]
	}
}

func commitTx(tx *sql.Tx) error {
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Collectors returns the metrics of the file's writer loop, to register
// where the server that uses it exports its metrics:
// sqlite_commit_duration_seconds (a group's transaction, from BEGIN to the
// durable COMMIT) and sqlite_commit_group_size (writes per commit). Handles
// made with [DB.Share] return none: one writer loop serves them all, so it
// is exported once, by the server that holds the handle [Open] returned
// (under their own labels, three replicas would show the same commits
// three times).
func (db *DB) Collectors() []prometheus.Collector {
	if db.shared {
		return nil
	}
	return []prometheus.Collector{db.file.commitSeconds, db.file.groupSize}
}

// run calls one write's fn, turning a panic into its error so that one bad
// write cannot stop the loop that every writer waits on.
func run(w *write, tx *Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in transaction: %v", p)
		}
	}()
	return w.fn(w.ctx, tx)
}

func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}
