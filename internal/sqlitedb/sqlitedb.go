// Package sqlitedb opens SQLite databases the way every store here needs
// them: pure Go (no cgo), WAL, a busy timeout, full durability, and write
// transactions that take the write lock up front.
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

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is a SQLite database opened by [Open]. Reads go straight to the
// embedded [sql.DB]; writes go through [DB.InTx], which commits them in
// groups.
type DB struct {
	*sql.DB
	writer chan struct{} // one token: the right to write, shared per file in this process
	queue  chan *write   // unbuffered: the writer loop takes what is waiting
	closed chan struct{}
	loop   sync.WaitGroup
}

// write is one caller's transaction function, waiting for its group.
type write struct {
	ctx  context.Context
	fn   func(context.Context, *sql.Tx) error
	done chan error
}

// maxGroup bounds how many writes one commit carries.
const maxGroup = 64

// ErrClosed is returned by [DB.InTx] after [DB.Close].
var ErrClosed = errors.New("database closed")

// writers maps a database file's absolute path to its writer token, so that
// every handle on one file in this process (the payments replicas of
// cmd/shop) takes turns in Go.
var writers sync.Map

// Open opens (creating if needed) the database file at path and applies
// schema, which must be idempotent (CREATE ... IF NOT EXISTS).
//
// Every connection uses WAL, so readers never block the writer and several
// processes (payments replicas) can share one file; synchronous=FULL, so a
// committed transaction survives a crash or power loss; a 10 s busy timeout;
// and BEGIN IMMEDIATE for every transaction, so concurrent writers queue for
// the lock instead of failing with SQLITE_BUSY halfway through.
func Open(ctx context.Context, path, schema string) (*DB, error) {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("open database: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	if _, err := db.ExecContext(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("apply schema to %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	token, _ := writers.LoadOrStore(abs, make(chan struct{}, 1))
	d := &DB{DB: db, writer: token.(chan struct{}), queue: make(chan *write), closed: make(chan struct{})}
	d.loop.Go(d.writeLoop)
	return d, nil
}

// Close stops taking writes, waits for the group being committed, and closes
// the database.
func (db *DB) Close() error {
	select {
	case <-db.closed:
	default:
		close(db.closed)
	}
	db.loop.Wait()
	return db.DB.Close()
}

// InTx runs fn in a write transaction and returns once it is committed: nil
// if fn returned nil and the commit succeeded, else the error. fn must not
// commit or roll back; it gets a context that its caller's cancellation does
// not reach, since fn shares its transaction with others (see below), and a
// statement interrupted by one caller would roll back all of them.
//
// Writes are committed in groups. With synchronous=FULL every commit waits
// for the disk, about a millisecond here; one writer loop per database takes
// every write that is waiting, runs each inside its own SAVEPOINT (so a write
// that fails is undone alone), and commits them together: one disk wait for
// the group. Nobody's write is acknowledged before the commit that carries it
// is durable. Handles on one file in this process (the payments replicas of
// cmd/shop) also take turns in Go first: SQLite's busy handler polls with
// sleeps of up to 100 ms. Writers in other processes meet at SQLite's lock
// and busy timeout.
func (db *DB) InTx(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
	w := &write{ctx: context.WithoutCancel(ctx), fn: fn, done: make(chan error, 1)}
	select {
	case db.queue <- w:
	case <-ctx.Done():
		return fmt.Errorf("begin: %w", ctx.Err())
	case <-db.closed:
		return ErrClosed
	}
	return <-w.done // bounded: the group's statements are bounded by the busy timeout
}

func (db *DB) writeLoop() {
	for {
		var group []*write
		select {
		case w := <-db.queue:
			group = append(group, w)
		case <-db.closed:
			return
		}
	collect:
		for len(group) < maxGroup {
			select {
			case w := <-db.queue:
				group = append(group, w)
			default:
				break collect
			}
		}
		db.commit(group)
	}
}

// commit runs a group of writes in one transaction and tells each its result.
func (db *DB) commit(group []*write) {
	db.writer <- struct{}{}
	defer func() { <-db.writer }()
	results := make([]error, len(group))
	err := func() (err error) {
		tx, err := db.BeginTx(context.Background(), nil)
		if err != nil {
			return fmt.Errorf("begin: %w", err)
		}
		defer func() {
			if err != nil {
				err = errors.Join(err, ignoreDone(tx.Rollback()))
			}
		}()
		for i, w := range group {
			if _, err := tx.Exec("SAVEPOINT write"); err != nil {
				return err
			}
			if results[i] = run(w, tx); results[i] != nil {
				if _, err := tx.Exec("ROLLBACK TO write"); err != nil {
					return err
				}
			}
			if _, err := tx.Exec("RELEASE write"); err != nil {
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("commit: %w", err)
		}
		return nil
	}()
	for i, w := range group {
		if results[i] == nil {
			results[i] = err
		}
		w.done <- results[i]
	}
}

// run calls one write's fn, turning a panic into its error so that one bad
// write cannot stop the loop that every writer waits on.
func run(w *write, tx *sql.Tx) (err error) {
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
