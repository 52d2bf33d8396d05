package orders

import (
	"context"
	"fmt"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
)

// CancelOrder implements [ordersv1connect.OrderServiceHandler].
//
// A cancel is a saga of two steps in two services: the refund in payments,
// then the order's own state. The intent is stored first (CANCELLING), so
// that a cancel cut off between the steps — orders killed, payments
// unreachable, the database busy — is finished later by a retry of the
// client or by the recovery loop, and the order never stays PAID with its
// money returned. Every step is idempotent: the refund is keyed by the
// payment id, and each state change happens only from the state before it.
func (s *Service) CancelOrder(ctx context.Context, req *connect.Request[ordersv1.CancelOrderRequest]) (*connect.Response[ordersv1.CancelOrderResponse], error) {
	if err := requireID(req.Msg.GetId()); err != nil {
		return nil, err
	}
	o, err := s.ownOrder(ctx, req.Msg.GetId())
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	switch o.GetStatus() {
	case ordersv1.OrderStatus_ORDER_STATUS_CANCELLED:
		return connect.NewResponse(&ordersv1.CancelOrderResponse{Order: o}), nil
	case ordersv1.OrderStatus_ORDER_STATUS_PAID:
		o, err = s.transition(ctx, o.GetId(), ordersv1.OrderStatus_ORDER_STATUS_PAID, nil, func(o *ordersv1.Order) {
			o.Status = ordersv1.OrderStatus_ORDER_STATUS_CANCELLING
		})
		if err != nil {
			return nil, err
		}
	case ordersv1.OrderStatus_ORDER_STATUS_CANCELLING:
	default:
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("order is %s; only a paid order can be cancelled", statusName(o.GetStatus())))
	}
	if o, err = s.finishCancel(ctx, o); err != nil {
		return nil, err
	}
	return connect.NewResponse(&ordersv1.CancelOrderResponse{Order: o}), nil
}

// finishCancel refunds the payment of an order whose cancel is recorded
// (CANCELLING) and records the refund (CANCELLED). It returns the order as
// stored: CANCELLED, or as a concurrent call left it. If payments cannot be
// reached the order stays CANCELLING, for a retry or the recovery loop.
func (s *Service) finishCancel(ctx context.Context, o *ordersv1.Order) (*ordersv1.Order, error) {
	if o.GetStatus() != ordersv1.OrderStatus_ORDER_STATUS_CANCELLING {
		return o, nil // another call finished it
	}
	resp, err := s.payments.Refund(ctx, connect.NewRequest(&paymentsv1.RefundRequest{PaymentId: o.GetPaymentId()}))
	if err != nil {
		return nil, s.paymentsFailed(ctx, "refund", o.GetId(), err)
	}
	s.stats.record(resp.Header())
	return s.transition(ctx, o.GetId(), ordersv1.OrderStatus_ORDER_STATUS_CANCELLING, hops(ctx, resp.Header()), func(o *ordersv1.Order) {
		o.Status = ordersv1.OrderStatus_ORDER_STATUS_CANCELLED
	})
}
