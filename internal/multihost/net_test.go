package multihost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The hosts' network: one /24 on a bridge in the root namespace, which holds
// bridgeAddr, where the test process, dnsmasq and the PostgreSQL forwarder
// listen.
const (
	subnet     = "10.77.0.0/24"
	bridgeAddr = "10.77.0.1"
	prefixLen  = 24
)

// netnsDir holds per-namespace files that `ip netns exec` bind-mounts over
// /etc: /etc/netns/NAME/resolv.conf becomes the host's /etc/resolv.conf.
const netnsDir = "/etc/netns"

// ourName matches every name this test gives a namespace or a link: "mh",
// the pid of the test process that made it, and "br" (the bridge) or a host
// ("o1", "p3"). At most 11 bytes, well within the 15 of an interface name.
var ourName = regexp.MustCompile(`^mh(\d+)(br|[op]\d)$`)

// host is one machine: a network namespace joined to the bridge by a veth
// pair, whose root end has the namespace's name and whose other end is eth0.
type host struct {
	ns   string
	addr string
}

// network is the bridge and the hosts on it.
type network struct {
	id           string // "mh<pid>": the prefix of every name
	bridge       string
	hosts        []*host
	dirs         []string // under netnsDir
	madeNetnsDir bool
}

// newNetwork deletes what a crashed run left, then makes the bridge; every
// piece is deleted when the test ends, whatever step failed.
func newNetwork(t *testing.T) *network {
	t.Helper()
	removeLeftovers(t)
	if out := ipOut(t, "-o", "addr", "show", "to", subnet); strings.TrimSpace(out) != "" {
		t.Fatalf("%s is in use on this machine; the test needs it for its hosts:\n%s", subnet, out)
	}
	n := &network{id: "mh" + strconv.Itoa(os.Getpid())}
	n.bridge = n.id + "br"
	t.Cleanup(func() { n.remove(t) })
	ip(t, "link", "add", n.bridge, "type", "bridge")
	ip(t, "addr", "add", fmt.Sprintf("%s/%d", bridgeAddr, prefixLen), "dev", n.bridge)
	ip(t, "link", "set", n.bridge, "up")
	return n
}

// addHost makes a host named suffix ("o1", "p2") with address addr.
func (n *network) addHost(t *testing.T, suffix, addr string) *host {
	t.Helper()
	h := &host{ns: n.id + suffix, addr: addr}
	ip(t, "netns", "add", h.ns)
	n.hosts = append(n.hosts, h)
	ip(t, "link", "add", h.ns, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
	ip(t, "link", "set", h.ns, "master", n.bridge, "up")
	ip(t, "-n", h.ns, "addr", "add", fmt.Sprintf("%s/%d", addr, prefixLen), "dev", "eth0")
	ip(t, "-n", h.ns, "link", "set", "eth0", "up")
	ip(t, "-n", h.ns, "link", "set", "lo", "up")
	return h
}

// useDNS makes the processes started in h resolve names with the dnsmasq on
// the bridge. The short timeout keeps a lookup well inside orders' 5 s
// re-resolution interval should dnsmasq not answer.
func (n *network) useDNS(t *testing.T, h *host) {
	t.Helper()
	if _, err := os.Stat(netnsDir); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir(netnsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		n.madeNetnsDir = true
	}
	dir := filepath.Join(netnsDir, h.ns)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	n.dirs = append(n.dirs, dir)
	conf := "nameserver " + bridgeAddr + "\noptions timeout:1 attempts:2\n"
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// remove deletes the hosts (their veth pairs go with their namespaces), the
// bridge and the resolv.conf files.
func (n *network) remove(t *testing.T) {
	for _, h := range n.hosts {
		if out, err := command("ip", "netns", "del", h.ns); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v\n%s", h.ns, err, out)
		}
	}
	if out, err := command("ip", "link", "del", n.bridge); err != nil && !strings.Contains(string(out), "Cannot find device") {
		t.Errorf("cleanup: ip link del %s: %v\n%s", n.bridge, err, out)
	}
	for _, dir := range n.dirs {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if n.madeNetnsDir {
		os.Remove(netnsDir) // only if empty: another user may have added to it since
	}
}

// removeLeftovers deletes the namespaces, links and resolv.conf files of a
// run that died before its cleanup (its servers died with it: see
// [proc.start]).
func removeLeftovers(t *testing.T) {
	t.Helper()
	for _, line := range strings.Split(ipOut(t, "netns", "list"), "\n") {
		if f := strings.Fields(line); len(f) > 0 && stale(t, f[0]) {
			ip(t, "netns", "del", f[0])
		}
	}
	// Lines like "7: mh123p1@if2: <BROADCAST,..." and "5: mh123br: <...".
	for _, line := range strings.Split(ipOut(t, "-o", "link", "show"), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if !stale(t, name) {
			continue
		}
		// A veth may go on its own meanwhile, with the namespace of its peer.
		if out, err := command("ip", "link", "del", name); err != nil && !strings.Contains(string(out), "Cannot find device") {
			t.Fatalf("ip link del %s: %v\n%s", name, err, out)
		}
	}
	entries, _ := os.ReadDir(netnsDir)
	for _, e := range entries {
		if stale(t, e.Name()) {
			if err := os.RemoveAll(filepath.Join(netnsDir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// stale reports whether name is one this test makes, left by a run that is
// gone. It fails the test if that run is still going: both would need the
// same addresses.
func stale(t *testing.T, name string) bool {
	t.Helper()
	m := ourName.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	pid, _ := strconv.Atoi(m[1])
	if pid == os.Getpid() {
		return true // a dead run's, whose pid this process was given again
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err == nil && strings.TrimSpace(string(comm)) == "multihost.test" {
		t.Fatalf("%s belongs to a multihost test still running (pid %d); both need %s", name, pid, subnet)
	}
	return true
}

// ip runs the ip command and fails the test if it fails.
func ip(t *testing.T, args ...string) {
	t.Helper()
	ipOut(t, args...)
}

// ipOut runs the ip command and returns its output; it fails the test if
// the command fails.
func ipOut(t *testing.T, args ...string) string {
	t.Helper()
	out, err := command("ip", args...)
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// command runs a short command, within 10 s.
func command(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}
