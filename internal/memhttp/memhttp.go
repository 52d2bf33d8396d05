// Package memhttp serves HTTP over an in-memory listener: the whole net/http
// stack, HTTP/1.1 and HTTP/2 cleartext (h2c) included, without opening a port.
// Tests use it to run real servers and real clients side by side.
package memhttp

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// Listener is a [net.Listener] whose connections are in-memory pipes made by
// [Listener.DialContext].
type Listener struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

// NewListener returns an open listener.
func NewListener() *Listener {
	return &Listener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

// Accept waits for the next dialed connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops the listener; pending and later dials fail. Connections already
// accepted stay open until their owners close them.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

// Addr returns a placeholder address.
func (l *Listener) Addr() net.Addr { return addr{} }

// DialContext connects to the listener. Network and address are ignored, so
// it can be used as [http.Transport.DialContext] for any URL. It fails with an
// error wrapping [net.ErrClosed] once the listener is closed.
func (l *Listener) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, dialError(net.ErrClosed)
	default:
	}
	server, client := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.closed:
		err := net.ErrClosed
		server.Close()
		client.Close()
		return nil, dialError(err)
	case <-ctx.Done():
		server.Close()
		client.Close()
		return nil, dialError(ctx.Err())
	}
}

func dialError(err error) error {
	return &net.OpError{Op: "dial", Net: "memory", Err: err}
}

type addr struct{}

func (addr) Network() string { return "memory" }
func (addr) String() string  { return "memory" }

// Server runs an [http.Server] on a [Listener].
type Server struct {
	srv       *http.Server
	lis       *Listener
	serveErr  chan error
	waitOnce  sync.Once
	waitError error

	mu         sync.Mutex
	transports []*http.Transport // made by Client and HTTP1Client
}

// Serve starts srv on a new in-memory listener. If srv.Protocols is nil it is
// set to HTTP/1.1 plus unencrypted HTTP/2, the production setup here.
func Serve(srv *http.Server) *Server {
	if srv.Protocols == nil {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	s := &Server{srv: srv, lis: NewListener(), serveErr: make(chan error, 1)}
	go func() { s.serveErr <- srv.Serve(s.lis) }()
	return s
}

// New serves h with a plain [http.Server] speaking HTTP/1.1 and h2c.
func New(h http.Handler) *Server {
	return Serve(&http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second})
}

// URL is the base URL to use with the server's clients. Its host is never
// resolved: every dial goes to the in-memory listener. It names a port, as
// balancers' targets must.
func (s *Server) URL() string { return "http://memhttp.invalid:80" }

// Listener returns the server's listener, to build custom transports.
func (s *Server) Listener() *Listener { return s.lis }

// Client returns a client that speaks HTTP/2 with prior knowledge (h2c), as a
// gRPC client does.
func (s *Server) Client() *http.Client {
	t := s.transport()
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}
}

// HTTP1Client returns a client that speaks HTTP/1.1 only, as curl does by
// default.
func (s *Server) HTTP1Client() *http.Client {
	t := s.transport()
	t.Protocols.SetHTTP1(true)
	return &http.Client{Transport: t}
}

func (s *Server) transport() *http.Transport {
	t := &http.Transport{DialContext: s.lis.DialContext, Protocols: new(http.Protocols)}
	s.mu.Lock()
	s.transports = append(s.transports, t)
	s.mu.Unlock()
	return t
}

// closeIdleConns closes the idle connections of the server's own clients:
// [http.Server.Shutdown] waits up to five seconds for a connection that was
// dialed but never used, which a pooled client may leave behind.
func (s *Server) closeIdleConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range s.transports {
		t.CloseIdleConnections()
	}
}

// Shutdown stops the server gracefully; see [http.Server.Shutdown]. It may be
// called after Close, and more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closeIdleConns()
	return errors.Join(s.srv.Shutdown(ctx), s.wait())
}

// Close stops the server at once, closing every connection.
func (s *Server) Close() error {
	return errors.Join(s.srv.Close(), s.wait())
}

// wait returns the error Serve ended with, unless it is the expected one.
func (s *Server) wait() error {
	s.waitOnce.Do(func() {
		if err := <-s.serveErr; !errors.Is(err, http.ErrServerClosed) {
			s.waitError = err
		}
	})
	return s.waitError
}
