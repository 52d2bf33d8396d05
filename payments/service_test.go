package payments_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/memhttp"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/payments"
	"github.com/connectshop/connectshop/payments/sqlite"
)

// serviceKey is what orders proves itself with in these tests.
var serviceKey = mustKey()

func mustKey() auth.Key {
	key, err := auth.NewKey()
	if err != nil {
		panic(err)
	}
	return key
}

// serveReplica serves a payments replica named name on the database at path,
// opened as a separate process would open it.
func serveReplica(t *testing.T, path, name string) *memhttp.Server {
	t.Helper()
	store, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	replica, err := payments.New(payments.Config{Name: name, Store: store, ServiceKey: serviceKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replica.Close() })
	return memhttptest.Serve(t, replica.HTTPServer())
}

// newReplica serves a payments replica and returns a gRPC client for it that
// calls as orders does, with a service token.
func newReplica(t *testing.T, path, name string) paymentsv1connect.PaymentServiceClient {
	t.Helper()
	srv := serveReplica(t, path, name)
	return paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(), connect.WithGRPC(),
		connect.WithInterceptors(auth.ServiceCredentials(serviceKey, auth.OrdersCaller, auth.PaymentsAudience)))
}

func charge(key, token string, amount int64) *connect.Request[paymentsv1.ChargeRequest] {
	return connect.NewRequest(&paymentsv1.ChargeRequest{
		IdempotencyKey: key,
		Amount:         &paymentsv1.Money{CurrencyCode: "USD", MinorUnits: amount},
		PaymentToken:   token,
		Reference:      "ord_" + key,
	})
}

// Replicas sharing one database file charge a key once, even when the same
// charge reaches all of them at the same moment.
func TestChargeIsIdempotentAcrossReplicas(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "payments.db")
	replicas := []paymentsv1connect.PaymentServiceClient{
		newReplica(t, path, "payments-1"), newReplica(t, path, "payments-2"), newReplica(t, path, "payments-3"),
	}
	for k := range 5 {
		key := fmt.Sprintf("key-%d", k)
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			ids = map[string]bool{}
		)
		for i := range 9 {
			wg.Go(func() {
				resp, err := replicas[i%3].Charge(context.Background(), charge(key, "tok_visa", 500))
				if err != nil {
					t.Errorf("Charge: %v", err)
					return
				}
				mu.Lock()
				ids[resp.Msg.GetPayment().GetId()] = true
				mu.Unlock()
			})
		}
		wg.Wait()
		if len(ids) != 1 {
			t.Errorf("key %s: got %d payments, want 1", key, len(ids))
		}
	}
	// A key reused for another amount is refused, whichever replica sees it.
	_, err := replicas[2].Charge(context.Background(), charge("key-0", "tok_visa", 501))
	if want := paymentsv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String(); connect.CodeOf(err) != connect.CodeAlreadyExists || rpc.Reason(err) != want {
		t.Errorf("got %v (reason %q), want already_exists %s", err, rpc.Reason(err), want)
	}
}

func TestChargeOutcomes(t *testing.T) {
	t.Parallel()
	c := newReplica(t, filepath.Join(t.TempDir(), "payments.db"), "payments-7")
	resp, err := c.Charge(context.Background(), charge("ok", "tok_visa", 1999))
	if err != nil {
		t.Fatal(err)
	}
	p := resp.Msg.GetPayment()
	if p.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED || p.GetReplica() != "payments-7" || p.GetAmount().GetMinorUnits() != 1999 {
		t.Errorf("got %v, want CAPTURED 1999 on payments-7", p)
	}

	for range 2 { // a declined charge stays declined on retry
		_, err = c.Charge(context.Background(), charge("no", "tok_declined", 1999))
		if want := paymentsv1.ErrorReason_CARD_DECLINED.String(); connect.CodeOf(err) != connect.CodeFailedPrecondition || rpc.Reason(err) != want {
			t.Errorf("got %v (reason %q), want failed_precondition %s", err, rpc.Reason(err), want)
		}
	}

	bad := []*connect.Request[paymentsv1.ChargeRequest]{
		charge("k", "tok_unknown", 100),
		charge("k", "", 100),
		charge("k", "tok_visa", 0),
		charge("has space", "tok_visa", 100),
		connect.NewRequest(&paymentsv1.ChargeRequest{IdempotencyKey: "k", PaymentToken: "tok_visa", Amount: &paymentsv1.Money{CurrencyCode: "usd", MinorUnits: 1}}),
	}
	for _, req := range bad {
		if _, err := c.Charge(context.Background(), req); connect.CodeOf(err) != connect.CodeInvalidArgument {
			t.Errorf("Charge(%v): got %v, want invalid_argument", req.Msg, err)
		}
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	c := newReplica(t, filepath.Join(t.TempDir(), "payments.db"), "payments-1")
	resp, err := c.Charge(context.Background(), charge("r", "tok_visa", 700))
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Msg.GetPayment().GetId()
	for range 2 { // refunding twice is safe
		got, err := c.Refund(context.Background(), connect.NewRequest(&paymentsv1.RefundRequest{PaymentId: id}))
		if err != nil {
			t.Fatal(err)
		}
		if p := got.Msg.GetPayment(); p.GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED || p.GetRefundedAt() == nil {
			t.Errorf("got %v, want REFUNDED with a time", p)
		}
	}
	if _, err := c.Refund(context.Background(), connect.NewRequest(&paymentsv1.RefundRequest{PaymentId: "pay_nope"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("refund of unknown payment: got %v, want not_found", err)
	}
	if _, err := c.GetPayment(context.Background(), connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: "pay_nope"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Errorf("get of unknown payment: got %v, want not_found", err)
	}
}

// Only orders may call the PaymentService: without its service token, or
// with a token signed by another key, every RPC on every protocol is
// UNAUTHENTICATED and nothing is charged; health and reflection stay open.
func TestOnlyOrdersMayCall(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "payments.db")
	srv := serveReplica(t, path, "payments-1")
	for _, creds := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"no token", nil},
		{"another key", []connect.ClientOption{connect.WithInterceptors(auth.ServiceCredentials(mustKey(), auth.OrdersCaller, auth.PaymentsAudience))}},
		{"another caller", []connect.ClientOption{connect.WithInterceptors(auth.ServiceCredentials(serviceKey, "intruder", auth.PaymentsAudience))}},
		{"another audience", []connect.ClientOption{connect.WithInterceptors(auth.ServiceCredentials(serviceKey, auth.OrdersCaller, "orders"))}},
	} {
		for _, protocol := range []connect.ClientOption{connect.WithGRPC(), connect.WithProtoJSON(), connect.WithGRPCWeb()} {
			c := paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(), append(creds.opts, protocol)...)
			_, err := c.Charge(context.Background(), charge("intruder", "tok_visa", 100_000_000))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("%s: Charge: got %v, want unauthenticated", creds.name, err)
			}
			_, err = c.Refund(context.Background(), connect.NewRequest(&paymentsv1.RefundRequest{PaymentId: "pay_x"}))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("%s: Refund: got %v, want unauthenticated", creds.name, err)
			}
			_, err = c.GetPayment(context.Background(), connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: "pay_x"}))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Errorf("%s: GetPayment: got %v, want unauthenticated", creds.name, err)
			}
		}
	}
	// Nothing was charged: orders' own call with the same key charges anew.
	c := newReplica(t, path, "payments-2")
	resp, err := c.Charge(context.Background(), charge("intruder", "tok_visa", 100))
	if err != nil || resp.Msg.GetPayment().GetAmount().GetMinorUnits() != 100 {
		t.Errorf("orders' charge after refused ones: got %v (err %v), want a new payment of 100", resp, err)
	}
	// Probes need no key.
	health := grpchealth.NewClient(srv.Client(), srv.URL(), connect.WithGRPC())
	if resp, err := health.Check(context.Background(), &grpchealth.CheckRequest{Service: paymentsv1connect.PaymentServiceName}); err != nil || resp.Status != grpchealth.StatusServing {
		t.Errorf("health check without a key: got %v (err %v), want SERVING", resp, err)
	}
}

// A replica without a service key refuses to start unless told to serve any
// caller.
func TestNewNeedsAServiceKey(t *testing.T) {
	t.Parallel()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "payments.db"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := payments.New(payments.Config{Name: "payments-1", Store: store}); err == nil {
		t.Fatal("New without ServiceKey or Insecure: got no error")
	}
}
