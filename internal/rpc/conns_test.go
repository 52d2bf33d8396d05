package rpc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"google.golang.org/protobuf/types/known/emptypb"
)

// syncBuffer is a log destination safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveLimited serves a health checker on loopback through Serve, with the
// connection cap of lis (a plain listener: the default), until the test ends.
func serveLimited(t *testing.T, lis net.Listener, logger *slog.Logger) {
	t.Helper()
	srv := NewHTTPServer(NewServeMux(grpchealth.NewStaticChecker("test.v1.TestService"), "test.v1.TestService"), logger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, srv, lis, logger) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

// A connection over the cap is closed at once, with nothing read or
// written: the client reads EOF (or a reset). Connections under the cap are
// served, and a slot is freed when its connection closes.
func TestConnLimitClosesConnectionsOverTheCap(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	lis := LimitConns(tcp, 2, logger)
	serveLimited(t, lis, logger)
	addr := tcp.Addr().String()

	dial := func() net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	// health checks the server over conn, HTTP/1.1 keep-alive.
	health := func(conn net.Conn) error {
		body := `{"service":"test.v1.TestService"}`
		fmt.Fprintf(conn, "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "SERVING") {
			return fmt.Errorf("got %s %s", resp.Status, b)
		}
		return nil
	}
	// refused reports whether conn was closed without an answer.
	refused := func(conn net.Conn) bool {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(make([]byte, 1))
		var netErr net.Error
		return n == 0 && err != nil && !(errors.As(err, &netErr) && netErr.Timeout())
	}

	a, b := dial(), dial()
	for _, conn := range []net.Conn{a, b} {
		if err := health(conn); err != nil {
			t.Fatalf("connection under the cap: %v", err)
		}
	}
	if got := lis.Open(); got != 2 {
		t.Fatalf("open connections: got %d, want 2", got)
	}
	if c := dial(); !refused(c) {
		t.Fatal("third connection was not closed")
	}
	if got := lis.Refused(); got != 1 {
		t.Errorf("refused: got %d, want 1", got)
	}
	// Over the cap, a Connect client's call fails at once: UNAVAILABLE
	// (EOF), or CANCELED when the reset reaches it while it is still
	// writing (connect-go names EPIPE and ECONNRESET so).
	client := connect.NewClient[emptypb.Empty, emptypb.Empty](
		&http.Client{Transport: &http.Transport{}}, "http://"+addr+"/grpc.health.v1.Health/Check", connect.WithGRPCWeb())
	_, err = client.CallUnary(context.Background(), connect.NewRequest(&emptypb.Empty{}))
	t.Logf("a Connect client over the cap: %v", err)
	if code := connect.CodeOf(err); code != connect.CodeUnavailable && code != connect.CodeCanceled {
		t.Errorf("Connect client over the cap: got %v, want unavailable or canceled", err)
	}

	// Closing a connection frees its slot.
	a.Close()
	for deadline := time.Now().Add(5 * time.Second); lis.Open() != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("open connections: %d after one closed, want 1", lis.Open())
		}
	}
	if err := health(dial()); err != nil {
		t.Fatalf("after a slot was freed: %v", err)
	}
	if err := health(b); err != nil {
		t.Fatalf("held connection: %v", err)
	}
	if !strings.Contains(logs.String(), "connections refused") || !strings.Contains(logs.String(), "max_conns=2") {
		t.Errorf("log has no line about refused connections:\n%s", logs.String())
	}
}

// Serve caps a plain listener at DefaultMaxConns.
func TestServeCapsByDefault(t *testing.T) {
	t.Parallel()
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	serveLimited(t, tcp, slog.New(slog.NewTextHandler(&logs, nil)))
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "serving"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no serving line")
		}
	}
	if want := fmt.Sprintf("max_conns=%d", DefaultMaxConns); !strings.Contains(logs.String(), want) {
		t.Errorf("log %q has no %s", logs.String(), want)
	}
}
