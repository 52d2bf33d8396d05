package multihost

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/jackc/pgx/v5"
)

// The name orders resolves to find payments, as a headless Service's.
const (
	paymentsName = "payments.shop.test"
	paymentsPort = "8081"
	ordersPort   = "8080"
)

// resolveInterval is how often orders resolves the payments name again: the
// default of cmd/orders (orders.PaymentsConfig.ResolveInterval).
const resolveInterval = 5 * time.Second

// A host that joins DNS must get calls within joinBound.
const joinBound = 10 * time.Second

// cluster is the shop on six hosts: what every step uses.
type cluster struct {
	dns      *dnsServer
	db       string                                             // the test's schema, as the test process reaches it
	payments []*serverHost                                      // payments-1..4; the fourth starts in its own step
	orders   []*serverHost                                      // orders-1, orders-2
	clients  map[*serverHost]ordersv1connect.OrderServiceClient // the one customer's, per orders host
}

// serverHost is a server process and the host it runs on.
type serverHost struct {
	*proc
	addr string
	url  string
}

// TestMultiHost runs orders and payments on hosts of their own and shows
// that charges spread over every payments host, that orders hosts share
// orders and their changes, and that payments hosts may leave and join DNS
// under load without costing an order.
func TestMultiHost(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the commands and runs them on six hosts for about 15 s")
	}
	requirements(t)
	began := time.Now()
	c := newCluster(t)
	t.Logf("built, and five hosts up, in %v", time.Since(began).Round(time.Millisecond))

	t.Run("ChargesSpreadOverEveryPaymentsHost", func(t *testing.T) { testSpread(t, c) })
	t.Run("OrderReadAndWatchedOnTheOtherOrdersHost", func(t *testing.T) { testCrossOrders(t, c) })
	t.Run("PaymentsHostLeavingDNSAndKilledCostsNoOrder", func(t *testing.T) { testLeave(t, c) })
	t.Run("PaymentsHostJoiningDNSGetsCallsWithin10s", func(t *testing.T) { testJoin(t, c) })
	t.Logf("whole test: %v", time.Since(began).Round(time.Millisecond))
}

// requirements skips the test, or fails it under CI=true, when the machine
// lacks what it needs.
func requirements(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (to make network namespaces)")
	}
	for _, need := range []struct{ cmd, pkg string }{{"ip", "iproute2"}, {"dnsmasq", "dnsmasq"}} {
		if _, err := exec.LookPath(need.cmd); err != nil {
			missing = append(missing, need.cmd+" (Debian package "+need.pkg+")")
		}
	}
	if os.Getenv("TEST_DATABASE_URL") == "" {
		missing = append(missing, "$TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	if len(missing) == 0 {
		return
	}
	why := "the multi-host test needs " + strings.Join(missing, ", ")
	if os.Getenv("CI") == "true" {
		t.Fatal(why + ": .ci/run runs as root, installs iproute2 and dnsmasq and sets TEST_DATABASE_URL")
	}
	t.Skip(why + "; it runs in CI")
}

// newCluster builds the commands and starts dnsmasq, the PostgreSQL
// forwarder, three payments hosts and two orders hosts; the network has a
// fourth payments host, not started. Everything stops when the test ends.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	db := pgtest.URL(t)
	dir := t.TempDir()
	build(t, dir)
	serviceKey, sessionKey := keyFile(t, dir, "service.key"), keyFile(t, dir, "session.key")

	nw := newNetwork(t)
	forward(t, net.JoinHostPort(bridgeAddr, "5432"), postgresAddr(t))
	hostDB := viaBridge(t, db)
	c := &cluster{dns: startDNS(t, dir), db: db, clients: map[*serverHost]ordersv1connect.OrderServiceClient{}}

	for i := range 4 {
		h := nw.addHost(t, fmt.Sprintf("p%d", i+1), fmt.Sprintf("10.77.0.%d", 11+i))
		name := fmt.Sprintf("payments-%d", i+1)
		c.payments = append(c.payments, &serverHost{addr: h.addr, url: "http://" + net.JoinHostPort(h.addr, paymentsPort), proc: &proc{
			name: name, ns: h.ns, bin: filepath.Join(dir, "payments"), args: []string{
				"-addr", net.JoinHostPort(h.addr, paymentsPort), "-name", name, "-db", hostDB, "-service-key-file", serviceKey,
			},
		}})
	}
	for i := range 2 {
		h := nw.addHost(t, fmt.Sprintf("o%d", i+1), fmt.Sprintf("10.77.0.%d", 21+i))
		nw.useDNS(t, h)
		c.orders = append(c.orders, &serverHost{addr: h.addr, url: "http://" + net.JoinHostPort(h.addr, ordersPort), proc: &proc{
			name: fmt.Sprintf("orders-%d", i+1), ns: h.ns, bin: filepath.Join(dir, "orders"), args: []string{
				"-addr", net.JoinHostPort(h.addr, ordersPort), "-db", hostDB,
				"-payments", "dns:///" + net.JoinHostPort(paymentsName, paymentsPort),
				"-service-key-file", serviceKey, "-session-key-file", sessionKey,
				"-order-rate", "0", // one customer places every order of the test
			},
		}})
	}
	all := append(slices.Clone(c.payments), c.orders...)
	t.Cleanup(func() { // all at once: each takes a second to drain
		var wg sync.WaitGroup
		for _, s := range all {
			wg.Go(s.stop)
		}
		wg.Wait()
	})
	// Runs before the stops above: the logs of a failed run, processes
	// still up.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range append([]*proc{&c.dns.proc}, procs(all)...) {
			t.Logf("%s log:\n%s", p.name, tail(p.log.String(), 4000))
		}
	})

	c.dns.set(t, paymentsName, c.payments[0].addr, c.payments[1].addr, c.payments[2].addr)
	for _, p := range c.payments[:3] {
		p.start(t)
	}
	for _, p := range c.payments[:3] {
		waitHealthy(t, p.proc, p.url)
	}
	for _, o := range c.orders {
		o.start(t)
	}
	for _, o := range c.orders {
		waitHealthy(t, o.proc, o.url)
	}

	// One customer for every call: its session, signed on orders-1, is
	// good on orders-2, which has the same session key.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	session, err := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), c.orders[0].url, connect.WithGRPC()).
		CreateSession(ctx, connect.NewRequest(&ordersv1.CreateSessionRequest{}))
	if err != nil {
		t.Fatalf("CreateSession on orders-1: %v", err)
	}
	for _, o := range c.orders {
		c.clients[o] = ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), o.url, connect.WithGRPC(),
			connect.WithInterceptors(auth.Bearer(session.Msg.GetToken())))
	}
	return c
}

func procs(hosts []*serverHost) []*proc {
	var ps []*proc
	for _, h := range hosts {
		ps = append(ps, h.proc)
	}
	return ps
}

// build builds cmd/orders and cmd/payments into dir.
func build(t *testing.T, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir, "./cmd/orders", "./cmd/payments")
	cmd.Dir = filepath.Join("..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
}

func keyFile(t *testing.T, dir, name string) string {
	t.Helper()
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := auth.WriteKeyFile(path, key); err != nil {
		t.Fatal(err)
	}
	return path
}

// postgresAddr is the host:port of the database at $TEST_DATABASE_URL.
func postgresAddr(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(os.Getenv("TEST_DATABASE_URL"))
	if err != nil || u.Hostname() == "" {
		t.Fatalf("$TEST_DATABASE_URL must name a TCP host, which the hosts reach through a forwarder (err %v)", err)
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// viaBridge returns db (with its schema) as the hosts reach it: through the
// forwarder on the bridge address.
func viaBridge(t *testing.T, db string) string {
	t.Helper()
	u, err := url.Parse(db)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = net.JoinHostPort(bridgeAddr, "5432")
	return u.String()
}

// 1. Each orders host spreads its charges over every payments host, per
// request: GetStats counts its calls per replica, and the shared payments
// table says which replica charged each payment.
func testSpread(t *testing.T, c *cluster) {
	want := []string{"payments-1", "payments-2", "payments-3"}
	// An orders host's first calls may come before it has health-checked
	// every replica; go on until each has called all three.
	deadline := time.Now().Add(15 * time.Second)
	for n := 0; ; n++ {
		missing := ""
		for _, o := range c.orders {
			if got := c.stats(t, o); !hasAll(got, want) {
				missing += fmt.Sprintf(" %s called %v;", o.name, got)
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 15 s of orders, not every orders host called payments-1..3:%s", missing)
		}
		for _, o := range c.orders {
			c.placeOrder(t, o, fmt.Sprintf("warm-%d", n))
		}
	}

	const batch = 30 // orders per orders host
	before := map[*serverHost]map[string]int64{}
	for _, o := range c.orders {
		before[o] = c.stats(t, o)
	}
	for i := range batch {
		for _, o := range c.orders {
			c.placeOrder(t, o, fmt.Sprintf("spread-%d", i))
		}
	}
	for _, o := range c.orders {
		after := c.stats(t, o)
		var shares []string
		for _, name := range want {
			n := after[name] - before[o][name]
			shares = append(shares, fmt.Sprintf("%s %d", name, n))
			// Round robin gives each about 10 of 30; a connection-pinned
			// client would give one all 30.
			if n < batch/6 {
				t.Errorf("%s sent %d of %d charges to %s, want about a third: calls are not spread per request", o.name, n, batch, name)
			}
		}
		t.Logf("%s: %d charges went to %s", o.name, batch, strings.Join(shares, ", "))
	}

	perReplica := chargesPerReplica(t, c.db)
	for _, name := range want {
		if perReplica[name] == 0 {
			t.Errorf("the payments table has no charge by %s (%v)", name, perReplica)
		}
	}
	t.Logf("the shared payments table, charges per replica: %v", perReplica)
}

func hasAll(calls map[string]int64, names []string) bool {
	for _, n := range names {
		if calls[n] == 0 {
			return false
		}
	}
	return true
}

// chargesPerReplica counts the rows of the payments table by the replica
// that wrote them.
func chargesPerReplica(t *testing.T, db string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT replica, count(*) FROM payments GROUP BY replica`)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for rows.Next() {
		var name string
		var n int
		if err := rows.Scan(&name, &n); err != nil {
			t.Fatal(err)
		}
		counts[name] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return counts
}

// 2. An order placed on orders-1 is read on orders-2, and a WatchOrders
// stream opened on orders-2 before the order was placed delivers it.
func testCrossOrders(t *testing.T, c *cluster) {
	a, b := c.orders[0], c.orders[1]
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	watch, err := c.clients[b].WatchOrders(ctx, connect.NewRequest(&ordersv1.WatchOrdersRequest{}))
	if err != nil {
		t.Fatalf("WatchOrders on %s: %v", b.name, err)
	}
	defer watch.Close()
	watch.ResponseHeader() // sent once the stream is subscribed: every later change must reach it

	order := c.placeOrder(t, a, "cross-1")
	placed := time.Now()
	// The change must reach orders-2's watcher within a few seconds.
	stop := time.AfterFunc(5*time.Second, cancel)
	defer stop.Stop()

	getCtx, getCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer getCancel()
	got, err := c.clients[b].GetOrder(getCtx, connect.NewRequest(&ordersv1.GetOrderRequest{Id: order.GetId()}))
	switch {
	case err != nil:
		t.Errorf("GetOrder on %s of order %s placed on %s: %v", b.name, order.GetId(), a.name, err)
	case got.Msg.GetOrder().GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID || got.Msg.GetOrder().GetPaymentId() != order.GetPaymentId():
		t.Errorf("GetOrder on %s: got %v paid by %q, want PAID by %q as %s answered", b.name,
			got.Msg.GetOrder().GetStatus(), got.Msg.GetOrder().GetPaymentId(), order.GetPaymentId(), a.name)
	default:
		t.Logf("%s reads order %s placed on %s: %v", b.name, order.GetId(), a.name, got.Msg.GetOrder().GetStatus())
	}

	var seen []string
	for watch.Receive() {
		o := watch.Msg().GetOrder()
		if o.GetId() != order.GetId() {
			continue
		}
		seen = append(seen, o.GetStatus().String())
		if o.GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_PAID {
			t.Logf("%s's WatchOrders delivered the order placed on %s %v after CreateOrder returned (changes seen: %v)",
				b.name, a.name, time.Since(placed).Round(time.Millisecond), seen)
			return
		}
	}
	t.Errorf("WatchOrders on %s, opened before order %s was placed on %s, did not deliver it as PAID within 5 s (its changes seen: %v; stream: %v): changes made on one orders instance must reach the watchers of every instance",
		b.name, order.GetId(), a.name, seen, watch.Err())
}

// 3. A payments host taken out of DNS, and killed once orders stopped
// calling it, costs no order placed meanwhile.
func testLeave(t *testing.T, c *cluster) {
	l := c.startLoad("leave")
	defer l.stop()
	l.waitPlaced(t, 20, 10*time.Second)

	gone := c.payments[2]
	left := c.dns.set(t, paymentsName, c.payments[0].addr, c.payments[1].addr)
	lastCalls := c.waitUnused(t, gone.name, left)
	gone.kill9()
	placedAtKill := l.placed()
	l.waitPlaced(t, placedAtKill+50, 10*time.Second)

	placed, failures := l.stop()
	if len(failures) > 0 {
		t.Errorf("%d of %d orders failed while %s left DNS and was killed:\n%s", len(failures), placed+len(failures), gone.name, strings.Join(failures, "\n"))
	}
	t.Logf("%s left DNS; its last calls came %s after; SIGKILLed then; %d orders placed meanwhile (%d after the kill), %d failed",
		gone.name, perHost(lastCalls), placed, placed-placedAtKill, len(failures))
}

// waitUnused waits until every orders host has stopped calling the replica
// name, which left DNS at left: its count stands still while 30 more calls
// go elsewhere. It returns, per orders host, when its last call to name was
// seen, after left.
func (c *cluster) waitUnused(t *testing.T, name string, left time.Time) map[string]time.Duration {
	t.Helper()
	type watch struct {
		calls, totalThen int64 // name's calls, and the host's total when they last changed
		seenAt           time.Time
	}
	watches := map[*serverHost]*watch{}
	lastCalls := map[string]time.Duration{}
	deadline := left.Add(3 * resolveInterval)
	for ; len(lastCalls) < len(c.orders); time.Sleep(100 * time.Millisecond) { // polls the counts
		for _, o := range c.orders {
			if _, done := lastCalls[o.name]; done {
				continue
			}
			s := c.stats(t, o)
			total := sum(s)
			w := watches[o]
			switch {
			case w == nil:
				watches[o] = &watch{calls: s[name], totalThen: total, seenAt: left}
			case s[name] != w.calls:
				*w = watch{calls: s[name], totalThen: total, seenAt: time.Now()}
			case total-w.totalThen >= 30: // a third would have gone to name
				lastCalls[o.name] = w.seenAt.Sub(left).Round(time.Millisecond)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("orders hosts still call %s %v after it left DNS (they resolve every %v); those that stopped: %s", name, 3*resolveInterval, resolveInterval, perHost(lastCalls))
		}
	}
	return lastCalls
}

// perHost formats durations by orders host: "orders-1 3.5s, orders-2 3.4s".
func perHost(d map[string]time.Duration) string {
	var s []string
	for _, host := range slices.Sorted(maps.Keys(d)) {
		s = append(s, fmt.Sprintf("%s %v", host, d[host]))
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func sum(calls map[string]int64) int64 {
	var n int64
	for _, c := range calls {
		n += c
	}
	return n
}

// 4. A payments host that joins DNS gets calls from every orders host
// within 10 s, under load, and no order fails meanwhile.
func testJoin(t *testing.T, c *cluster) {
	l := c.startLoad("join")
	defer l.stop()
	l.waitPlaced(t, 20, 10*time.Second)

	added := c.payments[3]
	added.start(t)
	waitHealthy(t, added.proc, added.url)
	joined := c.dns.set(t, paymentsName, c.payments[0].addr, c.payments[1].addr, added.addr)
	first := map[string]time.Duration{}
	for ; len(first) < len(c.orders); time.Sleep(50 * time.Millisecond) { // polls the counts
		for _, o := range c.orders {
			if _, ok := first[o.name]; !ok && c.stats(t, o)[added.name] > 0 {
				first[o.name] = time.Since(joined).Round(time.Millisecond)
			}
		}
		if time.Since(joined) > joinBound {
			t.Errorf("%s got no calls from every orders host within %v of joining DNS (orders resolve every %v); first calls: %s",
				added.name, joinBound, resolveInterval, perHost(first))
			break
		}
	}
	placed, failures := l.stop()
	if len(failures) > 0 {
		t.Errorf("%d of %d orders failed while %s joined:\n%s", len(failures), placed+len(failures), added.name, strings.Join(failures, "\n"))
	}
	t.Logf("%s joined DNS; its first calls came %s after; %d orders placed meanwhile, %d failed",
		added.name, perHost(first), placed, len(failures))
}

// stats returns the calls orders host o has sent to each payments replica.
func (c *cluster) stats(t *testing.T, o *serverHost) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.clients[o].GetStats(ctx, connect.NewRequest(&ordersv1.GetStatsRequest{}))
	if err != nil {
		t.Fatalf("GetStats on %s: %v", o.name, err)
	}
	calls := map[string]int64{}
	for _, r := range resp.Msg.GetReplicas() {
		calls[r.GetName()] = r.GetCalls()
	}
	return calls
}

// placeOrder places an order on o and fails the test unless it is PAID.
func (c *cluster) placeOrder(t *testing.T, o *serverHost, key string) *ordersv1.Order {
	t.Helper()
	order, err := c.createOrder(o, key)
	if err != nil {
		t.Fatalf("CreateOrder on %s: %v", o.name, err)
	}
	return order
}

// createOrder places an order on o and returns it if it is PAID.
func (c *cluster) createOrder(o *serverHost, key string) (*ordersv1.Order, error) {
	// Payments answer within 5 s, retries included.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.clients[o].CreateOrder(ctx, connect.NewRequest(&ordersv1.CreateOrderRequest{
		Items:          []*ordersv1.CartItem{{ProductId: "sticker-pack", Quantity: 1}},
		PaymentToken:   "tok_visa",
		IdempotencyKey: o.name + "-" + key,
	}))
	if err != nil {
		return nil, err
	}
	if st := resp.Msg.GetOrder().GetStatus(); st != ordersv1.OrderStatus_ORDER_STATUS_PAID {
		return nil, fmt.Errorf("order %s is %v, want PAID", resp.Msg.GetOrder().GetId(), st)
	}
	return resp.Msg.GetOrder(), nil
}

// load places orders on every orders host, 50 a second on each, until
// stopped, and keeps what failed.
type load struct {
	stopOnce sync.Once
	stopped  chan struct{}
	wg       sync.WaitGroup

	mu       sync.Mutex
	ok       int
	failures []string
}

func (c *cluster) startLoad(name string) *load {
	l := &load{stopped: make(chan struct{})}
	for _, o := range c.orders {
		l.wg.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-l.stopped:
					return
				case <-tick.C:
				}
				_, err := c.createOrder(o, fmt.Sprintf("%s-%d", name, n))
				l.mu.Lock()
				if err != nil {
					l.failures = append(l.failures, fmt.Sprintf("%s, order %d at %s: %v", o.name, n, time.Now().Format("15:04:05.000"), err))
				} else {
					l.ok++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// placed returns how many orders were placed and PAID so far.
func (l *load) placed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok
}

// waitPlaced waits until n orders were placed.
func (l *load) waitPlaced(t *testing.T, n int, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); l.placed() < n; time.Sleep(20 * time.Millisecond) { // polls the count
		if time.Now().After(deadline) {
			l.mu.Lock()
			defer l.mu.Unlock()
			t.Fatalf("%d orders placed in %v, want %d; failures: %v", l.ok, within, n, l.failures)
		}
	}
}

// stop stops placing orders, lets those under way finish, and returns how
// many were placed and the failures.
func (l *load) stop() (placed int, failures []string) {
	l.stopOnce.Do(func() { close(l.stopped) })
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.failures
}
