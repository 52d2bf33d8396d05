package multihost

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/internal/rpc"
)

// proc is one server process, started in a host's namespace (or in the root
// namespace when ns is empty).
type proc struct {
	name string
	ns   string
	bin  string
	args []string
	log  logBuffer // everything it wrote

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

// start starts p; stop it with stop or kill9. `ip netns exec` enters the
// namespace, mounts /etc/netns/NAME's files over /etc, and execs the
// server, so the pid is the server's own.
func (p *proc) start(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	name, args := p.bin, p.args
	if p.ns != "" {
		name, args = "ip", append([]string{"netns", "exec", p.ns, p.bin}, p.args...)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &p.log, &p.log
	// Should the test process die before its cleanup (a panic, a timeout),
	// the kernel kills its servers too, so none is left holding an address
	// or a port the next run needs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.name, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	p.cmd, p.done = cmd, done
}

// kill9 kills p at once, as a crash or an OOM kill would.
func (p *proc) kill9() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop ends p gracefully, or kills it if it takes over 5 s.
func (p *proc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// waitHealthy waits until the server at url answers its gRPC health check.
func waitHealthy(t *testing.T, p *proc, url string) {
	t.Helper()
	c := grpchealth.NewClient(rpc.NewH2CClient(), url, connect.WithGRPC())
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) { // polls until the process is up
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := c.Check(ctx, &grpchealth.CheckRequest{})
		cancel()
		if err == nil && resp.Status == grpchealth.StatusServing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s at %s not healthy within 20s: %v\nits log:\n%s", p.name, url, err, tail(p.log.String(), 3000))
		}
	}
}

// dnsServer is dnsmasq on the bridge address, answering for the names in
// the hosts files of its directory and nothing else.
type dnsServer struct {
	proc
	hostsDir string // dnsmasq watches it (inotify) and rereads what changes
	scratch  string
}

func startDNS(t *testing.T, dir string) *dnsServer {
	t.Helper()
	d := &dnsServer{hostsDir: filepath.Join(dir, "hosts.d"), scratch: dir}
	if err := os.Mkdir(d.hostsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.proc = proc{name: "dnsmasq", bin: "dnsmasq", args: []string{
		// In the foreground, with no pid file, and keeping its user and group:
		// it reads the hosts files in the test's 0700 temporary directory, and
		// a change of group would clear the signal that kills it with the test
		// process (see proc.start).
		"--no-daemon",
		"--conf-file=/dev/null", // none of the machine's configuration
		"--no-resolv", "--no-hosts",
		"--hostsdir=" + d.hostsDir,
		"--listen-address=" + bridgeAddr, "--bind-interfaces", "--port=53",
		"--local-ttl=1", // clients see a change within a second
		"--log-facility=-", "--log-queries",
	}}
	d.start(t)
	t.Cleanup(d.stop)
	return d
}

// set makes name answer with exactly addrs, and returns once dnsmasq does.
func (d *dnsServer) set(t *testing.T, name string, addrs ...string) time.Time {
	t.Helper()
	var b bytes.Buffer
	for _, a := range addrs {
		b.WriteString(a + " " + name + "\n")
	}
	// Written beside the directory and renamed into it, so that dnsmasq never
	// reads half a file.
	tmp := filepath.Join(d.scratch, "payments.hosts")
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(d.hostsDir, "payments")); err != nil {
		t.Fatal(err)
	}
	want := slices.Sorted(slices.Values(addrs))
	var got []string
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) { // polls until dnsmasq has reread the file
		got, err = lookup(name)
		if err == nil && slices.Equal(got, want) {
			return time.Now()
		}
	}
	t.Fatalf("dnsmasq answers %s with %v (err %v) 5s after the change, want %v\nits log:\n%s", name, got, err, want, tail(d.log.String(), 3000))
	return time.Time{}
}

// lookup asks the dnsmasq on the bridge for name's IPv4 addresses, sorted.
func lookup(name string) ([]string, error) {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(bridgeAddr, "53"))
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ips, err := r.LookupNetIP(ctx, "ip4", name+".") // absolute: no search domains
	var addrs []string
	for _, ip := range ips {
		addrs = append(addrs, ip.String())
	}
	slices.Sort(addrs)
	return addrs, err
}

// forward accepts connections on listen and relays each to target: the
// hosts reach PostgreSQL, which listens on loopback only, through the
// bridge address. Everything closes when the test ends.
func forward(t *testing.T, listen, target string) {
	t.Helper()
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("PostgreSQL forwarder: %v", err)
	}
	var (
		mu     sync.Mutex
		conns  = map[net.Conn]bool{}
		closed bool
		wg     sync.WaitGroup
	)
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			c.Close()
			return false
		}
		conns[c] = true
		return true
	}
	relay := func(down net.Conn) {
		defer down.Close()
		up, err := net.DialTimeout("tcp", target, 5*time.Second)
		if err != nil || !track(up) {
			return
		}
		defer up.Close()
		// Either side ending ends both: PostgreSQL's protocol has no half-close.
		wg.Go(func() {
			io.Copy(up, down)
			up.Close()
			down.Close()
		})
		io.Copy(down, up)
	}
	wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			if track(c) {
				wg.Go(func() { relay(c) })
			}
		}
	})
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// logBuffer collects a process's output; the test reads it while the
// process may still write.
type logBuffer = cmdtest.Logs

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
