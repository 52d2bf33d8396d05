package lbproof

import (
	"context"
	"errors"
	"io"
	"iter"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/bufbuild/httplb/resolver"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/load"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/payments"
)

func startReplicas(t *testing.T, addrs ...string) *Replicas {
	t.Helper()
	rs, err := StartReplicas(context.Background(), t.TempDir(), addrs, payments.Faults{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)
	return rs
}

func startOrders(t *testing.T, rs *Replicas, target string, res resolver.Resolver) *Orders {
	t.Helper()
	o, err := StartOrders(context.Background(), t.TempDir(), rs, target, res)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return o
}

func startHAProxy(t *testing.T, mode Mode, backends []string) *HAProxy {
	t.Helper()
	h, err := StartHAProxy(context.Background(), t.TempDir(), mode, backends)
	if errors.Is(err, ErrNoHAProxy) {
		if os.Getenv("CI") == "true" {
			t.Fatal(err) // .ci/run installs it: its absence there is a bug
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func three() []string { return []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"} }

func sequential(t *testing.T, o *Orders, n int) *load.Result {
	t.Helper()
	res := load.Load{Orders: n, Concurrency: 1}.Run(context.Background(), o.Client())
	if len(res.Errors) > 0 {
		t.Fatalf("%d of %d orders failed; first: %v", len(res.Errors), n, res.Errors[0])
	}
	return res
}

func assertSpread(t *testing.T, res *load.Result, rs *Replicas) {
	t.Helper()
	for _, r := range rs.List {
		if s := res.Share(r.Name); s < 0.25 || s > 0.42 {
			t.Errorf("%s served %.0f%% of %d orders, want 25%%-42%% (all: %v)", r.Name, 100*s, res.Orders(), res.PerReplica)
		}
	}
}

// One orders instance, three replicas, 300 orders in a row: client-side L7
// balancing spreads them.
func TestClientSideBalancingSpreads(t *testing.T) {
	t.Parallel()
	rs := startReplicas(t, three()...)
	assertSpread(t, sequential(t, startOrders(t, rs, rs.Targets(), nil), 300), rs)
}

// The trap: behind an L4 balancer the one HTTP/2 connection, and so every
// call, goes to one replica.
func TestHAProxyTCPPinsToOneReplica(t *testing.T) {
	t.Parallel()
	rs := startReplicas(t, three()...)
	h := startHAProxy(t, TCP, rs.Addrs())
	res := sequential(t, startOrders(t, rs, "http://"+h.Addr, nil), 300)
	top := 0
	for _, n := range res.PerReplica {
		top = max(top, n)
	}
	if share := float64(top) / float64(res.Orders()); share <= 0.9 {
		t.Errorf("busiest replica served %.0f%%, want over 90%% (all: %v)", 100*share, res.PerReplica)
	}
}

// An L7 proxy fixes it too, at the cost of a hop.
func TestHAProxyHTTPSpreads(t *testing.T) {
	t.Parallel()
	rs := startReplicas(t, three()...)
	h := startHAProxy(t, HTTP, rs.Addrs())
	assertSpread(t, sequential(t, startOrders(t, rs, "http://"+h.Addr, nil), 300), rs)
}

// manualResolver answers with whatever addresses the test sets, as DNS for a
// Kubernetes headless Service does when pods come and go.
type manualResolver struct {
	mu        sync.Mutex
	addrs     []string
	receivers []resolver.Receiver
}

func (m *manualResolver) New(_ context.Context, _, _ string, r resolver.Receiver, _ <-chan struct{}) io.Closer {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.receivers = append(m.receivers, r)
	r.OnResolve(toAddresses(m.addrs))
	return io.NopCloser(nil)
}

func (m *manualResolver) set(addrs ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.addrs = addrs
	for _, r := range m.receivers {
		r.OnResolve(toAddresses(addrs))
	}
}

func toAddresses(hostPorts []string) []resolver.Address {
	var out []resolver.Address
	for _, hp := range hostPorts {
		out = append(out, resolver.Address{HostPort: hp})
	}
	return out
}

// A replica that appears in the resolver's answer after orders started gets
// calls within 10 s. Replicas listen on one port at three loopback addresses,
// as pods of one Service do at their pod IPs.
func TestNewReplicaGetsTrafficWithin10s(t *testing.T) {
	t.Parallel()
	port := freePort(t)
	rs := startReplicas(t, "127.0.0.1:"+port, "127.0.0.2:"+port, "127.0.0.3:"+port)
	res := &manualResolver{addrs: rs.Addrs()[:2]}
	o := startOrders(t, rs, "dns:///payments:"+port, res)
	sequential(t, o, 1)

	res.set(rs.Addrs()...) // payments-3 scales up
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		if sequential(t, o, 1).PerReplica["payments-3"] == 1 {
			t.Logf("payments-3 served an order %v after it appeared", time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("payments-3 got no order within 10s of appearing")
}

// freePort returns a port free on 127.0.0.1 a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return strconv.Itoa(lis.Addr().(*net.TCPAddr).Port)
}

// A replica killed in the middle of a 20 s load costs no order and charges
// nothing twice: calls it dropped are retried on the others, and idempotency
// keys in the shared database turn a retry of a charge that did happen into
// the same payment.
func TestKillingAReplicaUnderLoadLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("20 s load")
	}
	t.Parallel()
	rs := startReplicas(t, three()...)
	o := startOrders(t, rs, rs.Targets(), nil)
	time.AfterFunc(7*time.Second, rs.List[1].Kill) // mid-load
	res := load.Load{Duration: 20 * time.Second, Concurrency: 8}.Run(context.Background(), o.Client())
	if len(res.Errors) > 0 {
		t.Errorf("%d orders failed; first: %v", len(res.Errors), res.Errors[0])
	}
	t.Logf("%d orders in %v, by replica %v, p99 %v", res.Orders(), res.Elapsed.Round(time.Millisecond), res.PerReplica, res.Percentile(99))
	if res.PerReplica["payments-2"] == 0 || res.Orders()-res.PerReplica["payments-2"] == 0 {
		t.Errorf("got %v, want payments-2 to serve some orders before it died and the others after", res.PerReplica)
	}
	twice, charged, err := rs.DoubleCharges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(twice) > 0 {
		t.Errorf("orders charged twice: %v", twice)
	}
	if charged != res.Orders() {
		t.Errorf("payments charged %d orders, want %d (one per paid order)", charged, res.Orders())
	}
	// Every order the clients saw paid is paid in orders' own records too.
	paid := 0
	for _, token := range res.Sessions {
		customer := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), o.URL, connect.WithInterceptors(auth.Bearer(token)))
		for o, err := range listOrders(customer) {
			if err != nil {
				t.Fatal(err)
			}
			if o.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID {
				t.Errorf("order %s is %v, want PAID", o.GetId(), o.GetStatus())
			}
			paid++
		}
	}
	if paid != res.Orders() {
		t.Errorf("orders lists %d orders of the load's customers, want %d", paid, res.Orders())
	}
}

// listOrders yields every order of c's customer, page by page.
func listOrders(c ordersv1connect.OrderServiceClient) iter.Seq2[*ordersv1.Order, error] {
	return func(yield func(*ordersv1.Order, error) bool) {
		pageToken := ""
		for {
			resp, err := c.ListOrders(context.Background(), connect.NewRequest(&ordersv1.ListOrdersRequest{PageSize: 100, PageToken: pageToken}))
			if err != nil {
				yield(nil, err)
				return
			}
			for _, o := range resp.Msg.GetOrders() {
				if !yield(o, nil) {
					return
				}
			}
			if pageToken = resp.Msg.GetNextPageToken(); pageToken == "" {
				return
			}
		}
	}
}
