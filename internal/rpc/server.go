package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
)

// Limits and timeouts of every server. They are generous for a shop whose
// largest message is an order of twenty lines.
const (
	// MaxMessageBytes caps a request message; larger ones fail with
	// RESOURCE_EXHAUSTED before they are decoded.
	MaxMessageBytes = 1 << 20
	// CompressMinBytes leaves small responses uncompressed: gzip costs more
	// than it saves below about a kilobyte (measured in bench/: 15-35% of the
	// throughput of a small call).
	CompressMinBytes = 1024
	// UnaryTimeout bounds a unary call that arrives without a deadline, or
	// with a longer one.
	UnaryTimeout = 15 * time.Second
	// ShutdownTimeout is how long a stopping server waits for calls in flight.
	ShutdownTimeout = 10 * time.Second
	// StalledWriteTimeout is how long an HTTP/2 connection may have data
	// waiting to be written without a byte of it getting through before it
	// is closed.
	StalledWriteTimeout = 30 * time.Second
)

// NewHTTPServer returns a server for h that speaks HTTP/1.1 and HTTP/2
// cleartext (h2c) on the same port, so browsers, curl and gRPC clients all
// reach the same handlers.
//
// It sets no ReadTimeout or WriteTimeout: both are per connection in HTTP/1.1
// and would cut server streams (WatchOrders) short. [Middleware] bounds the
// time to send a request body instead ([bodyTimeout]), handlers bound unary
// calls ([UnaryTimeout]), and message sizes are capped ([MaxMessageBytes]).
// An HTTP/2 connection to which nothing can be written for
// [StalledWriteTimeout] (a client that stopped reading) is closed; [Serve]
// caps the connections served at once ([ConnLimit]).
func NewHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: 250,
			// Ping idle clients so dead connections are noticed and freed.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     10 * time.Second,
			// Close a connection whose client stopped reading altogether.
			WriteByteTimeout: StalledWriteTimeout,
		},
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	return srv
}

// Serve runs srv on lis until ctx is done, then shuts it down gracefully,
// waiting up to [ShutdownTimeout] for calls in flight. It returns nil after a
// clean shutdown.
//
// It serves at most [DefaultMaxConns] connections at once, closing the ones
// over the cap as they come (see [ConnLimit]); pass a listener from
// [LimitConns] for another cap.
func Serve(ctx context.Context, srv *http.Server, lis net.Listener, logger *slog.Logger) error {
	limited, ok := lis.(*ConnLimit)
	if !ok {
		limited = LimitConns(lis, DefaultMaxConns, logger)
	}
	lis = limited
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(lis) }()
	logger.Info("serving", "addr", lis.Addr().String(), "max_conns", limited.Max())
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	logger.Info("shutting down", "addr", lis.Addr().String())
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = errors.Join(err, srv.Close())
	}
	if serr := <-serveErr; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// NewServeMux returns a mux that already serves the gRPC health protocol,
// answered by health, and server reflection (v1 and v1alpha) for the named
// services. Reflection lists the health service too, so grpcurl and buf curl
// can call it by name.
func NewServeMux(health grpchealth.Checker, services ...string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle(grpchealth.NewHandler(health))
	reflector := grpcreflect.NewStaticReflector(append(services, grpchealth.HealthV1ServiceName)...)
	mux.Handle(grpcreflect.NewHandlerV1(reflector))
	mux.Handle(grpcreflect.NewHandlerV1Alpha(reflector))
	return mux
}

// HandlerOptions are the options of every Connect handler here: message size
// limit, compression threshold, the interceptors first (telemetry: tracing
// and metrics), a bound on unary calls, the hop header, a log line per call
// (in the call's trace), and panics turned into INTERNAL errors. Decoding errors
// are bounded (a JSON codec that quotes at most 256 bytes of what it could
// not parse), and so is gzip: a request that inflates past
// [MaxMessageBytes] is RESOURCE_EXHAUSTED as soon as it does, without
// inflating the rest of a compression bomb.
func HandlerOptions(logger *slog.Logger, server string, first ...connect.Interceptor) connect.HandlerOption {
	interceptors := []connect.Interceptor{reachInterceptor()} // first: errors after it are the service's (see RESTErrors)
	interceptors = append(interceptors, first...)
	interceptors = append(interceptors, logInterceptor(logger), TimeoutInterceptor(UnaryTimeout), hopInterceptor(server))
	return connect.WithHandlerOptions(
		connect.WithReadMaxBytes(MaxMessageBytes),
		connect.WithCompressMinBytes(CompressMinBytes),
		connect.WithCodec(jsonCodec{"json"}),
		connect.WithCodec(jsonCodec{"json; charset=utf-8"}),
		connect.WithCompression("gzip", nil, nil), // replace connect-go's, keeping one name
		connect.WithCompression("gzip", newBoundedGzip, newGzipWriter),
		connect.WithInterceptors(interceptors...),
		connect.WithRecover(func(ctx context.Context, spec connect.Spec, _ http.Header, p any) error {
			logger.ErrorContext(ctx, "panic in handler", "procedure", spec.Procedure, "panic", p)
			return connect.NewError(connect.CodeInternal, errors.New("internal error"))
		}),
	)
}

// Middleware wraps a server's mux with what runs before Connect: a stack
// grown at once to what a call needs ([presized]), CORS for the listed
// origins, call observation for hops, a deadline on request bodies,
// and the checks of [checkInput]: malformed bodies, framing and Connect GET
// messages are the client's error, not the server's, and response headers
// stay small.
func Middleware(h http.Handler, allowedOrigins []string) http.Handler {
	return presized(withCORS(observe(bodyDeadline(checkInput(h), bodyTimeout,
		"/"+grpcreflect.ReflectV1ServiceName+"/", "/"+grpcreflect.ReflectV1AlphaServiceName+"/")), allowedOrigins))
}

// Draining returns a context for [Serve] that ends delay after ctx does,
// having called drain when ctx ended: a server about to stop first says so
// (its health turns NOT_SERVING) and keeps serving for delay, time for
// balancers and probes to notice and send calls elsewhere, and only then
// stops taking calls. Call stop when serving is over.
func Draining(ctx context.Context, drain func(), delay time.Duration) (_ context.Context, stop func()) {
	serveCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		select {
		case <-serveCtx.Done():
			return
		case <-ctx.Done():
		}
		drain()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-serveCtx.Done():
		}
		cancel()
	}()
	return serveCtx, cancel
}
