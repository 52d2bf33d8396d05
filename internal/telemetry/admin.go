package telemetry

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminConfig is what the admin listener serves.
type AdminConfig struct {
	// Gatherer is exported at /metrics in the Prometheus text format;
	// required.
	Gatherer prometheus.Gatherer
	// Ready answers /readyz; nil is always ready.
	Ready *Readiness
	// Logger gets the errors of gathering metrics; nil discards them.
	Logger *slog.Logger
}

// NewAdmin returns the handler of the admin listener, for operators and
// their tools, never for customers (pprof shows the process's insides):
//
//	/metrics        Prometheus metrics
//	/healthz        200 while the process serves HTTP at all (liveness)
//	/readyz         200 when every readiness check passes, else 503 naming
//	                the failed checks (readiness)
//	/debug/pprof/   the runtime profiles of net/http/pprof
//
// pprof's handlers are registered on the admin mux alone: importing
// net/http/pprof also registers them on [http.DefaultServeMux], which no
// server here serves.
func NewAdmin(cfg AdminConfig) http.Handler {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// A collector that fails leaves a gap in its own series, not an
		// error page instead of all the others.
		ErrorHandling: promhttp.ContinueOnError,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		plain(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		if cfg.Ready == nil {
			plain(w, http.StatusOK, "ready")
			return
		}
		if err := cfg.Ready.Check(req.Context()); err != nil {
			plain(w, http.StatusServiceUnavailable, "not ready:\n"+err.Error())
			return
		}
		plain(w, http.StatusOK, "ready")
	})
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and the named profiles: heap, goroutine...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

func plain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintln(w, body)
}

// NewAdminServer returns a server for the admin handler h. It has no write
// timeout: a CPU profile or execution trace takes as long as its seconds
// parameter asks, and pprof refuses one longer than the write timeout.
func NewAdminServer(h http.Handler, logger *slog.Logger) *http.Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}
