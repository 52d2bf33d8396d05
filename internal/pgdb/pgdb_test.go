package pgdb_test

import (
	"context"
	"sync"
	"testing"

	"github.com/connectshop/connectshop/internal/pgdb"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/jackc/pgx/v5/pgxpool"
)

var testSchema = pgdb.Schema{
	Service: "test",
	LockKey: 0x7465737400000000,
	Migrations: []string{
		`CREATE TABLE things (id integer PRIMARY KEY);`,
		// Not idempotent, on purpose: applied twice, it fails.
		`ALTER TABLE things ADD COLUMN name text NOT NULL DEFAULT '';
		INSERT INTO things (id, name) VALUES (1, 'one');`,
	},
}

func open(t *testing.T, url string, s pgdb.Schema) *pgxpool.Pool {
	t.Helper()
	pool, err := pgdb.Open(context.Background(), url, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func versions(t *testing.T, pool *pgxpool.Pool, service string) []int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT version FROM schema_migrations WHERE service = $1 ORDER BY version`, service)
	if err != nil {
		t.Fatal(err)
	}
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

// Instances of two services starting together on one empty database apply
// each migration once.
func TestConcurrentOpens(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	other := testSchema
	other.Service, other.LockKey = "other", 0x6f74686572000000
	other.Migrations = []string{`CREATE TABLE others (id integer PRIMARY KEY);`}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		pools []*pgxpool.Pool
	)
	for i := range 8 {
		wg.Go(func() {
			s := testSchema
			if i%2 == 1 {
				s = other
			}
			pool, err := pgdb.Open(context.Background(), url, s)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			pools = append(pools, pool)
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, p := range pools {
		p.Close()
	}
	pool := open(t, url, testSchema) // and once more, on a database up to date
	if got := versions(t, pool, "test"); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("test versions: got %v, want [1 2]", got)
	}
	if got := versions(t, pool, "other"); len(got) != 1 || got[0] != 1 {
		t.Errorf("other versions: got %v, want [1]", got)
	}
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM things`).Scan(&n); err != nil || n != 1 {
		t.Errorf("things: got %d rows (err %v), want 1", n, err)
	}
}

// A failing migration is undone alone: the ones before it stay applied, and
// a fixed one is applied on the next start.
func TestFailedMigration(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	broken := testSchema
	broken.Migrations = []string{testSchema.Migrations[0], `ALTER TABLE things ADD COLUMN name text; SELECT 1/0;`}
	if pool, err := pgdb.Open(context.Background(), url, broken); err == nil {
		pool.Close()
		t.Fatal("Open with a failing migration: no error")
	}
	first := testSchema
	first.Migrations = testSchema.Migrations[:1]
	pool := open(t, url, first)
	if got := versions(t, pool, "test"); len(got) != 1 {
		t.Errorf("versions after a failed migration 2: got %v, want [1]", got)
	}
	if _, err := pool.Exec(context.Background(), `SELECT name FROM things`); err == nil {
		t.Error("the failed migration's first statement stayed applied")
	}
	pool = open(t, url, testSchema)
	if got := versions(t, pool, "test"); len(got) != 2 {
		t.Errorf("versions after the fixed migration: got %v, want [1 2]", got)
	}
}

// An instance that knows fewer migrations than the database has had (an old
// one during a rolling deploy) opens it as it is.
func TestNewerDatabase(t *testing.T) {
	t.Parallel()
	url := pgtest.URL(t)
	open(t, url, testSchema)
	old := testSchema
	old.Migrations = testSchema.Migrations[:1]
	pool := open(t, url, old)
	if got := versions(t, pool, "test"); len(got) != 2 {
		t.Errorf("versions: got %v, want [1 2]", got)
	}
}
