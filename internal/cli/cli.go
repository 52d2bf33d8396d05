// Package cli holds what the commands in cmd/ share: the flags every server
// takes and their meaning.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/payments"
)

// Run is a command's run function: it parses args and serves until ctx is
// done. Tests call it directly with their own arguments, environment and
// stderr.
type Run func(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error

// Main runs run with the process's arguments, environment and stderr, and a
// context that SIGINT or SIGTERM cancels (a graceful stop); on error it
// prints "name: error" and exits 1.
func Main(name string, run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Getenv, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
}

// NewFlagSet returns a flag set named name that reports errors to stderr and
// returns them instead of exiting.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// Origins registers -cors-origins, defaulting to $CORS_ORIGINS.
func Origins(fs *flag.FlagSet, getenv func(string) string) *List {
	origins := new(List)
	origins.Set(getenv("CORS_ORIGINS"))
	fs.Var(origins, "cors-origins", "comma-separated browser origins allowed to call across origins (env CORS_ORIGINS)")
	return origins
}

// ServiceKeyFile registers -service-key-file, defaulting to
// $SERVICE_KEY_FILE: the key with which orders proves itself to payments,
// the same file for both.
func ServiceKeyFile(fs *flag.FlagSet, getenv func(string) string) *string {
	return fs.String("service-key-file", getenv("SERVICE_KEY_FILE"),
		"file with the key orders proves itself to payments with, base64; the same file for both (env SERVICE_KEY_FILE)")
}

// ReadServiceKey reads the key in path, or returns nil if path is empty.
func ReadServiceKey(path string) (auth.Key, error) {
	if path == "" {
		return nil, nil
	}
	key, err := auth.ReadKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("-service-key-file: %w", err)
	}
	return key, nil
}

// Faults registers -fault-latency and -fault-error-rate, which make target
// ("every payment call") misbehave for demos and tests.
func Faults(fs *flag.FlagSet, target string) *payments.Faults {
	f := new(payments.Faults)
	fs.DurationVar(&f.Latency, "fault-latency", 0, "inject this latency into "+target)
	fs.Float64Var(&f.ErrorRate, "fault-error-rate", 0, "fail this share (0-1) of "+target+" with UNAVAILABLE")
	return f
}

// MaxConns registers -max-conns, the cap on the connections a server serves
// at once; [CheckMaxConns] checks it after parsing.
func MaxConns(fs *flag.FlagSet) *int {
	return fs.Int("max-conns", rpc.DefaultMaxConns,
		"connections served at once by each server; one more is closed as soon as it is accepted")
}

// CheckMaxConns reports a -max-conns below 1.
func CheckMaxConns(n int) error {
	if n < 1 {
		return errors.New("-max-conns must be at least 1")
	}
	return nil
}

// OrderLimits registers the flags of the orders service's limits:
// -max-conns, -max-watchers, -max-watchers-per-customer, -order-rate and
// -order-burst. Call the function it returns after parsing.
func OrderLimits(fs *flag.FlagSet) func() (orders.Limits, error) {
	maxConns := MaxConns(fs)
	watchers := fs.Int("max-watchers", orders.DefaultMaxWatchers,
		"WatchOrders streams open at once; one more gets resource_exhausted")
	perCustomer := fs.Int("max-watchers-per-customer", orders.DefaultMaxWatchersPerCustomer,
		"WatchOrders streams one customer may have open at once; one more gets resource_exhausted")
	orderRate := fs.Float64("order-rate", orders.DefaultOrderRate,
		"CreateOrder calls per second a customer may make on average; one more gets resource_exhausted with a retry delay (0: no limit)")
	orderBurst := fs.Int("order-burst", orders.DefaultOrderBurst,
		"CreateOrder calls a customer may make at once, before -order-rate applies")
	return func() (orders.Limits, error) {
		if err := CheckMaxConns(*maxConns); err != nil {
			return orders.Limits{}, err
		}
		if *watchers < 1 || *perCustomer < 1 || *orderBurst < 1 || *orderRate < 0 {
			return orders.Limits{}, errors.New("want -max-watchers, -max-watchers-per-customer and -order-burst of at least 1, and -order-rate of at least 0")
		}
		l := orders.Limits{
			MaxConns:               *maxConns,
			MaxWatchers:            *watchers,
			MaxWatchersPerCustomer: *perCustomer,
			OrderRate:              *orderRate,
			OrderBurst:             *orderBurst,
		}
		if l.OrderRate == 0 {
			l.OrderRate = -1 // no limit
		}
		return l, nil
	}
}

// SessionKey returns the key that signs customer sessions: read from path if
// given, else kept in session.key beside the SQLite file db, made there
// (0600) on first use. With a PostgreSQL db the path is required: several
// instances share the database and must share the key.
func SessionKey(path, db string) (auth.Key, error) {
	if path == "" && IsPostgres(db) {
		return nil, errSessionKeyForPostgres
	}
	if path != "" {
		key, err := auth.ReadKeyFile(path)
		if err != nil {
			return nil, fmt.Errorf("-session-key-file: %w", err)
		}
		return key, nil
	}
	key, err := auth.LoadOrCreateKeyFile(filepath.Join(filepath.Dir(db), "session.key"))
	if err != nil {
		return nil, fmt.Errorf("session key: %w", err)
	}
	return key, nil
}

// List is a flag of comma-separated values, e.g. -cors-origins
// "https://a.example,https://b.example"; empty entries are dropped.
type List []string

// String implements [flag.Value].
func (l *List) String() string { return strings.Join(*l, ",") }

// Set implements [flag.Value].
func (l *List) Set(s string) error {
	*l = nil
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}
