// Package crashtest kills the real orders and payments processes with
// SIGKILL while they take orders and cancels, restarts them, and then checks
// in their databases that nothing acknowledged was lost, nothing was charged
// twice, and every order agrees with its payment once recovery has run.
package crashtest

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/cmdtest"
	"github.com/connectshop/connectshop/internal/rpc"
	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // the "sqlite" driver, to read the databases
)

// proc is one server process that the test kills and restarts.
type proc struct {
	t    *testing.T
	name string
	bin  string
	args []string
	log  logBuffer // everything it wrote, across restarts

	mu  sync.Mutex
	cmd *exec.Cmd
}

func (p *proc) start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = &p.log, &p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd = cmd
}

// kill9 kills the process at once, as a crash or an OOM kill would.
func (p *proc) kill9() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
}

// stop ends the process gracefully.
func (p *proc) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.cmd.Wait()
}

func freePort(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return strconv.Itoa(lis.Addr().(*net.TCPAddr).Port)
}

// waitHealthy waits until the server at url answers its health check.
func waitHealthy(t *testing.T, url string) {
	t.Helper()
	c := grpchealth.NewClient(rpc.NewH2CClient(), url, connect.WithGRPC())
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) { // polls until the process is up
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := c.Check(ctx, &grpchealth.CheckRequest{})
		cancel()
		if err == nil && resp.Status == grpchealth.StatusServing {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not healthy within 30s: %v", url, err)
		}
	}
}

// acks is what the clients were told: orders placed and cancels done.
type acks struct {
	mu        sync.Mutex
	orders    map[string]ordersv1.OrderStatus // order id → status acknowledged
	cancelled map[string]bool
}

func TestKillNineLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the commands and runs them for about a minute")
	}
	t.Parallel()
	dir := t.TempDir()
	build := exec.Command("go", "build", "-o", dir, "./cmd/orders", "./cmd/payments")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	serviceKey, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "service.key")
	if err := auth.WriteKeyFile(keyFile, serviceKey); err != nil {
		t.Fatal(err)
	}
	ordersDB, paymentsDB := filepath.Join(dir, "orders.db"), filepath.Join(dir, "payments.db")
	ordersPort, pay1, pay2 := freePort(t), freePort(t), freePort(t)
	payments := []*proc{
		{t: t, name: "payments-1", bin: filepath.Join(dir, "payments"), args: []string{"-addr", "127.0.0.1:" + pay1, "-name", "payments-1", "-db", paymentsDB, "-service-key-file", keyFile}},
		{t: t, name: "payments-2", bin: filepath.Join(dir, "payments"), args: []string{"-addr", "127.0.0.1:" + pay2, "-name", "payments-2", "-db", paymentsDB, "-service-key-file", keyFile}},
	}
	orders := &proc{t: t, name: "orders", bin: filepath.Join(dir, "orders"), args: []string{
		"-addr", "127.0.0.1:" + ordersPort, "-db", ordersDB, "-service-key-file", keyFile,
		"-payments", "http://127.0.0.1:" + pay1 + ",http://127.0.0.1:" + pay2,
		"-recovery-interval", "500ms",
		"-order-rate", "0", // each client is one customer placing orders as fast as it can
	}}
	ordersURL := "http://127.0.0.1:" + ordersPort
	for _, p := range append(payments, orders) {
		p.start()
		t.Cleanup(p.stop)
	}
	waitHealthy(t, "http://127.0.0.1:"+pay1)
	waitHealthy(t, "http://127.0.0.1:"+pay2)
	waitHealthy(t, ordersURL)
	defer func() {
		if t.Failed() {
			for _, p := range append(payments, orders) {
				t.Logf("%s log:\n%s", p.name, tail(p.log.String(), 4000))
			}
		}
	}()

	// Clients: each a customer who places orders (some declined) and cancels
	// some of them, retrying every call with the same idempotency key until
	// it succeeds, as a careful client does. Only answers count as acks.
	a := &acks{orders: map[string]ordersv1.OrderStatus{}, cancelled: map[string]bool{}}
	cancelling := make(chan struct{}, 1) // signalled as a cancel is sent
	ctx, stopLoad := context.WithTimeout(context.Background(), 14*time.Second)
	defer stopLoad()
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() { client(ctx, t, ordersURL, w, a, cancelling) })
	}

	// The faults: orders killed three times, once while a cancel is in
	// flight; a payments replica killed once.
	time.Sleep(2 * time.Second) // lets the load build up before the first kill
	restart(orders, ordersURL)
	time.Sleep(2 * time.Second)
	<-cancelling
	restart(orders, ordersURL)
	time.Sleep(1500 * time.Millisecond)
	payments[1].kill9()
	time.Sleep(500 * time.Millisecond)
	payments[1].start()
	time.Sleep(2 * time.Second)
	select {
	case <-cancelling:
	case <-time.After(2 * time.Second):
	}
	restart(orders, ordersURL)
	wg.Wait()

	// Recovery settles what was cut off: orders left half-way wait twice the
	// payment timeout (10 s), and the loop runs every 500 ms.
	deadline := time.Now().Add(45 * time.Second)
	for unsettled(t, ordersDB) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d orders still PENDING or CANCELLING 45s after the load", unsettled(t, ordersDB))
		}
		time.Sleep(200 * time.Millisecond) // polls the database for the recovery loop's work
	}
	check(t, ordersDB, paymentsDB, a)
}

// restart kills orders and starts it again at once.
func restart(p *proc, url string) {
	p.kill9()
	p.start()
	waitHealthy(p.t, url)
}

// client places and cancels orders as customer w until ctx is done.
func client(ctx context.Context, t *testing.T, url string, w int, a *acks, cancelling chan<- struct{}) {
	c := ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), url, connect.WithGRPC())
	var token string
	retry(ctx, func(ctx context.Context) error {
		resp, err := c.CreateSession(ctx, connect.NewRequest(&ordersv1.CreateSessionRequest{}))
		if err == nil {
			token = resp.Msg.GetToken()
		}
		return err
	})
	c = ordersv1connect.NewOrderServiceClient(rpc.NewH2CClient(), url, connect.WithGRPC(), connect.WithInterceptors(auth.Bearer(token)))
	var paid []string
	for n := 0; ctx.Err() == nil; n++ {
		tok := "tok_visa"
		if rand.IntN(10) == 0 {
			tok = "tok_declined"
		}
		req := &ordersv1.CreateOrderRequest{
			Items:          []*ordersv1.CartItem{{ProductId: "sticker-pack", Quantity: int32(1 + n%5)}},
			PaymentToken:   tok,
			IdempotencyKey: fmt.Sprintf("crash-%d-%d", w, n),
		}
		var got *ordersv1.Order
		ok := retry(ctx, func(ctx context.Context) error {
			resp, err := c.CreateOrder(ctx, connect.NewRequest(req))
			if err == nil {
				got = resp.Msg.GetOrder()
			} else if connect.CodeOf(err) == connect.CodeFailedPrecondition { // declined: an answer
				return nil
			}
			return err
		})
		if !ok || got == nil {
			continue
		}
		a.mu.Lock()
		a.orders[got.GetId()] = got.GetStatus()
		a.mu.Unlock()
		paid = append(paid, got.GetId())
		if len(paid) < 3 || rand.IntN(3) != 0 {
			continue
		}
		id := paid[rand.IntN(len(paid))]
		select {
		case cancelling <- struct{}{}:
		default:
		}
		if retry(ctx, func(ctx context.Context) error {
			_, err := c.CancelOrder(ctx, connect.NewRequest(&ordersv1.CancelOrderRequest{Id: id}))
			return err
		}) {
			a.mu.Lock()
			a.cancelled[id] = true
			a.mu.Unlock()
		}
	}
}

// retry calls call until it succeeds or ctx ends, each attempt within 5 s,
// and reports whether it succeeded.
func retry(ctx context.Context, call func(context.Context) error) bool {
	for ctx.Err() == nil {
		callCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := call(callCtx)
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(50 * time.Millisecond) // backs off while a server restarts
	}
	return false
}

func open(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func unsettled(t *testing.T, ordersDB string) int {
	t.Helper()
	var n int
	if err := open(t, ordersDB).QueryRow(`SELECT count(*) FROM orders WHERE status IN (?, ?)`,
		int(ordersv1.OrderStatus_ORDER_STATUS_PENDING), int(ordersv1.OrderStatus_ORDER_STATUS_CANCELLING)).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// check compares what the clients were told with both databases.
func check(t *testing.T, ordersDB, paymentsDB string, a *acks) {
	t.Helper()
	stored := map[string]*ordersv1.Order{}
	rows, err := open(t, ordersDB).Query(`SELECT data FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		o := new(ordersv1.Order)
		if err := proto.Unmarshal(data, o); err != nil {
			t.Fatal(err)
		}
		stored[o.GetId()] = o
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	type payment struct {
		id        string
		status    paymentsv1.PaymentStatus
		reference string
	}
	charges := map[string][]payment{} // by reference (order id), captured or refunded
	byID := map[string]payment{}
	prows, err := open(t, paymentsDB).Query(`SELECT id, status, reference FROM payments`)
	if err != nil {
		t.Fatal(err)
	}
	for prows.Next() {
		var p payment
		if err := prows.Scan(&p.id, &p.status, &p.reference); err != nil {
			t.Fatal(err)
		}
		byID[p.id] = p
		if p.status == paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED || p.status == paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
			charges[p.reference] = append(charges[p.reference], p)
		}
	}
	if err := prows.Err(); err != nil {
		t.Fatal(err)
	}

	lost, doubles, disagree := 0, 0, 0
	for id := range a.orders {
		if stored[id] == nil {
			lost++
			t.Errorf("acknowledged order %s is not in the database", id)
		}
	}
	for id := range a.cancelled {
		if st := stored[id].GetStatus(); st != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
			disagree++
			t.Errorf("acknowledged cancel of %s: order is %v", id, st)
		}
	}
	for ref, list := range charges {
		if len(list) > 1 {
			doubles++
			t.Errorf("order %s charged %d times", ref, len(list))
		}
		if o := stored[ref]; o == nil || o.GetPaymentId() != list[0].id {
			disagree++
			t.Errorf("payment %s charges order %s, which does not have it (%v)", list[0].id, ref, o.GetStatus())
		}
	}
	for id, o := range stored {
		p, hasPayment := byID[o.GetPaymentId()]
		var want paymentsv1.PaymentStatus
		switch o.GetStatus() {
		case ordersv1.OrderStatus_ORDER_STATUS_PAID:
			want = paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED
		case ordersv1.OrderStatus_ORDER_STATUS_CANCELLED:
			want = paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED
		case ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED:
			if len(charges[id]) > 0 {
				disagree++
				t.Errorf("declined order %s has a charge", id)
			}
			continue
		default:
			disagree++
			t.Errorf("order %s is %v after recovery", id, o.GetStatus())
			continue
		}
		if !hasPayment || p.status != want {
			disagree++
			t.Errorf("order %s is %v but its payment %q is %v", id, o.GetStatus(), o.GetPaymentId(), p.status)
		}
	}
	t.Logf("%d orders stored (%d acknowledged, %d cancels acknowledged), %d charged: %d lost, %d double charges, %d disagreeing",
		len(stored), len(a.orders), len(a.cancelled), len(charges), lost, doubles, disagree)
	if len(a.orders) == 0 || len(a.cancelled) == 0 {
		t.Error("the load acknowledged no orders or no cancels: nothing was tested")
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// logBuffer collects a process's output; the test reads it while the
// process may still write.
type logBuffer = cmdtest.Logs
