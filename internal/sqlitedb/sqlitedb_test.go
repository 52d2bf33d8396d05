package sqlitedb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/connectshop/connectshop/internal/sqlitedb"
)

const schema = `CREATE TABLE IF NOT EXISTS counter (n INTEGER NOT NULL);
INSERT INTO counter SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM counter);`

// Two writers on one file: a handle from Open, and a separate pool opened
// the way another process would (same pragmas, its own connections).
// Read-modify-write transactions from both must neither fail with
// SQLITE_BUSY nor lose an update: BEGIN IMMEDIATE and the busy timeout
// serialise them.
func TestConcurrentWritersFromTwoProcessesQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "shared.db")
	db, err := sqlitedb.Open(ctx, path, schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	other, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	// increment runs in a transaction of db or of the other handle.
	increment := func(ctx context.Context, tx interface {
		QueryRowContext(context.Context, string, ...any) *sql.Row
		ExecContext(context.Context, string, ...any) (sql.Result, error)
	}) error {
		var n int
		if err := tx.QueryRowContext(ctx, "SELECT n FROM counter").Scan(&n); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "UPDATE counter SET n = ?", n+1)
		return err
	}
	const perWriter = 50
	var wg sync.WaitGroup
	errs := make(chan error, 8*perWriter)
	for w := range 8 {
		wg.Go(func() {
			for range perWriter {
				if w%2 == 0 {
					errs <- db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error { return increment(ctx, tx) })
					continue
				}
				tx, err := other.BeginTx(ctx, nil)
				if err == nil {
					if err = increment(ctx, tx); err == nil {
						err = tx.Commit()
					} else {
						tx.Rollback()
					}
				}
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT n FROM counter").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 8*perWriter {
		t.Fatalf("got counter %d, want %d", n, 8*perWriter)
	}
	var mode string
	if err := other.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("got journal_mode %q (err %v), want wal", mode, err)
	}
}

// Handles made with Share use one file: closing one leaves the others
// working, and the last one closes the file.
func TestSharedHandles(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "h.db")
	a, err := sqlitedb.Open(ctx, path, schema)
	if err != nil {
		t.Fatal(err)
	}
	b := a.Share()
	increment := func(ctx context.Context, tx *sqlitedb.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE counter SET n = n + 1")
		return err
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.InTx(ctx, increment); !errors.Is(err, sqlitedb.ErrClosed) {
		t.Fatalf("closed handle: got %v, want ErrClosed", err)
	}
	if err := b.InTx(ctx, increment); err != nil {
		t.Fatalf("other handle after one closed: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := sqlitedb.Open(ctx, path, schema) // opens the file afresh
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var n int
	if err := c.QueryRow(ctx, "SELECT n FROM counter").Scan(&n); err != nil || n != 1 {
		t.Fatalf("reopened: got n=%d (err %v), want 1", n, err)
	}
}

// Reads cannot write: the only way to change the database is InTx, whose
// writes are queued and grouped.
func TestReadsCannotWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlitedb.Open(ctx, filepath.Join(t.TempDir(), "r.db"), schema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	err = db.QueryRow(ctx, "UPDATE counter SET n = 7 RETURNING n").Scan(&n)
	if err == nil {
		t.Fatal("an UPDATE through QueryRow succeeded, want it refused")
	}
	if err := db.QueryRow(ctx, "SELECT n FROM counter").Scan(&n); err != nil || n != 0 {
		t.Fatalf("got n=%d (err %v), want 0", n, err)
	}
}

func TestInTxRollsBackOnError(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlitedb.Open(ctx, filepath.Join(t.TempDir(), "x.db"), schema)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	boom := errors.New("boom")
	err = db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE counter SET n = 42"); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	var n int
	if err := db.QueryRow(ctx, "SELECT n FROM counter").Scan(&n); err != nil || n != 0 {
		t.Fatalf("got n=%d (err %v), want 0 after rollback", n, err)
	}
}

// Writes that share a group commit stand or fall alone: a failing write is
// undone, its neighbours are committed.
func TestGroupedWritesFailAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := sqlitedb.Open(ctx, filepath.Join(t.TempDir(), "g.db"), `CREATE TABLE IF NOT EXISTS rows (n INTEGER NOT NULL);`)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	boom := errors.New("boom")
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Go(func() {
			errs[i] = db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error {
				if _, err := tx.ExecContext(ctx, "INSERT INTO rows (n) VALUES (?)", i); err != nil {
					return err
				}
				if i%2 == 1 {
					return boom // after writing: the write must be undone
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if want := i%2 == 1; errors.Is(err, boom) != want || (!want && err != nil) {
			t.Fatalf("write %d: got %v", i, err)
		}
	}
	var n, odd int
	if err := db.QueryRow(ctx, "SELECT count(*), count(CASE WHEN n % 2 = 1 THEN 1 END) FROM rows").Scan(&n, &odd); err != nil {
		t.Fatal(err)
	}
	if n != 100 || odd != 0 {
		t.Fatalf("got %d rows (%d from failed writes), want 100 (0)", n, odd)
	}
	db.Close()
	if err := db.InTx(ctx, func(context.Context, *sqlitedb.Tx) error { return nil }); !errors.Is(err, sqlitedb.ErrClosed) {
		t.Fatalf("InTx after Close: got %v, want ErrClosed", err)
	}
}

// Migrations run once each, in order, also when processes open a new file at
// the same moment; a later version adds only what is new.
func TestMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "m.db")
	v1 := []string{`CREATE TABLE log (n INTEGER NOT NULL)`, `INSERT INTO log VALUES (1)`}
	var wg sync.WaitGroup
	dbs := make([]*sqlitedb.DB, 4)
	errs := make([]error, len(dbs))
	for i := range dbs {
		wg.Go(func() { dbs[i], errs[i] = sqlitedb.Open(ctx, path, v1...) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		dbs[i].Close()
	}
	db, err := sqlitedb.Open(ctx, path, append(v1, `INSERT INTO log VALUES (2)`)...)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, sum, version int
	if err := db.QueryRow(ctx, "SELECT count(*), sum(n) FROM log").Scan(&n, &sum); err != nil || n != 2 || sum != 3 {
		t.Fatalf("got %d rows summing to %d (err %v), want rows 1 and 2", n, sum, err)
	}
	if err := db.QueryRow(ctx, "PRAGMA user_version").Scan(&version); err != nil || version != 3 {
		t.Fatalf("got version %d (err %v), want 3", version, err)
	}
}

// BenchmarkInTx measures one small write (an UPDATE) through the writer
// loop, durable (synchronous=FULL), from one caller (every group holds one
// write) and from 32 (groups form while a commit waits for the disk).
//
//	go test -run '^$' -bench InTx -benchtime 3s ./internal/sqlitedb/
func BenchmarkInTx(b *testing.B) {
	for _, callers := range []int{1, 32} {
		b.Run(fmt.Sprintf("callers=%d", callers), func(b *testing.B) {
			ctx := context.Background()
			db, err := sqlitedb.Open(ctx, filepath.Join(b.TempDir(), "b.db"), schema)
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range callers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						err := db.InTx(ctx, func(ctx context.Context, tx *sqlitedb.Tx) error {
							_, err := tx.ExecContext(ctx, "UPDATE counter SET n = n + 1")
							return err
						})
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}
