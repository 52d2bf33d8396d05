// Package pgtest gives tests of PostgreSQL stores an empty database of their
// own: a fresh schema in the database at $TEST_DATABASE_URL, dropped when the
// test ends, so parallel tests never see each other's rows.
//
// Without $TEST_DATABASE_URL, or with PostgreSQL unreachable, tests skip
// with the reason, except under CI=true, where they fail: CI starts
// PostgreSQL and sets the variable, so its absence there is a bug.
//
//	TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable go test ./orders/postgres/
package pgtest

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// envVar names the environment variable with the URL of the database that
// tests use.
const envVar = "TEST_DATABASE_URL"

// timeout bounds each step against the test database, connectTimeout the
// connecting.
const (
	timeout        = 30 * time.Second
	connectTimeout = 5 * time.Second
)

// unreachable holds the error of a failed connection to the test database, so
// that the tests after it skip at once instead of each waiting for its own.
var unreachable atomic.Value

// URL returns the URL of $TEST_DATABASE_URL with its search_path set to a new,
// empty schema, which is dropped with everything in it when the test ends
// (after the cleanups registered later, such as closing the stores opened on
// it). It skips the test, or fails it under CI=true, when the variable is
// unset or the database unreachable.
func URL(t testing.TB) string {
	t.Helper()
	base := os.Getenv(envVar)
	if base == "" {
		unavailable(t, envVar+" is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL (got %q)", envVar, redact(base))
	}

	if err, _ := unreachable.Load().(error); err != nil {
		unavailable(t, err.Error()) // a test before found it so: no wait again
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	connectCtx, cancelConnect := context.WithTimeout(ctx, connectTimeout)
	conn, err := pgx.Connect(connectCtx, base)
	cancelConnect()
	if err != nil {
		err = fmt.Errorf("PostgreSQL at %s is unreachable: %w", redact(base), err)
		unreachable.Store(err)
		unavailable(t, err.Error())
	}
	defer conn.Close(ctx)
	schema := "t_" + strings.ToLower(rand.Text())
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop test schema %s: %v", schema, err)
		}
	})

	q := u.Query()
	q.Set("options", strings.TrimSpace(q.Get("options")+" -c search_path="+schema))
	// Spaces as %20: pgx, like libpq, reads a + in a URL as itself.
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String()
}

// unavailable skips t, or fails it under CI=true, for want of PostgreSQL.
func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(why + ": CI must start PostgreSQL and set " + envVar)
	}
	t.Skip(why + "; the PostgreSQL tests run in CI")
}

// redact returns s with any password in it masked.
func redact(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Redacted()
	}
	return "(unparsable URL)"
}
