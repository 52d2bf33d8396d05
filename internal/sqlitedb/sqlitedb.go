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
// embedded [sql.DB]; writes go through [DB.InTx].
type DB struct {
	*sql.DB
	writer chan struct{} // one token: the right to write, shared per file in this process
}

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
	return &DB{DB: db, writer: token.(chan struct{})}, nil
}

// InTx runs fn in a write transaction and commits it if fn returns nil.
//
// Writers of this process queue for the file's write lock in Go first.
// SQLite's own busy handler would do, but it polls with sleeps of up to 100
// ms, which turns a queue of a dozen writers into a tail latency of half a
// second; a Go queue hands the lock over as soon as it is free. Writers in
// other processes still meet at SQLite's lock and its busy timeout.
func (db *DB) InTx(ctx context.Context, fn func(*sql.Tx) error) (err error) {
	select {
	case db.writer <- struct{}{}:
		defer func() { <-db.writer }()
	case <-ctx.Done():
		return fmt.Errorf("begin: %w", ctx.Err())
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}
