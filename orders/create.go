package orders

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/internal/rpc"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// CreateOrder implements [ordersv1connect.OrderServiceHandler].
//
// The order is stored as PENDING before payments is called, under the
// client's idempotency key, and the charge carries the order id as its own
// idempotency key. A retry, a concurrent duplicate, or the recovery loop
// after a crash between the charge and the order update therefore finds the
// same order and charges it at most once.
func (s *Service) CreateOrder(ctx context.Context, req *connect.Request[ordersv1.CreateOrderRequest]) (_ *connect.Response[ordersv1.CreateOrderResponse], err error) {
	defer func() { s.metrics.countCreate(ctx, err) }()
	msg := req.Msg
	if err := validateCreate(msg); err != nil {
		return nil, err
	}
	items, total := price(msg.GetItems())
	key, err := idempotencyKey(msg.GetIdempotencyKey(), req.Header().Get(idempotencyKeyHeader))
	if err != nil {
		return nil, err
	}
	now := timestamppb.Now()
	o, err := s.store.Create(ctx, key, requestHash(msg), msg.GetPaymentToken(), &ordersv1.Order{
		Id:         "ord_" + rand.Text(),
		CustomerId: customerFrom(ctx),
		Status:     ordersv1.OrderStatus_ORDER_STATUS_PENDING,
		Items:      items,
		Total:      total,
		CreatedAt:  now,
		UpdatedAt:  now,
		TraceId:    traceID(ctx),
	})
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	if o.GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_PENDING {
		if o, err = s.charge(ctx, o, msg.GetPaymentToken()); err != nil {
			if connect.CodeOf(err) != connect.CodeInvalidArgument {
				s.announcePending(ctx, o.GetId())
			}
			return nil, err
		}
	}
	if o.GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED {
		return nil, declined(o)
	}
	return connect.NewResponse(&ordersv1.CreateOrderResponse{Order: o}), nil
}

// validateCreate reports everything wrong with a CreateOrder request that
// orders can tell alone (payments judges the token).
func validateCreate(msg *ordersv1.CreateOrderRequest) error {
	var v rpc.Violations
	switch n := len(msg.GetItems()); {
	case n == 0:
		v.Add("items", "must not be empty")
	case n > maxItems:
		v.Add("items", "must have at most %d lines", maxItems)
	}
	switch n := len(msg.GetPaymentToken()); {
	case n == 0:
		v.Add("payment_token", "is required")
	case n > maxTokenBytes:
		v.Add("payment_token", "must be at most %d bytes", maxTokenBytes)
	}
	if k := msg.GetIdempotencyKey(); k != "" && !rpc.ValidIdempotencyKey(k) {
		v.Add("idempotency_key", rpc.IdempotencyKeyRule)
	}
	seen := make(map[string]bool)
	for i, it := range msg.GetItems() {
		field := fmt.Sprintf("items[%d]", i)
		_, known := productsByID[it.GetProductId()]
		switch {
		case it.GetProductId() == "":
			v.Add(field+".product_id", "is required")
		case !known:
			v.Add(field+".product_id", "unknown product %q", rpc.Truncate(it.GetProductId(), rpc.EchoBytes))
		case seen[it.GetProductId()]:
			v.Add(field+".product_id", "product %q is already in the order; raise its quantity instead", rpc.Truncate(it.GetProductId(), rpc.EchoBytes))
		}
		seen[it.GetProductId()] = true
		if q := it.GetQuantity(); q < 1 || q > maxQuantity {
			v.Add(field+".quantity", "must be between 1 and %d", maxQuantity)
		}
	}
	return v.Err()
}

// price prices valid cart items from the catalog: the lines of the order and
// its total.
func price(cart []*ordersv1.CartItem) ([]*ordersv1.OrderItem, *ordersv1.Money) {
	items := make([]*ordersv1.OrderItem, 0, len(cart))
	var total int64
	for _, it := range cart {
		p := productsByID[it.GetProductId()]
		line := p.GetPrice().GetMinorUnits() * int64(it.GetQuantity())
		total += line
		items = append(items, &ordersv1.OrderItem{
			ProductId:   p.GetId(),
			ProductName: p.GetName(),
			Quantity:    it.GetQuantity(),
			UnitPrice:   usd(p.GetPrice().GetMinorUnits()),
			LineTotal:   usd(line),
		})
	}
	return items, usd(total)
}

// idempotencyKey returns the key of a CreateOrder: the request field, or the
// Idempotency-Key header that REST clients send, or a random one if neither
// is set (no retry safety was asked for: every call is new).
func idempotencyKey(field, header string) (string, error) {
	switch {
	case field != "" && header != "" && field != header:
		var v rpc.Violations
		v.Add("idempotency_key", "differs from the %s header", idempotencyKeyHeader)
		return "", v.Err()
	case field != "":
		return field, nil
	case header != "":
		if !rpc.ValidIdempotencyKey(header) {
			var v rpc.Violations
			v.Add("idempotency_key", "%s header %s", idempotencyKeyHeader, rpc.IdempotencyKeyRule)
			return "", v.Err()
		}
		return header, nil
	}
	return "auto:" + rand.Text(), nil
}

// requestHash fingerprints what a request asks for, without its idempotency
// key; see [rpc.Fingerprint].
func requestHash(msg *ordersv1.CreateOrderRequest) []byte {
	clone := proto.CloneOf(msg)
	clone.IdempotencyKey = ""
	return rpc.Fingerprint(clone)
}

// traceID returns the W3C trace id of the call ctx belongs to, or "" if it
// is not traced.
func traceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// charge asks payments to charge a pending order and records the outcome. It
// returns the settled order (PAID or PAYMENT_DECLINED) or an error for the
// caller, in which case the order is still PENDING or, if payments found the
// request invalid, gone.
func (s *Service) charge(ctx context.Context, o *ordersv1.Order, token string) (*ordersv1.Order, error) {
	resp, err := s.payments.Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{
		IdempotencyKey: o.GetId(),
		Amount:         &paymentsv1.Money{CurrencyCode: o.GetTotal().GetCurrencyCode(), MinorUnits: o.GetTotal().GetMinorUnits()},
		PaymentToken:   token,
		Reference:      o.GetId(),
	}))
	var declined bool
	switch {
	case err == nil:
	case rpc.Reason(err) == paymentsv1.ErrorReason_CARD_DECLINED.String():
		declined = true
	case connect.CodeOf(err) == connect.CodeInvalidArgument:
		// Payments rejected the token. Nothing was charged: remove the order
		// so the request leaves nothing behind, and say which field was wrong.
		if derr := s.store.DeletePending(context.WithoutCancel(ctx), o.GetId()); derr != nil {
			s.logger.ErrorContext(ctx, "delete rejected order", "order_id", o.GetId(), "err", derr)
		}
		var v rpc.Violations
		v.Add("payment_token", "was rejected by payments: %s", errorMessage(err))
		return nil, v.Err()
	default:
		// The order stays PENDING until a retry or the recovery loop settles it.
		return nil, s.paymentsFailed(ctx, "charge", o.GetId(), err)
	}
	header := paymentHeader(resp, err)
	s.stats.record(header)
	return s.transition(ctx, o.GetId(), ordersv1.OrderStatus_ORDER_STATUS_PENDING, hops(ctx, header), func(o *ordersv1.Order) {
		if declined {
			o.Status = ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED
			return
		}
		o.Status = ordersv1.OrderStatus_ORDER_STATUS_PAID
		o.PaymentId = resp.Msg.GetPayment().GetId()
		o.PaymentReplica = resp.Msg.GetPayment().GetReplica()
	})
}

// storeTimeout bounds a write that must happen even if the client has gone.
const storeTimeout = 5 * time.Second

// transition moves order id from status from to what apply sets, appending
// hops, unless a concurrent call moved it first (the store puts the change on
// the customer's feed for watchers). It returns
// the order as stored. It runs even if the client has gone, since the payment
// it records has happened.
func (s *Service) transition(ctx context.Context, id string, from ordersv1.OrderStatus, hops []*ordersv1.Hop, apply func(*ordersv1.Order)) (*ordersv1.Order, error) {
	updateCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	o, _, err := s.store.Update(updateCtx, id, func(o *ordersv1.Order) (bool, error) {
		if o.GetStatus() != from {
			return false, nil
		}
		apply(o)
		o.Hops = append(o.Hops, hops...)
		o.UpdatedAt = timestamppb.Now()
		return true, nil
	})
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	return o, nil
}

// announcePending puts the PENDING order id, which waits for payments, on its
// customer's change feed, so that watchers see it waiting: an order enters
// the feed with its first update (see [Store.Update]), as a new one may
// still vanish when payments rejects its token.
func (s *Service) announcePending(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	_, _, err := s.store.Update(ctx, id, func(o *ordersv1.Order) (bool, error) {
		return o.GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_PENDING, nil
	})
	if err != nil {
		s.logger.WarnContext(ctx, "announce pending order to watchers", "order_id", id, "err", err)
	}
}

// declined is the error for an order whose card was declined.
func declined(o *ordersv1.Order) error {
	return rpc.NewErrorWithReason(connect.CodeFailedPrecondition, ordersv1.ErrorReason_CARD_DECLINED.String(),
		"card declined; the order was not charged", map[string]string{"order_id": o.GetId()})
}

// paymentsFailed turns a failed call to payments into the caller's error: the
// caller's own cancellation or deadline passes through; anything else means
// payments could not do it now, and the same call may be retried.
func (s *Service) paymentsFailed(ctx context.Context, what, orderID string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	s.logger.WarnContext(ctx, "payments call failed", "call", what, "order_id", orderID,
		"code", connect.CodeOf(err).String(), "err", err)
	return rpc.NewErrorWithReason(connect.CodeUnavailable, ordersv1.ErrorReason_PAYMENTS_UNAVAILABLE.String(),
		"payments is unavailable; retry (with the same idempotency key)", map[string]string{"order_id": orderID})
}

// paymentHeader returns the response or error metadata of a payments call.
func paymentHeader[T any](resp *connect.Response[T], err error) http.Header {
	if err != nil {
		var cerr *connect.Error
		if errors.As(err, &cerr) {
			return cerr.Meta()
		}
		return nil
	}
	return resp.Header()
}

// hops returns the hops of the current call: client to orders, as orders
// sees it now, and orders to payments, as the replica reported it in header.
func hops(ctx context.Context, header http.Header) []*ordersv1.Hop {
	var hops []*ordersv1.Hop
	if h, ok := rpc.HopFromContext(ctx, serverName); ok {
		hops = append(hops, hopProto(h))
	}
	if h, ok := rpc.ParseHop(header); ok {
		hops = append(hops, hopProto(h))
	}
	return hops
}

func hopProto(h rpc.Hop) *ordersv1.Hop {
	return &ordersv1.Hop{
		Procedure:   h.Procedure,
		Server:      h.Server,
		Protocol:    h.Protocol,
		Codec:       h.Codec,
		HttpVersion: h.HTTPVersion,
		Duration:    durationpb.New(h.Duration),
	}
}
