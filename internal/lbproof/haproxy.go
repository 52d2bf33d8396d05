package lbproof

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// HAProxy is a running HAProxy in front of payments replicas.
type HAProxy struct {
	Addr string // where orders should send its payment calls
	cmd  *exec.Cmd
}

// Mode is how HAProxy balances.
type Mode string

// Modes.
const (
	// TCP balances connections (L4): each HTTP/2 connection, with all the
	// calls multiplexed on it, goes to one replica.
	TCP Mode = "tcp"
	// HTTP balances requests (L7): HAProxy ends the client's HTTP/2
	// connection and sends each call to the next replica over its own.
	HTTP Mode = "http"
)

// StartHAProxy runs haproxy in mode on a free loopback port, round robin
// over backends (host:port), with its config in dir. It returns
// [ErrNoHAProxy] if haproxy is not installed.
func StartHAProxy(ctx context.Context, dir string, mode Mode, backends []string) (*HAProxy, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		return nil, ErrNoHAProxy
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	proto := "" // L4: bytes pass through
	if mode == HTTP {
		proto = " proto h2" // h2c on both sides, as gRPC needs
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `global
  maxconn 4096
defaults
  mode %[1]s
  timeout connect 2s
  timeout client 1m
  timeout server 1m
frontend payments
  bind %[2]s%[3]s
  default_backend replicas
backend replicas
  balance roundrobin
`, mode, addr, proto)
	for i, b := range backends {
		fmt.Fprintf(&cfg, "  server s%d %s%s\n", i+1, b, proto)
	}
	path := filepath.Join(dir, "haproxy-"+string(mode)+".cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", path) // -db: stay in the foreground
	out, err := os.Create(filepath.Join(dir, "haproxy-"+string(mode)+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h := &HAProxy{Addr: addr, cmd: cmd}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return h, nil
		}
		if time.Now().After(deadline) {
			h.Close()
			log, _ := os.ReadFile(out.Name())
			return nil, fmt.Errorf("haproxy did not listen on %s: %s", addr, log)
		}
	}
}

// Close stops haproxy.
func (h *HAProxy) Close() {
	h.cmd.Process.Kill()
	h.cmd.Wait()
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer lis.Close()
	return lis.Addr().String(), nil
}
