package pgtest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/jackc/pgx/v5"
)

// Each test gets an empty schema of its own, dropped when it ends.
func TestURL(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") != "" {
		t.Skip("the child of TestUnavailable")
	}
	t.Parallel()
	ctx := context.Background()
	var schema string
	t.Run("fresh", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var tables int
		if err := conn.QueryRow(ctx, `SELECT current_schema(), (SELECT count(*) FROM pg_tables WHERE schemaname = current_schema())`).
			Scan(&schema, &tables); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(schema, "t_") || tables != 0 {
			t.Fatalf("got schema %q with %d tables, want a fresh t_… one", schema, tables)
		}
		if _, err := conn.Exec(ctx, `CREATE TABLE things (id integer)`); err != nil {
			t.Fatal(err)
		}
	})
	if schema == "" {
		t.Skip("no test database")
	}
	conn, err := pgx.Connect(ctx, os.Getenv("TEST_DATABASE_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, schema).Scan(&n); err != nil || n != 0 {
		t.Errorf("schema %s after its test: %d of it (err %v), want it dropped", schema, n, err)
	}
}

// Without a database the tests skip, saying why, except under CI=true,
// where they fail. Each case runs this test binary again: Skip and Fatal end
// the test that calls them.
func TestUnavailable(t *testing.T) {
	if os.Getenv("PGTEST_CHILD") != "" {
		pgtest.URL(t)
		t.Fatal("URL returned without a database")
	}
	t.Parallel()
	for _, c := range []struct {
		name, url, ci string
		want          string
	}{
		{"unset", "", "", "--- SKIP"},
		{"unset in CI", "", "true", "--- FAIL"},
		{"unreachable", "postgres://postgres@127.0.0.1:1/test?sslmode=disable", "", "--- SKIP"},
		{"unreachable in CI", "postgres://postgres@127.0.0.1:1/test?sslmode=disable", "true", "--- FAIL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestUnavailable$", "-test.v")
			cmd.Env = append(os.Environ(), "PGTEST_CHILD=1", "TEST_DATABASE_URL="+c.url, "CI="+c.ci)
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), c.want) || (err != nil) != (c.want == "--- FAIL") {
				t.Errorf("got (err %v):\n%s\nwant %s", err, out, c.want)
			}
			why := "is not set"
			if c.url != "" {
				why = "unreachable"
			}
			if !strings.Contains(string(out), why) {
				t.Errorf("output does not say %q:\n%s", why, out)
			}
		})
	}
}
