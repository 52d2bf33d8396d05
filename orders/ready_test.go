package orders_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/memhttp"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/connectshop/connectshop/internal/pgdb/pgtest"
	"github.com/connectshop/connectshop/internal/telemetry"
	"github.com/connectshop/connectshop/orders"
	orderssqlite "github.com/connectshop/connectshop/orders/sqlite"
	"github.com/connectshop/connectshop/payments"
	paymentssqlite "github.com/connectshop/connectshop/payments/sqlite"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// proxy forwards the connections it accepts on a loopback port to a backend,
// until it is cut: then it closes every connection and stops listening, as
// a database or a replica that went away does. Restored, it listens on the
// same port again.
type proxy struct {
	addr string
	dial func(context.Context) (net.Conn, error)

	mu    sync.Mutex
	lis   net.Listener // nil while cut
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

func newProxy(t *testing.T, dial func(context.Context) (net.Conn, error)) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: lis.Addr().String(), dial: dial, conns: make(map[net.Conn]bool)}
	p.serve(lis)
	t.Cleanup(func() { p.cut(); p.wg.Wait() })
	return p
}

// proxyTo returns a proxy to a TCP address.
func proxyTo(t *testing.T, addr string) *proxy {
	return newProxy(t, func(ctx context.Context) (net.Conn, error) {
		return new(net.Dialer).DialContext(ctx, "tcp", addr)
	})
}

// proxyToMemory returns a proxy to a server in memory.
func proxyToMemory(t *testing.T, srv *memhttp.Server) *proxy {
	return newProxy(t, func(ctx context.Context) (net.Conn, error) {
		return srv.Listener().DialContext(ctx, "tcp", "")
	})
}

func (p *proxy) serve(lis net.Listener) {
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.forward(c) })
		}
	})
}

func (p *proxy) forward(c net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	b, err := p.dial(ctx)
	cancel()
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.lis == nil { // cut meanwhile
		p.mu.Unlock()
		c.Close()
		b.Close()
		return
	}
	p.conns[c], p.conns[b] = true, true
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(b, c); done <- struct{}{} }()
	go func() { io.Copy(c, b); done <- struct{}{} }()
	<-done
	c.Close()
	b.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, b)
	p.mu.Unlock()
}

// cut closes the listener and every connection: the backend is gone.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for c := range p.conns {
		c.Close()
	}
}

// restore listens on the proxy's port again: the backend is back.
func (p *proxy) restore(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		lis, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(lis)
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("listen again on %s: %v", p.addr, err)
		}
	}
}

// waitReadiness polls r until its Check passes (failing "") or fails naming
// failing, and returns the last error.
func waitReadiness(t *testing.T, r *telemetry.Readiness, failing string) error {
	t.Helper()
	var err error
	what := "readiness never passed"
	if failing != "" {
		what = "readiness never failed naming " + failing
	}
	waitFor(t, 8*time.Second, what, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*telemetry.CheckTimeout)
		defer cancel()
		err = r.Check(ctx)
		if failing == "" {
			return err == nil
		}
		return err != nil && strings.Contains(err.Error(), failing+":")
	})
	return err
}

// readyz asks the admin handler of r for /readyz.
func readyz(t *testing.T, admin *httptest.Server) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctxWithTimeout(t, 5*time.Second), http.MethodGet, admin.URL+"/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// serveAdmin serves the admin handler of a server with readiness r.
func serveAdmin(t *testing.T, r *telemetry.Readiness) *httptest.Server {
	t.Helper()
	admin := httptest.NewServer(telemetry.NewAdmin(telemetry.AdminConfig{Gatherer: prometheus.NewRegistry(), Ready: r}))
	t.Cleanup(admin.Close)
	return admin
}

// Orders on PostgreSQL is not ready while its database is unreachable, and
// ready again, and taking orders, once it is back.
func TestReadyFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	db, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	pg := proxyTo(t, db.Host)
	db.Host = pg.addr
	s := newShop(t, shopConfig{ordersDB: db.String()})
	ready := s.ordersServer.Readiness()
	admin := serveAdmin(t, ready)
	waitReadiness(t, ready, "")

	// Health, which the deployment's readiness probe asks, follows by itself
	// (orders checks every 2 s), and so does /readyz.
	pg.cut()
	waitFor(t, 5*time.Second, "the OrderService still SERVING without its database", func() bool {
		return healthStatus(t, s.orders, ordersv1connect.OrderServiceName) == "SERVING_STATUS_NOT_SERVING"
	})
	err = waitReadiness(t, ready, "database")
	if strings.Contains(err.Error(), "payments:") {
		t.Errorf("readiness without the database: %v; payments is fine", err)
	}
	if code, body := readyz(t, admin); code != http.StatusServiceUnavailable || !strings.Contains(body, "database") {
		t.Errorf("/readyz without the database: %d %q, want 503 naming the database", code, body)
	}

	pg.restore(t)
	waitFor(t, 5*time.Second, "the OrderService not SERVING with its database back", func() bool {
		return healthStatus(t, s.orders, ordersv1connect.OrderServiceName) == "SERVING_STATUS_SERVING"
	})
	waitReadiness(t, ready, "")
	if code, body := readyz(t, admin); code != http.StatusOK {
		t.Errorf("/readyz with the database back: %d %q, want 200", code, body)
	}
	createOrder(t, s.client(), visaOrder("db-back"))
}

// startReplica runs a payments replica named name on store, in memory.
func startReplica(t *testing.T, name string, store *paymentssqlite.Store, key auth.Key, drain time.Duration) (*payments.Server, *memhttp.Server) {
	t.Helper()
	replica, err := payments.New(payments.Config{Name: name, Store: store, ServiceKey: key, DrainDelay: drain})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Close() })
	return replica, memhttptest.Serve(t, replica.HTTPServer())
}

// newOrdersOn builds orders as cfg says, on SQLite and with a session key
// of its own, unserved.
func newOrdersOn(t *testing.T, cfg orders.Config) *orders.Server {
	t.Helper()
	store, err := orderssqlite.Open(context.Background(), filepath.Join(t.TempDir(), "orders.db"))
	if err != nil {
		t.Fatal(err)
	}
	sessionKey, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Store, cfg.SessionKey = store, sessionKey
	srv, err := orders.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

// Orders is not ready while no payments replica is healthy: one of two gone
// leaves it ready, both gone not, and one back ready again.
func TestReadyFollowsThePaymentsReplicas(t *testing.T) {
	t.Parallel()
	pstore, err := paymentssqlite.Open(context.Background(), filepath.Join(t.TempDir(), "payments.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pstore.Close() })
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	var proxies []*proxy
	var targets []string
	for _, name := range []string{"payments-1", "payments-2"} {
		_, srv := startReplica(t, name, pstore.Share(), key, 0)
		p := proxyToMemory(t, srv)
		proxies = append(proxies, p)
		targets = append(targets, "http://"+p.addr)
	}
	osrv := newOrdersOn(t, orders.Config{Payments: orders.PaymentsConfig{Target: strings.Join(targets, ","), ServiceKey: key, HealthInterval: 50 * time.Millisecond}})
	ready := osrv.Readiness()
	admin := serveAdmin(t, ready)
	srv := memhttptest.Serve(t, osrv.HTTPServer())
	health := func() string { return healthStatus(t, srv, ordersv1connect.OrderServiceName) }
	waitFor(t, 5*time.Second, "both replicas never healthy", func() bool { return osrv.HealthyPayments() == 2 })
	waitFor(t, 5*time.Second, "the OrderService never SERVING", func() bool { return health() == "SERVING_STATUS_SERVING" })
	waitReadiness(t, ready, "")

	proxies[0].cut()
	waitFor(t, 5*time.Second, "payments-1 still healthy after it went", func() bool { return osrv.HealthyPayments() == 1 })
	if err := waitReadiness(t, ready, ""); err != nil {
		t.Fatalf("readiness with one replica of two: %v", err)
	}
	if got := health(); got != "SERVING_STATUS_SERVING" {
		t.Errorf("health of the OrderService with one replica of two: %s, want SERVING", got)
	}

	// Health, which the deployment's readiness probe asks, follows as soon
	// as the balancer sees the last replica go, and so does /readyz.
	proxies[1].cut()
	waitFor(t, 5*time.Second, "the OrderService still SERVING without payments", func() bool { return health() == "SERVING_STATUS_NOT_SERVING" })
	err = waitReadiness(t, ready, "payments")
	if strings.Contains(err.Error(), "database:") {
		t.Errorf("readiness without payments: %v; the database is fine", err)
	}
	if code, body := readyz(t, admin); code != http.StatusServiceUnavailable || !strings.Contains(body, "payments") {
		t.Errorf("/readyz without payments: %d %q, want 503 naming payments", code, body)
	}

	// The balancer may have ejected the replica whose health checks failed
	// at the transport: then it is back once the ejection ends, 5 s on.
	proxies[1].restore(t)
	waitFor(t, 8*time.Second, "the OrderService not SERVING with a replica back", func() bool { return health() == "SERVING_STATUS_SERVING" })
	waitReadiness(t, ready, "")
	if code, body := readyz(t, admin); code != http.StatusOK {
		t.Errorf("/readyz with a replica back: %d %q, want 200", code, body)
	}
}

// healthOverNewConn asks the gRPC health service at addr for service's
// status, with grpc-go over a connection of its own, as a probe does.
func healthOverNewConn(t *testing.T, addr, service string) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		t.Fatalf("health check of %q at %s: %v", service, addr, err)
	}
	return resp.GetStatus()
}

// A server told to stop first says so and goes on serving for its drain
// delay: health, asked over a new connection, answers NOT_SERVING for the
// server and its service, and /readyz 503; only then does it stop.
func TestHealthDuringShutdown(t *testing.T) {
	t.Parallel()
	const drain = 1500 * time.Millisecond
	pstore, err := paymentssqlite.Open(context.Background(), filepath.Join(t.TempDir(), "payments.db"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	replica, psrv := startReplica(t, "payments-1", pstore, key, drain)
	osrv := newOrdersOn(t, orders.Config{Payments: orders.PaymentsConfig{Target: psrv.URL(), Dial: psrv.Listener().DialContext, ServiceKey: key}, DrainDelay: drain})

	for _, server := range []struct {
		name    string
		serve   func(context.Context, net.Listener) error
		ready   *telemetry.Readiness
		service string
	}{
		{"orders", osrv.Serve, osrv.Readiness(), ordersv1connect.OrderServiceName},
		{"payments", replica.Serve, replica.Readiness(), paymentsv1connect.PaymentServiceName},
	} {
		// One after the other: orders is ready only while payments is.
		t.Run(server.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := lis.Addr().String()
			admin := serveAdmin(t, server.ready)
			ctx, stop := context.WithCancel(context.Background())
			defer stop()
			served := make(chan error, 1)
			go func() { served <- server.serve(ctx, lis) }()

			waitFor(t, 5*time.Second, server.service+" never SERVING", func() bool {
				return healthOverNewConn(t, addr, server.service) == healthpb.HealthCheckResponse_SERVING
			})
			if code, body := readyz(t, admin); code != http.StatusOK {
				t.Fatalf("/readyz before the shutdown: %d %q", code, body)
			}

			stop()
			stopped := time.Now()
			for _, service := range []string{"", server.service} {
				waitFor(t, drain/2, "health of "+service+" not NOT_SERVING", func() bool {
					return healthOverNewConn(t, addr, service) == healthpb.HealthCheckResponse_NOT_SERVING
				})
			}
			if code, body := readyz(t, admin); code != http.StatusServiceUnavailable || !strings.Contains(body, telemetry.ErrDraining.Error()) {
				t.Errorf("/readyz while draining: %d %q, want 503 %q", code, body, telemetry.ErrDraining)
			}
			if time.Since(stopped) >= drain {
				t.Fatalf("the checks took %v, longer than the drain delay: they did not show the drain", time.Since(stopped))
			}
			select {
			case err := <-served:
				t.Fatalf("Serve returned %v before the drain delay", err)
			default:
			}

			select {
			case err := <-served:
				if err != nil {
					t.Errorf("Serve: %v", err)
				}
				if d := time.Since(stopped); d < drain {
					t.Errorf("Serve returned %v after its context ended, before its drain delay (%v)", d, drain)
				}
			case <-time.After(drain + 5*time.Second):
				t.Fatal("Serve did not return after its drain delay")
			}
			if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				t.Error("still listening after Serve returned")
			}
		})
	}
}
