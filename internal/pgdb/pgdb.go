// Package pgdb opens PostgreSQL databases the way every PostgreSQL store here
// needs them: a pgx connection pool of a bounded size, and the store's schema
// brought up to date first, safely when several instances start together.
package pgdb

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema is what a store needs of its database: its migrations, applied in
// order and recorded under Service in the schema_migrations table, under the
// advisory lock LockKey.
type Schema struct {
	// Service names the store in schema_migrations and, unless the URL sets
	// one, in application_name (what pg_stat_activity shows).
	Service string
	// LockKey is the pg_advisory_xact_lock key that applying a migration
	// takes: one fixed key per service, so instances of one service migrate
	// one at a time while other services' migrations proceed.
	LockKey int64
	// Migrations[i] takes the schema from version i to i+1. Each may hold
	// several statements; it runs in a transaction of its own. A migration
	// is never edited once released: changes are new migrations.
	Migrations []string
}

// defaultMaxConns is the size of a pool whose URL sets no pool_max_conns.
// Each store opens one pool per instance, so a database with PostgreSQL's
// default max_connections (100) serves several instances of each service.
// Transactions here are short (one to four statements, nothing slow inside),
// so a few connections carry many concurrent requests; see the benchmark in
// orders/postgres.
const defaultMaxConns = 10

// bootstrapLockKey is the advisory lock under which the schema_migrations
// table is created: the one step that services share.
const bootstrapLockKey = 0x636f6e6e73686f70 // "connshop"

// Open connects to the database at url (a postgres:// URL or a key=value
// connection string, with any of pgx's settings such as pool_max_conns) and
// applies the migrations of schema that it has not had yet (see migrate).
// The pool keeps at most 10 connections (defaultMaxConns) unless the URL says
// otherwise. Tables are created in the first schema of the search_path,
// which the URL may set (options=-c search_path=name).
func Open(ctx context.Context, url string, schema Schema) (*pgxpool.Pool, error) {
	config, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors show the connection string with its password
		// masked.
		return nil, fmt.Errorf("open %s database: %w", schema.Service, err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		config.MaxConns = defaultMaxConns
	}
	// Connections are recycled (an hour, spread over ten minutes) so that a
	// failover or a pooler behind a DNS name is picked up, and idle ones are
	// closed after five minutes.
	if !strings.Contains(url, "pool_max_conn_lifetime_jitter") {
		config.MaxConnLifetimeJitter = 10 * time.Minute
	}
	if !strings.Contains(url, "pool_max_conn_idle_time") {
		config.MaxConnIdleTime = 5 * time.Minute
	}
	if _, ok := config.ConnConfig.RuntimeParams["application_name"]; !ok {
		config.ConnConfig.RuntimeParams["application_name"] = schema.Service
	}
	pool, err := pgxpool.NewWithConfig(ctx, config)
	if err != nil {
		return nil, fmt.Errorf("open %s database: %w", schema.Service, err)
	}
	if err := migrate(ctx, pool, schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("open %s database: %w", schema.Service, err)
	}
	return pool, nil
}

// migrate applies the migrations of schema that the database has not had
// yet, each in its own transaction that takes the service's advisory lock
// (pg_advisory_xact_lock, released at commit) and reads the version again
// under it: instances starting together apply each migration once, one
// waiting for the other, and a failed migration leaves the versions before it
// in place. A database at a later version than schema knows (a newer
// instance migrated it during a rolling deploy) is left as it is.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema Schema) error {
	// The version table itself, under a lock every service shares: CREATE
	// TABLE IF NOT EXISTS is not safe against a concurrent one.
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(bootstrapLockKey)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			service    text        NOT NULL,
			version    integer     NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (service, version)
		)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	// Versions only grow, so a database already up to date needs no lock.
	current, err := version(ctx, pool, schema.Service)
	if err != nil {
		return err
	}
	for v := current; v < len(schema.Migrations); v++ {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, schema.LockKey); err != nil {
				return err
			}
			current, err := version(ctx, tx, schema.Service)
			if err != nil || current > v {
				return err // another instance applied it while we waited
			}
			// No arguments: pgx sends it as a simple query, so a migration
			// may hold several statements.
			if _, err := tx.Exec(ctx, schema.Migrations[v]); err != nil {
				return err
			}
			_, err = tx.Exec(ctx, `INSERT INTO schema_migrations (service, version) VALUES ($1, $2)`, schema.Service, v+1)
			return err
		})
		if err != nil {
			return fmt.Errorf("migrate %s to version %d: %w", schema.Service, v+1, err)
		}
	}
	return nil
}

// version returns the schema version of service: the last migration applied.
func version(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, service string) (int, error) {
	var v int
	err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations WHERE service = $1`, service).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("read %s schema version: %w", service, err)
	}
	return v, nil
}
