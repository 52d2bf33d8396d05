package orders

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/telemetry"
)

// Config is everything an orders service is made of. Store and
// Payments.Target are required.
type Config struct {
	// Logger gets a line per call (debug) and every failure; nil takes
	// Telemetry's, or discards them without it.
	Logger *slog.Logger
	// Store keeps the orders. The service owns it from [New] on: [Server.Close]
	// closes it, also when New fails.
	Store Store
	// Payments is how to reach the payments replicas.
	Payments PaymentsConfig
	// SessionKey signs and checks customer session tokens; required. Every
	// orders instance of a shop needs the same one.
	SessionKey auth.Key
	// SessionTTL is how long a session token is valid; default 24 h.
	SessionTTL time.Duration
	// Page is served at "/" (the demo page); nil serves nothing there.
	Page http.Handler
	// AllowedOrigins are the browser origins allowed to call across origins
	// (CORS); the page itself is same-origin and needs none.
	AllowedOrigins []string
	// RecoveryInterval is how often orders left pending are settled; default
	// 30 s.
	RecoveryInterval time.Duration

	// Limits cap what clients may hold of the service: connections,
	// WatchOrders streams, CreateOrder calls per customer. A zero field is its
	// default.
	Limits Limits
	// Telemetry traces calls, store operations and the calls to payments,
	// measures them and the shop's own figures, and gives the logger if
	// Logger is nil; nil records nothing.
	Telemetry *telemetry.Scope
	// DrainDelay is how long [Server.Serve] goes on serving, with health
	// NOT_SERVING, once its context ends, before it stops taking calls.
	DrainDelay time.Duration

	wrapPayments func(Payments) Payments // tests: inject failures
}

const defaultRecoveryInterval = 30 * time.Second

// Server is a running orders service: its HTTP server, the payments client,
// the store and the recovery loop. Serve its [Server.HTTPServer] (or call
// [Server.Serve]), then [Server.Close] it.
type Server struct {
	http     *http.Server
	svc      *Service
	logger   *slog.Logger
	store    Store
	payments *paymentsClient
	ready    *telemetry.Readiness
	maxConns int
	// drainDelay: see [Config.DrainDelay].
	drainDelay time.Duration
	stop       context.CancelFunc
	loops      sync.WaitGroup
	close      sync.Once
	closeErr   error
}

// New builds the orders service of cfg and starts its recovery loop. It is
// the one place where an orders service is assembled.
func New(cfg Config) (*Server, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = cfg.Telemetry.Logger() // discards without telemetry
	}
	if cfg.Store == nil {
		return nil, errors.New("orders: no store")
	}
	if len(cfg.SessionKey) == 0 {
		return nil, errors.Join(errors.New("orders: no session key"), cfg.Store.Close())
	}
	ttl := cfg.SessionTTL
	if ttl <= 0 {
		ttl = defaultSessionTTL
	}
	store := cfg.Store
	if cfg.Telemetry != nil {
		var err error
		if store, err = traceStore(store, cfg.Telemetry.TracerProvider(), cfg.Telemetry.Registerer()); err != nil {
			return nil, errors.Join(err, cfg.Store.Close())
		}
	}
	// Ready while the database answers and a payments replica is healthy;
	// the health of the OrderService follows, checked again as soon as a
	// replica's health changes.
	var client *paymentsClient
	ready := telemetry.NewReadiness(
		telemetry.Check{Name: "database", Func: cfg.Store.Ping},
		telemetry.Check{Name: "payments", Func: func(context.Context) error {
			if client.healthyReplicas() == 0 {
				return errors.New("no healthy payments replica")
			}
			return nil
		}},
	)
	metrics := newMetrics()
	client, err := newPaymentsClient(cfg.Payments, cfg.Telemetry.Interceptors(), metrics, ready.Recheck)
	if err != nil {
		return nil, errors.Join(err, cfg.Store.Close())
	}
	var pay Payments = client
	if cfg.wrapPayments != nil {
		pay = cfg.wrapPayments(pay)
	}
	svc := newService(logger, store, pay, cfg.Payments.timeout(), auth.NewSessions(cfg.SessionKey, ttl))
	svc.hub.limits = cfg.Limits.watch()
	svc.metrics = metrics
	if err := errors.Join(metrics.register(cfg.Telemetry.Registerer(), svc, client.lb.Health),
		telemetry.RegisterCollectors(cfg.Telemetry.Registerer(), cfg.Store)); err != nil {
		return nil, errors.Join(err, client.Close(), cfg.Store.Close())
	}

	mux := rpc.NewServeMux(ready.HealthChecker(ordersv1connect.OrderServiceName), ordersv1connect.OrderServiceName)
	path, handler := ordersv1connect.NewOrderServiceHandler(svc,
		rpc.HandlerOptions(logger, serverName, cfg.Telemetry.Interceptors()...),
		connect.WithInterceptors(svc.authenticate(), newOrderLimiter(cfg.Limits.OrderRate, cfg.Limits.OrderBurst).interceptor()))
	// Connect, gRPC, gRPC-Web; WatchOrders sends under a write deadline.
	mux.Handle(path, controlWatchWrites(handler))
	mux.Handle("/v1/", rest(path, handler)) // REST, transcoded into calls of the same handler
	if cfg.Page != nil {
		mux.Handle("/", svc.withPageSession(cfg.Page))
	}
	protected, err := crossOriginProtection(mux, cfg.AllowedOrigins)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("orders: allowed origins: %w", err), client.Close(), cfg.Store.Close())
	}
	httpServer := rpc.NewHTTPServer(rpc.Middleware(protected, cfg.AllowedOrigins), logger)
	// End every WatchOrders stream when the server shuts down, so a graceful
	// shutdown does not wait for them.
	httpServer.RegisterOnShutdown(svc.hub.close)
	httpServer.RegisterOnShutdown(ready.Drain)

	s := &Server{http: httpServer, svc: svc, logger: logger, store: cfg.Store, payments: client, ready: ready,
		maxConns: cfg.Limits.MaxConns, drainDelay: cfg.DrainDelay}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	interval := cfg.RecoveryInterval
	if interval <= 0 {
		interval = defaultRecoveryInterval
	}
	s.loops.Go(func() { svc.runRecovery(ctx, interval) })
	s.loops.Go(func() { svc.runFeed(ctx) })
	ready.Check(ctx) // now; Run then checks as the balancer's health changes, and every interval
	s.loops.Go(func() { ready.Run(ctx, readyInterval) })
	return s, nil
}

// HTTPServer returns the server to serve: Connect, gRPC and gRPC-Web on the
// OrderService, its REST routes, health, reflection and the page, over
// HTTP/1.1 and h2c.
func (s *Server) HTTPServer() *http.Server { return s.http }

// Serve serves on lis until ctx is done, then shuts down gracefully (see
// [rpc.Serve]), serving at most [Limits.MaxConns] connections at once. It
// does not close s.
//
// When ctx ends, health turns NOT_SERVING at once, and the server goes on
// serving for [Config.DrainDelay] before it shuts down.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	ctx, stop := rpc.Draining(ctx, s.ready.Drain, s.drainDelay)
	defer stop()
	return rpc.Serve(ctx, s.http, rpc.LimitConns(lis, s.maxConns, s.logger), s.logger)
}

// readyInterval is how often orders checks its readiness, and so how soon
// its health follows its database and the payments replicas.
const readyInterval = 2 * time.Second

// Readiness returns what decides whether orders is ready: its database
// answers, a payments replica is healthy, and it is not shutting down.
// /readyz and gRPC health follow it.
func (s *Server) Readiness() *telemetry.Readiness { return s.ready }

// HealthyPayments returns how many payments replicas pass their health
// checks now.
func (s *Server) HealthyPayments() int { return s.payments.healthyReplicas() }

// Close stops the recovery loop and waits for it, then closes the payments
// client and the store. Call it after the HTTP server has shut down; calling
// it again does nothing.
func (s *Server) Close() error {
	s.close.Do(func() {
		s.stop()
		s.loops.Wait()
		s.closeErr = errors.Join(s.payments.Close(), s.store.Close())
	})
	return s.closeErr
}
