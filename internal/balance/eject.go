package balance

import (
	"context"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/bufbuild/httplb"
	"github.com/bufbuild/httplb/conn"
	"github.com/bufbuild/httplb/health"
)

// ejector adds passive health checking to httplb: it watches the outcome of
// every request but health checks, per replica address, and after
// [ejectAfterFailures] transport failures in a row it marks the replica
// unhealthy for [ejectFor], whatever the active health checks say
// meanwhile. A replica that was killed, or answers UNAVAILABLE, stops
// getting calls after two of them instead of at the next health check.
type ejector struct {
	onEject  func(addr string) // nil: nobody is told
	onChange func()            // nil: nobody is told

	mu       sync.Mutex
	replicas map[string]*replica // by host:port
}

type replica struct {
	conn         conn.Conn
	tracker      health.Tracker
	failures     int
	ejectedUntil time.Time
	lastActive   health.State // last state the active checker reported
}

func newEjector() *ejector {
	return &ejector{replicas: make(map[string]*replica)}
}

// checker wraps the active checker so the ejector learns each connection's
// tracker and can override what the active checks report.
func (e *ejector) checker(active health.Checker) health.Checker {
	return checkerFunc(func(ctx context.Context, c conn.Conn, tracker health.Tracker) io.Closer {
		addr := c.Address().HostPort
		e.mu.Lock()
		e.replicas[addr] = &replica{conn: c, tracker: tracker, lastActive: health.StateUnknown}
		e.mu.Unlock()
		closer := active.New(ctx, c, trackerFunc(func(c conn.Conn, state health.State) {
			e.mu.Lock()
			r := e.replicas[addr]
			if r != nil {
				r.lastActive = state
				if time.Now().Before(r.ejectedUntil) {
					state = health.StateUnhealthy
				}
			}
			e.mu.Unlock()
			tracker.UpdateHealthState(c, state)
			e.changed()
		}))
		return closerFunc(func() error {
			e.mu.Lock()
			if r := e.replicas[addr]; r != nil && r.conn == c {
				delete(e.replicas, addr)
			}
			e.mu.Unlock()
			return closer.Close()
		})
	})
}

// health returns the state of every connected replica by address.
func (e *ejector) health() map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	states := make(map[string]string, len(e.replicas))
	for addr, r := range e.replicas {
		switch {
		case time.Now().Before(r.ejectedUntil):
			states[addr] = Ejected
		case r.lastActive == health.StateHealthy:
			states[addr] = Healthy
		case r.lastActive == health.StateUnhealthy:
			states[addr] = Unhealthy
		default:
			states[addr] = Unknown
		}
	}
	return states
}

// observe records the outcome of one request to addr.
func (e *ejector) observe(addr string, failed bool) {
	e.mu.Lock()
	r := e.replicas[addr]
	if r == nil {
		e.mu.Unlock()
		return
	}
	if !failed {
		r.failures = 0
		e.mu.Unlock()
		return
	}
	r.failures++
	eject := r.failures >= ejectAfterFailures && !time.Now().Before(r.ejectedUntil)
	if eject {
		r.ejectedUntil = time.Now().Add(ejectFor)
		r.failures = 0
	}
	c, tracker := r.conn, r.tracker
	e.mu.Unlock()
	if eject {
		if e.onEject != nil {
			e.onEject(addr)
		}
		tracker.UpdateHealthState(c, health.StateUnhealthy)
		e.changed()
		// Let the active checks bring it back once the ejection ends.
		time.AfterFunc(ejectFor, func() { e.restore(addr, c) })
	}
}

// restore reports the last active state again once an ejection has ended.
func (e *ejector) restore(addr string, c conn.Conn) {
	e.mu.Lock()
	r := e.replicas[addr]
	if r == nil || r.conn != c || time.Now().Before(r.ejectedUntil) {
		e.mu.Unlock()
		return
	}
	state, tracker := r.lastActive, r.tracker
	e.mu.Unlock()
	tracker.UpdateHealthState(c, state)
	e.changed()
}

// changed tells onChange that a replica's health may have changed.
func (e *ejector) changed() {
	if e.onChange != nil {
		e.onChange()
	}
}

// transport returns the h2c transport for httplb, with each replica's
// round-tripper reporting to the ejector.
func (e *ejector) transport() httplb.Transport {
	return transportFunc(func(scheme, addr string, cfg httplb.TransportConfig) httplb.RoundTripperResult {
		t := &http.Transport{
			DialContext:            cfg.DialFunc,
			IdleConnTimeout:        cfg.IdleConnTimeout,
			MaxResponseHeaderBytes: cfg.MaxResponseHeaderBytes,
			DisableCompression:     cfg.DisableCompression,
			Protocols:              new(http.Protocols),
			HTTP2: &http.HTTP2Config{
				// Ping a quiet connection so a replica that vanished without a
				// FIN (a pod whose node died) is noticed within seconds.
				SendPingTimeout: 5 * time.Second,
				PingTimeout:     3 * time.Second,
			},
		}
		t.Protocols.SetUnencryptedHTTP2(true)
		rt := roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			// The transport gets headers of its own: HTTP/2 may still be
			// encoding them after RoundTrip has returned on a deadline, while
			// connect-go's next attempt of a retried call (rpc.RetryInterceptor)
			// writes into the header map it sent the first time.
			sent := *req
			sent.Header = req.Header.Clone()
			resp, err := t.RoundTrip(&sent)
			if isProbe(req.Context()) {
				return resp, err // the active checks' own news
			}
			if err != nil || failedAtTransport(resp) {
				if req.Context().Err() == nil { // else the caller gave up: no news of the replica
					e.observe(addr, true)
				}
				return resp, err
			}
			// gRPC sends its status in trailers, known once the body is read.
			resp.Body = &trailerWatch{ReadCloser: resp.Body, resp: resp, done: func(failed bool) { e.observe(addr, failed) }}
			return resp, err
		})
		return httplb.RoundTripperResult{RoundTripper: rt, Scheme: "http", Close: t.CloseIdleConnections}
	})
}

// failedAtTransport reports whether a response means the replica could not
// serve: an HTTP 502/503/504, or gRPC UNAVAILABLE in the headers (a
// "trailers-only" error). Application errors such as a declined card are
// successes here.
func failedAtTransport(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return resp.Header.Get("Grpc-Status") == grpcUnavailable
}

// grpcUnavailable is the gRPC status code of UNAVAILABLE.
const grpcUnavailable = "14"

// trailerWatch reports, when the body has been read to its end, whether the
// gRPC status in the trailers was UNAVAILABLE; a body that breaks while being
// read is a failure too. A body closed early reports nothing.
type trailerWatch struct {
	io.ReadCloser
	resp *http.Response
	done func(failed bool)
	once sync.Once
}

func (w *trailerWatch) Read(p []byte) (int, error) {
	n, err := w.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		w.once.Do(func() { w.done(w.resp.Trailer.Get("Grpc-Status") == grpcUnavailable) })
	case err != nil && w.resp.Request.Context().Err() == nil:
		w.once.Do(func() { w.done(true) })
	}
	return n, err
}

type checkerFunc func(context.Context, conn.Conn, health.Tracker) io.Closer

func (f checkerFunc) New(ctx context.Context, c conn.Conn, t health.Tracker) io.Closer {
	return f(ctx, c, t)
}

type trackerFunc func(conn.Conn, health.State)

func (f trackerFunc) UpdateHealthState(c conn.Conn, s health.State) { f(c, s) }

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

type transportFunc func(scheme, addr string, cfg httplb.TransportConfig) httplb.RoundTripperResult

func (f transportFunc) NewRoundTripper(scheme, addr string, cfg httplb.TransportConfig) httplb.RoundTripperResult {
	return f(scheme, addr, cfg)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
