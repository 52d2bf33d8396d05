package cli

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/telemetry"
)

// Telemetry holds the flags every server command takes for being operated:
// logs, the admin listener, and the drain before a graceful stop.
type Telemetry struct {
	logLevel, logFormat *string
	adminAddr           *string
	// DrainDelay is -drain-delay: how long a stopping server keeps serving
	// with health NOT_SERVING before it stops taking calls.
	DrainDelay *time.Duration
}

// TelemetryFlags registers -log-level ($LOG_LEVEL), -log-format
// ($LOG_FORMAT), -admin-addr ($ADMIN_ADDR, else adminAddr) and -drain-delay.
// Tracing is configured by the standard OTEL_EXPORTER_OTLP_* variables.
func TelemetryFlags(fs *flag.FlagSet, getenv func(string) string, adminAddr string) *Telemetry {
	if env := getenv("ADMIN_ADDR"); env != "" {
		adminAddr = env
	}
	return &Telemetry{
		logLevel:   fs.String("log-level", envOr(getenv, "LOG_LEVEL", "info"), "log level: "+telemetry.LevelNames+"; one line per call at debug (env LOG_LEVEL)"),
		logFormat:  fs.String("log-format", envOr(getenv, "LOG_FORMAT", "text"), "log format: "+telemetry.FormatNames+" (env LOG_FORMAT)"),
		adminAddr:  fs.String("admin-addr", adminAddr, "address of the admin listener: /metrics, /healthz, /readyz, /debug/pprof/; empty: none (env ADMIN_ADDR). Operators only: do not expose it"),
		DrainDelay: fs.Duration("drain-delay", 0, "on SIGTERM, keep serving this long with health NOT_SERVING before stopping, so balancers and probes move calls away first"),
	}
}

func envOr(getenv func(string) string, name, def string) string {
	if v := getenv(name); v != "" {
		return v
	}
	return def
}

// Setup builds the process's telemetry from the parsed flags: its logger on
// stderr and tracing (OTLP when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set). Shut it down with
// [Telemetry.Shutdown] once serving is over.
func (t *Telemetry) Setup(ctx context.Context, getenv func(string) string, stderr io.Writer) (*telemetry.Telemetry, error) {
	return telemetry.Setup(ctx, telemetry.Options{LogLevel: *t.logLevel, LogFormat: *t.logFormat, LogOutput: stderr, Getenv: getenv})
}

// Shutdown sends the spans still buffered, waiting at most 5 s.
func Shutdown(tel *telemetry.Telemetry) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return tel.Shutdown(ctx)
}

// ListenAdmin listens on -admin-addr, or returns nil if it is empty.
func (t *Telemetry) ListenAdmin() (net.Listener, error) {
	if *t.adminAddr == "" {
		return nil, nil
	}
	return net.Listen("tcp", *t.adminAddr)
}

// ServeAdmin runs serve (a server's Serve, which drains and stops when its
// context ends) and, if admin is not nil, the admin listener on it with
// tel's metrics and ready, until ctx is done and serve has returned. The
// admin listener stops last, so that probes and scrapes see the drain.
func ServeAdmin(ctx context.Context, admin net.Listener, tel *telemetry.Telemetry, ready *telemetry.Readiness, logger *slog.Logger, serve func(context.Context) error) error {
	if admin == nil {
		return serve(ctx)
	}
	adminCtx, stopAdmin := context.WithCancel(context.WithoutCancel(ctx))
	adminDone := make(chan error, 1)
	srv := telemetry.NewAdminServer(tel.Admin(ready), logger)
	go func() { adminDone <- rpc.Serve(adminCtx, srv, admin, logger.With("listener", "admin")) }()
	err := serve(ctx)
	stopAdmin()
	return errors.Join(err, <-adminDone)
}
