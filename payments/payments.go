package payments

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/telemetry"
)

// Config is everything a payments replica is made of. Name and Store are
// required.
type Config struct {
	// Name is the replica's name, recorded on every payment it charges and
	// reported in hops ("payments-1").
	Name string
	// Logger gets a line per call (debug) and every failure; nil takes
	// Telemetry's, or discards them without it.
	Logger *slog.Logger
	// Store keeps the payments; replicas may share one database. The replica
	// owns the store from [New] on: [Server.Close] closes it, also when New
	// fails.
	Store Store
	// ServiceKey is the key orders proves itself with (see
	// [auth.RequireService]): the PaymentService serves only callers that
	// hold it. Required unless Insecure.
	ServiceKey auth.Key
	// Insecure serves the PaymentService to any caller, without ServiceKey:
	// anyone who reaches the port can charge and refund. For demos only.
	Insecure bool
	// Faults, if not zero, are injected into PaymentService calls (not health
	// checks), for demos and tests.
	Faults Faults
	// AllowedOrigins are the browser origins allowed to call (CORS).
	AllowedOrigins []string
	// MaxConns caps the connections [Server.Serve] serves at once; one over
	// it is closed as soon as it is accepted ([rpc.ConnLimit]). Default
	// [rpc.DefaultMaxConns].
	MaxConns int
	// Telemetry traces calls and store operations, measures calls and
	// charges, and gives the logger if Logger is nil; nil records nothing.
	Telemetry *telemetry.Scope
	// DrainDelay is how long [Server.Serve] goes on serving, with health
	// NOT_SERVING, once its context ends, before it stops taking calls.
	DrainDelay time.Duration
}

// Server is a running payments replica: its HTTP server and its store.
// Serve its [Server.HTTPServer] (or call [Server.Serve]), then
// [Server.Close] it.
type Server struct {
	http       *http.Server
	logger     *slog.Logger
	store      Store
	ready      *telemetry.Readiness
	maxConns   int
	drainDelay time.Duration
	stopReady  context.CancelFunc
	readyDone  sync.WaitGroup
	close      sync.Once
	err        error
}

// New builds the payments replica of cfg. It is the one place where a
// payments replica is assembled.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil {
		return nil, errors.New("payments: no store")
	}
	if cfg.Name == "" {
		return nil, errors.Join(errors.New("payments: no replica name"), cfg.Store.Close())
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, errors.Join(err, cfg.Store.Close())
	}
	if len(cfg.ServiceKey) == 0 && !cfg.Insecure {
		return nil, errors.Join(errors.New("payments: no service key, so any caller could charge and refund; give one, or say Insecure"), cfg.Store.Close())
	}
	logger := cfg.Logger
	if logger == nil {
		logger = cfg.Telemetry.Logger() // discards without telemetry
	}
	store := cfg.Store
	if cfg.Telemetry != nil {
		var err error
		if store, err = traceStore(store, cfg.Telemetry.TracerProvider(), cfg.Telemetry.Registerer()); err != nil {
			return nil, errors.Join(err, cfg.Store.Close())
		}
	}
	metrics, err := newMetrics(cfg.Telemetry.Registerer())
	if err == nil {
		err = telemetry.RegisterCollectors(cfg.Telemetry.Registerer(), cfg.Store)
	}
	if err != nil {
		return nil, errors.Join(err, cfg.Store.Close())
	}
	svc := &Service{logger: logger, store: store, replica: cfg.Name, metrics: metrics}
	opts := []connect.HandlerOption{rpc.HandlerOptions(logger, cfg.Name, cfg.Telemetry.Interceptors()...)}
	if len(cfg.ServiceKey) > 0 {
		// Health and reflection stay open: probes and tools need no key.
		opts = append(opts, connect.WithInterceptors(auth.RequireService(cfg.ServiceKey, auth.PaymentsAudience, auth.OrdersCaller)))
	}
	if cfg.Faults.enabled() {
		opts = append(opts, connect.WithInterceptors(cfg.Faults.interceptor()))
	}
	// Ready while the database answers; the health of the PaymentService,
	// which orders' balancer checks, follows.
	ready := telemetry.NewReadiness(telemetry.Check{Name: "database", Func: cfg.Store.Ping})
	mux := rpc.NewServeMux(ready.HealthChecker(paymentsv1connect.PaymentServiceName), paymentsv1connect.PaymentServiceName)
	mux.Handle(paymentsv1connect.NewPaymentServiceHandler(svc, opts...))
	s := &Server{
		http:       rpc.NewHTTPServer(rpc.Middleware(mux, cfg.AllowedOrigins), logger),
		logger:     logger,
		store:      cfg.Store,
		ready:      ready,
		maxConns:   cfg.MaxConns,
		drainDelay: cfg.DrainDelay,
	}
	s.http.RegisterOnShutdown(ready.Drain)
	ctx, stop := context.WithCancel(context.Background())
	s.stopReady = stop
	ready.Check(ctx) // now: health answers SERVING from the first call, if the database does

	s.readyDone.Go(func() { ready.Run(ctx, readyInterval) })
	return s, nil
}

// readyInterval is how often a replica checks its readiness, and so how soon
// its health follows its database.
const readyInterval = 2 * time.Second

// Readiness returns what decides whether the replica is ready: its database
// answers and it is not shutting down. /readyz and gRPC health follow it.
func (s *Server) Readiness() *telemetry.Readiness { return s.ready }

// HTTPServer returns the server to serve: Connect, gRPC and gRPC-Web on the
// PaymentService, health and reflection, over HTTP/1.1 and h2c.
func (s *Server) HTTPServer() *http.Server { return s.http }

// Serve serves on lis until ctx is done, then shuts down gracefully (see
// [rpc.Serve]), serving at most [Config.MaxConns] connections at once. It
// does not close s.
//
// When ctx ends, health turns NOT_SERVING at once, and the server goes on
// serving for [Config.DrainDelay] before it shuts down.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	ctx, stop := rpc.Draining(ctx, s.ready.Drain, s.drainDelay)
	defer stop()
	return rpc.Serve(ctx, s.http, rpc.LimitConns(lis, s.maxConns, s.logger), s.logger)
}

// Close stops the readiness checks and closes the store. Call it after the
// HTTP server has shut down; calling it again does nothing.
func (s *Server) Close() error {
	s.close.Do(func() {
		s.stopReady()
		s.readyDone.Wait()
		s.err = s.store.Close()
	})
	return s.err
}
