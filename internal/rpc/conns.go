package rpc

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxConns is how many connections a server serves at once unless it
// is told otherwise: far more than a shop's ingress, its orders instances or
// its load generator open (an HTTP/2 connection carries up to 250 calls at
// once), and few enough that a client opening connections in a loop cannot
// run the process out of memory or file descriptors.
const DefaultMaxConns = 1024

// refusalLogInterval is how often, at most, a server logs that it refused
// connections, so that a flood of them does not become a flood of log lines.
const refusalLogInterval = 10 * time.Second

// ConnLimit is a listener that serves at most a fixed number of connections
// at once. A connection accepted over the cap is closed at once, before
// anything is read from it or written to it, and the listener goes on
// accepting: the client sees its connection closed before any answer (EOF or
// "connection reset by peer": curl says "Empty reply from server" or
// "Connection reset by peer", grpc-go UNAVAILABLE, connect-go UNAVAILABLE, or
// CANCELED if the reset reaches it while it is still writing its request)
// and may retry later or elsewhere. Accepting and closing is chosen over not accepting
// (golang.org/x/net/netutil.LimitListener): connections left waiting in the
// kernel's backlog look connected to their clients, whose requests then hang
// without a word until they time out.
//
// A slot is freed when the server closes the connection: after its client
// goes away, after [http.Server.IdleTimeout] without a request, or at
// shutdown.
type ConnLimit struct {
	net.Listener
	max    int
	logger *slog.Logger

	open    atomic.Int64
	refused atomic.Int64 // in all
	unseen  atomic.Int64 // refused since the last log line
	lastLog atomic.Int64 // unix nanoseconds of the last log line
}

// LimitConns returns lis limited to max connections at once ([DefaultMaxConns]
// if max <= 0). Refusals are logged to logger (nil: not logged), at most once
// every 10 s.
func LimitConns(lis net.Listener, max int, logger *slog.Logger) *ConnLimit {
	if max <= 0 {
		max = DefaultMaxConns
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &ConnLimit{Listener: lis, max: max, logger: logger}
}

// Accept returns the next connection under the cap, closing every one over
// it as it comes.
func (l *ConnLimit) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= int64(l.max) {
			return &limitedConn{Conn: c, release: func() { l.open.Add(-1) }}, nil
		}
		l.open.Add(-1)
		c.Close()
		l.refuse(c.RemoteAddr())
	}
}

func (l *ConnLimit) refuse(from net.Addr) {
	l.refused.Add(1)
	l.unseen.Add(1)
	now := time.Now().UnixNano()
	last := l.lastLog.Load()
	if now-last < int64(refusalLogInterval) || !l.lastLog.CompareAndSwap(last, now) {
		return
	}
	l.logger.Warn("connections refused: at the connection cap",
		"max_conns", l.max, "refused", l.unseen.Swap(0), "last_from", from.String())
}

// Max returns the cap.
func (l *ConnLimit) Max() int { return l.max }

// Open returns how many connections are open now.
func (l *ConnLimit) Open() int { return int(l.open.Load()) }

// Refused returns how many connections were closed for being over the cap.
func (l *ConnLimit) Refused() int64 { return l.refused.Load() }

// limitedConn frees its slot when it is closed, once.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite lets net/http half-close an HTTP/1.1 connection before closing
// it, as it does with a bare TCP connection, so the client reads the last
// answer rather than a reset.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps net/http's sendfile path of a TCP connection.
func (c *limitedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
