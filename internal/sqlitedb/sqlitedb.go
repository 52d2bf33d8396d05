// Package sqlitedb opens SQLite databases the way every store here needs
// them: pure Go (no cgo), WAL, a busy timeout, full durability, write
// transactions that take the write lock up front, and group commit.
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

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// DB is a handle on a SQLite database opened by [Open]. Reads go straight to
// the embedded [sql.DB]; writes go through [DB.InTx], which commits them in
// groups.
type DB struct {
	*sql.DB
	file   *file
	closed atomic.Bool
}

// file is what every handle on one database file in this process shares: one
// connection pool and one writer loop. (The payments replicas of cmd/shop run
// in one process and share a file; separate processes meet at SQLite's lock.)
type file struct {
	path   string
	db     *sql.DB
	queue  chan *write // unbuffered: the writer loop takes what is waiting
	closed chan struct{}
	loop   sync.WaitGroup
	refs   int // handles open, under filesMu
}

var (
	filesMu sync.Mutex
	files   = make(map[string]*file) // by absolute path
)

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

// Open opens (creating if needed) the database file at path and applies
// schema, which must be idempotent (CREATE ... IF NOT EXISTS).
//
// Every connection uses WAL, so readers never block the writer and several
// processes (payments replicas) can share one file; synchronous=FULL, so a
// committed transaction survives a crash or power loss; a 10 s busy timeout;
// and BEGIN IMMEDIATE for every transaction, so writers of other processes
// queue for the lock instead of failing with SQLITE_BUSY halfway through.
func Open(ctx context.Context, path, schema string) (*DB, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	filesMu.Lock()
	defer filesMu.Unlock()
	f := files[abs]
	if f == nil {
		if f, err = openFile(abs); err != nil {
			return nil, err
		}
		files[abs] = f
	}
	if _, err := f.db.ExecContext(ctx, schema); err != nil {
		if f.refs == 0 {
			f.close()
		}
		return nil, fmt.Errorf("apply schema to %s: %w", path, err)
	}
	f.refs++
	return &DB{DB: f.db, file: f}, nil
}

func openFile(abs string) (*file, error) {
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+abs+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", abs, err)
	}
	f := &file{path: abs, db: db, queue: make(chan *write), closed: make(chan struct{})}
	f.loop.Go(f.writeLoop)
	return f, nil
}

// close stops the writer loop and the pool; filesMu must be held.
func (f *file) close() error {
	close(f.closed)
	f.loop.Wait()
	delete(files, f.path)
	return f.db.Close()
}

// Close closes this handle. The last handle on a file waits for the group
// being committed and closes the file.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	filesMu.Lock()
	defer filesMu.Unlock()
	if db.file.refs--; db.file.refs == 0 {
		return db.file.close()
	}
	return nil
}

// InTx runs fn in a write transaction and returns once it is committed: nil
// if fn returned nil and the commit succeeded, else the error. fn must not
// commit or roll back; it gets a context that its caller's cancellation does
// not reach, since fn shares its transaction with others (see below), and a
// statement interrupted by one caller would roll back all of them.
//
// Writes are committed in groups. With synchronous=FULL every commit waits
// for the disk; one writer loop per file takes every write that is waiting,
// runs each inside its own SAVEPOINT (so a write that fails is undone alone),
// and commits them together: one disk wait for the group. Nobody's write is
// acknowledged before the commit that carries it is durable. Queueing in Go
// also spares writers SQLite's busy handler, which polls with sleeps of up to
// 100 ms.
func (db *DB) InTx(ctx context.Context, fn func(context.Context, *sql.Tx) error) error {
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
	results := make([]error, len(group))
	err := func() (err error) {
		tx, err := f.db.BeginTx(context.Background(), nil)
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
