package orders_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/orders"
	"github.com/connectshop/connectshop/payments"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestPaymentsDownIsUnavailable(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	if err := s.payments.Close(); err != nil {
		t.Fatal(err)
	}
	c := s.client(connect.WithProtoJSON())
	start := time.Now()
	_, err := c.CreateOrder(ctxWithTimeout(t, 10*time.Second), connect.NewRequest(visaOrder("down-1")))
	info := assertError(t, err, connect.CodeUnavailable, ordersv1.ErrorReason_PAYMENTS_UNAVAILABLE.String())
	if d := time.Since(start); d > 4*time.Second { // retries back off for up to ~1.5 s
		t.Errorf("took %v to report payments down, want fast failure", d)
	}
	// The order waits, pending, for a retry with the same key.
	got, err := c.GetOrder(context.Background(), connect.NewRequest(&ordersv1.GetOrderRequest{Id: info.GetMetadata()["order_id"]}))
	if err != nil {
		t.Fatal(err)
	}
	if st := got.Msg.GetOrder().GetStatus(); st != ordersv1.OrderStatus_ORDER_STATUS_PENDING {
		t.Errorf("got status %v, want PENDING", st)
	}
}

// A payments replica that accepts the call and never answers (while its
// health checks pass) must not hang orders: the call's deadline turns it into
// UNAVAILABLE.
func TestPaymentsHangIsUnavailableWithinDeadline(t *testing.T) {
	t.Parallel()
	const timeout = 300 * time.Millisecond
	s := newShop(t, shopConfig{paymentTimeout: timeout, paymentsFaults: payments.Faults{Latency: time.Hour}})
	start := time.Now()
	_, err := s.client(connect.WithGRPC()).CreateOrder(ctxWithTimeout(t, 10*time.Second), connect.NewRequest(visaOrder("hang-1")))
	assertError(t, err, connect.CodeUnavailable, ordersv1.ErrorReason_PAYMENTS_UNAVAILABLE.String())
	if d := time.Since(start); d < timeout || d > timeout+time.Second {
		t.Errorf("failed after %v, want just after the %v payment timeout", d, timeout)
	}
}

// lostResponse charges for real, then acts as if the answer was lost (orders
// crashed, or the connection broke) the first time for each order.
type lostResponse struct {
	orders.Payments
	lost map[string]bool
}

func (l *lostResponse) Charge(ctx context.Context, req *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	resp, err := l.Payments.Charge(ctx, req)
	if err == nil && !l.lost[req.Msg.GetReference()] {
		l.lost[req.Msg.GetReference()] = true
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("connection reset"))
	}
	return resp, err
}

// The charge went through but orders never recorded it: a retry with the same
// key, or the recovery loop, settles the order without charging again.
func TestChargeWithLostAnswerIsSettledOnce(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{wrapPayments: func(p orders.Payments) orders.Payments {
		return &lostResponse{Payments: p, lost: map[string]bool{}}
	}})
	c := s.client()

	_, err := c.CreateOrder(context.Background(), connect.NewRequest(visaOrder("lost-1")))
	info := assertError(t, err, connect.CodeUnavailable, ordersv1.ErrorReason_PAYMENTS_UNAVAILABLE.String())
	retried := createOrder(t, c, visaOrder("lost-1"))
	if retried.GetId() != info.GetMetadata()["order_id"] || retried.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_PAID {
		t.Errorf("retry: got %s %v, want %s PAID", retried.GetId(), retried.GetStatus(), info.GetMetadata()["order_id"])
	}
	if n := s.chargesFor(t, retried.GetId()); n != 1 {
		t.Errorf("got %d charges after a retry, want 1", n)
	}

	// No retry this time: the recovery loop settles it.
	_, err = c.CreateOrder(context.Background(), connect.NewRequest(visaOrder("lost-2")))
	info = assertError(t, err, connect.CodeUnavailable, ordersv1.ErrorReason_PAYMENTS_UNAVAILABLE.String())
	if err := orders.ResumePending(context.Background(), s.ordersServer); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetOrder(context.Background(), connect.NewRequest(&ordersv1.GetOrderRequest{Id: info.GetMetadata()["order_id"]}))
	if err != nil {
		t.Fatal(err)
	}
	if st := got.Msg.GetOrder().GetStatus(); st != ordersv1.OrderStatus_ORDER_STATUS_PAID {
		t.Errorf("after recovery: got status %v, want PAID", st)
	}
	if n := s.chargesFor(t, got.Msg.GetOrder().GetId()); n != 1 {
		t.Errorf("got %d charges after recovery, want 1", n)
	}
}

// Acknowledged orders and payments survive a restart of both services, and
// idempotency keys keep working across it.
func TestDataSurvivesRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	before := newShop(t, shopConfig{dir: dir})
	o := createOrder(t, before.client(), visaOrder("restart-1"))
	for _, srv := range []interface{ Close() error }{before.orders, before.ordersServer, before.payments, before.paymentsServer, before.paymentsStore} {
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}

	after := newShop(t, shopConfig{dir: dir})
	after.token = before.token // the customer's session outlives the restart
	got, err := after.client().GetOrder(context.Background(), connect.NewRequest(&ordersv1.GetOrderRequest{Id: o.GetId()}))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(o, got.Msg.GetOrder(), protocmp.Transform()); diff != "" {
		t.Errorf("order after restart (-before +after):\n%s", diff)
	}
	if retried := createOrder(t, after.client(), visaOrder("restart-1")); retried.GetId() != o.GetId() {
		t.Errorf("retry after restart: got order %s, want %s", retried.GetId(), o.GetId())
	}
	if n := after.chargesFor(t, o.GetId()); n != 1 {
		t.Errorf("got %d charges, want 1", n)
	}
	p, err := after.paymentsClient.GetPayment(context.Background(), connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: o.GetPaymentId()}))
	if err != nil || p.Msg.GetPayment().GetStatus() != paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED {
		t.Errorf("payment after restart: got %v (err %v), want CAPTURED", p, err)
	}
}

// lostRefund refunds for real, then acts as if the answer was lost (orders
// crashed, or the connection broke) every time until healed.
type lostRefund struct {
	orders.Payments
	healed atomic.Bool
}

func (l *lostRefund) Refund(ctx context.Context, req *connect.Request[paymentsv1.RefundRequest]) (*connect.Response[paymentsv1.RefundResponse], error) {
	resp, err := l.Payments.Refund(ctx, req)
	if err == nil && !l.healed.Load() {
		return nil, connect.NewError(connect.CodeUnavailable, errors.New("connection reset"))
	}
	return resp, err
}

// A cancel cut off after payments refunded and before orders recorded it
// leaves the order CANCELLING, never PAID: a retry of the client, or else the
// recovery loop, finishes it, and the payment is refunded once.
func TestCancelCutOffIsFinished(t *testing.T) {
	t.Parallel()
	lost := &lostRefund{}
	s := newShop(t, shopConfig{wrapPayments: func(p orders.Payments) orders.Payments {
		lost.Payments = p
		return lost
	}})
	c := s.client()
	cancel := func(id string) error {
		_, err := c.CancelOrder(ctxWithTimeout(t, 10*time.Second), connect.NewRequest(&ordersv1.CancelOrderRequest{Id: id}))
		return err
	}
	byRetry, byRecovery := createOrder(t, c, visaOrder("cut-1")), createOrder(t, c, visaOrder("cut-2"))
	for _, o := range []*ordersv1.Order{byRetry, byRecovery} {
		assertError(t, cancel(o.GetId()), connect.CodeUnavailable, ordersv1.ErrorReason_PAYMENTS_UNAVAILABLE.String())
		if got := getOrder(t, c, o.GetId()); got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLING {
			t.Fatalf("after a cut-off cancel: got %v, want CANCELLING", got.GetStatus())
		}
		if st := s.paymentStatus(t, o.GetPaymentId()); st != paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
			t.Fatalf("payment after the cut-off cancel: got %v, want REFUNDED", st)
		}
	}
	lost.healed.Store(true)

	// The client retries.
	if err := cancel(byRetry.GetId()); err != nil {
		t.Fatalf("retried cancel: %v", err)
	}
	// Nobody retries: the recovery loop finishes it.
	if err := orders.ResumePending(context.Background(), s.ordersServer); err != nil {
		t.Fatal(err)
	}
	for _, o := range []*ordersv1.Order{byRetry, byRecovery} {
		got := getOrder(t, c, o.GetId())
		if got.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLED {
			t.Errorf("order %s: got %v, want CANCELLED", o.GetId(), got.GetStatus())
		}
		if st := s.paymentStatus(t, o.GetPaymentId()); st != paymentsv1.PaymentStatus_PAYMENT_STATUS_REFUNDED {
			t.Errorf("payment of %s: got %v, want REFUNDED", o.GetId(), st)
		}
	}
}
