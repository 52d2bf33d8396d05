// Package orders is the orders service: it prices orders from its catalog,
// stores them in SQLite, charges them through the payments service over gRPC
// and streams every change to watchers.
package orders

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/rpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ServerName is how orders names itself in hops.
const ServerName = "orders"

// Reasons in the ErrorInfo of CreateOrder errors. CARD_DECLINED and
// IDEMPOTENCY_KEY_REUSED are the same as payments uses.
const (
	ReasonCardDeclined        = "CARD_DECLINED"
	ReasonKeyReused           = "IDEMPOTENCY_KEY_REUSED"
	ReasonPaymentsUnavailable = "PAYMENTS_UNAVAILABLE"
)

// Limits of one order.
const (
	maxItems       = 20
	maxQuantity    = 100
	defaultPage    = 20
	maxPage        = 100
	defaultTimeout = 5 * time.Second
)

// Payments is what orders needs of the payments service. The generated
// [paymentsv1connect.PaymentServiceClient] implements it; see
// [NewPaymentsClient].
type Payments interface {
	Charge(context.Context, *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error)
	Refund(context.Context, *connect.Request[paymentsv1.RefundRequest]) (*connect.Response[paymentsv1.RefundResponse], error)
}

// NewPaymentsClient returns a payments client that speaks gRPC with the
// binary codec over httpClient, which should speak HTTP/2 cleartext: the
// client of internal/balance, which spreads calls over replicas, or
// [rpc.NewH2CClient] for one. Calls that fail for want of a replica are retried.
func NewPaymentsClient(httpClient connect.HTTPClient, baseURL string) paymentsv1connect.PaymentServiceClient {
	return paymentsv1connect.NewPaymentServiceClient(httpClient, baseURL,
		connect.WithGRPC(),
		connect.WithReadMaxBytes(rpc.MaxMessageBytes), // a payment is tiny; refuse a runaway answer
		// Charge and Refund are IDEMPOTENT in payments.proto (keyed by the
		// order id and the payment id), so a call that a dead or restarting
		// replica could not answer is sent again, to whichever replica the
		// balancer picks next.
		connect.WithInterceptors(rpc.RetryInterceptor(4, 2*time.Second, 50*time.Millisecond)),
	)
}

// Service implements [ordersv1connect.OrderServiceHandler].
type Service struct {
	logger         *slog.Logger
	store          *Store
	payments       Payments
	paymentTimeout time.Duration
	hub            *hub
	stats          *replicaStats
}

var _ ordersv1connect.OrderServiceHandler = (*Service)(nil)

// Option configures a [Service].
type Option interface{ apply(*Service) }

type optionFunc func(*Service)

func (f optionFunc) apply(s *Service) { f(s) }

// WithPaymentTimeout bounds each call to payments; the default is 5 s. A call
// that runs out fails the order's RPC with UNAVAILABLE, never a hang.
func WithPaymentTimeout(d time.Duration) Option {
	return optionFunc(func(s *Service) { s.paymentTimeout = d })
}

// NewService returns the orders service.
func NewService(logger *slog.Logger, store *Store, payments Payments, opts ...Option) *Service {
	s := &Service{
		logger:         logger,
		store:          store,
		payments:       payments,
		paymentTimeout: defaultTimeout,
		hub:            newHub(),
		stats:          newReplicaStats(),
	}
	for _, o := range opts {
		o.apply(s)
	}
	return s
}

// NewServer returns the orders HTTP handler: the OrderService over Connect,
// gRPC and gRPC-Web and as REST routes (/v1/orders...), health, reflection,
// and page (the demo page) at "/".
func NewServer(logger *slog.Logger, svc *Service, page http.Handler, allowedOrigins []string) http.Handler {
	mux := rpc.NewServeMux(ordersv1connect.OrderServiceName)
	path, handler := ordersv1connect.NewOrderServiceHandler(svc, rpc.HandlerOptions(logger, ServerName))
	mux.Handle(path, handler)               // Connect, gRPC, gRPC-Web
	mux.Handle("/v1/", rest(path, handler)) // REST, transcoded into calls of the same handler
	mux.Handle("/", page)
	return rpc.Middleware(mux, allowedOrigins)
}

// Close ends every WatchOrders stream so that a graceful shutdown does not
// wait for them. Register it with [http.Server.RegisterOnShutdown].
func (s *Service) Close() { s.hub.close() }

// ListProducts implements [ordersv1connect.OrderServiceHandler].
func (s *Service) ListProducts(context.Context, *connect.Request[ordersv1.ListProductsRequest]) (*connect.Response[ordersv1.ListProductsResponse], error) {
	return connect.NewResponse(&ordersv1.ListProductsResponse{Products: catalog}), nil
}

// CreateOrder implements [ordersv1connect.OrderServiceHandler].
//
// The order is stored as PENDING before payments is called, under the
// client's idempotency key, and the charge carries the order id as its own
// idempotency key. A retry, a concurrent duplicate, or [Service.ResumePending]
// after a crash between the charge and the order update therefore finds the
// same order and charges it at most once.
func (s *Service) CreateOrder(ctx context.Context, req *connect.Request[ordersv1.CreateOrderRequest]) (*connect.Response[ordersv1.CreateOrderResponse], error) {
	msg := req.Msg
	items, total, err := price(msg)
	if err != nil {
		return nil, err
	}
	key, err := idempotencyKey(msg.GetIdempotencyKey(), req.Header().Get(IdempotencyKeyHeader))
	if err != nil {
		return nil, err
	}
	now := timestamppb.Now()
	o, err := s.store.Create(ctx, key, requestHash(msg), msg.GetPaymentToken(), &ordersv1.Order{
		Id:        "ord_" + rand.Text(),
		Status:    ordersv1.OrderStatus_ORDER_STATUS_PENDING,
		Items:     items,
		Total:     total,
		CreatedAt: now,
		UpdatedAt: now,
	})
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	if o.GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_PENDING {
		if o, err = s.charge(ctx, o, msg.GetPaymentToken()); err != nil {
			return nil, err
		}
	}
	if o.GetStatus() == ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED {
		return nil, declined(o)
	}
	return connect.NewResponse(&ordersv1.CreateOrderResponse{Order: o}), nil
}

// price validates a CreateOrder request and prices it from the catalog.
func price(msg *ordersv1.CreateOrderRequest) ([]*ordersv1.OrderItem, *ordersv1.Money, error) {
	var v rpc.Violations
	switch n := len(msg.GetItems()); {
	case n == 0:
		v.Add("items", "must not be empty")
	case n > maxItems:
		v.Add("items", "must have at most %d lines", maxItems)
	}
	if msg.GetPaymentToken() == "" {
		v.Add("payment_token", "is required")
	}
	if k := msg.GetIdempotencyKey(); k != "" && !rpc.ValidIdempotencyKey(k) {
		v.Add("idempotency_key", rpc.IdempotencyKeyRule)
	}
	var (
		items = make([]*ordersv1.OrderItem, 0, len(msg.GetItems()))
		total int64
		seen  = make(map[string]bool)
	)
	for i, it := range msg.GetItems() {
		field := fmt.Sprintf("items[%d]", i)
		p, ok := productsByID[it.GetProductId()]
		switch {
		case it.GetProductId() == "":
			v.Add(field+".product_id", "is required")
		case !ok:
			v.Add(field+".product_id", "unknown product %q", it.GetProductId())
		case seen[it.GetProductId()]:
			v.Add(field+".product_id", "product %q is already in the order; raise its quantity instead", it.GetProductId())
		}
		seen[it.GetProductId()] = true
		if q := it.GetQuantity(); q < 1 || q > maxQuantity {
			v.Add(field+".quantity", "must be between 1 and %d", maxQuantity)
		}
		if !ok {
			continue
		}
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
	if err := v.Err(); err != nil {
		return nil, nil, err
	}
	return items, usd(total), nil
}

// idempotencyKey returns the key of a CreateOrder: the request field, or the
// Idempotency-Key header that REST clients send, or a random one if neither
// is set (no retry safety was asked for: every call is new).
func idempotencyKey(field, header string) (string, error) {
	switch {
	case field != "" && header != "" && field != header:
		var v rpc.Violations
		v.Add("idempotency_key", "differs from the %s header", IdempotencyKeyHeader)
		return "", v.Err()
	case field != "":
		return field, nil
	case header != "":
		if !rpc.ValidIdempotencyKey(header) {
			var v rpc.Violations
			v.Add("idempotency_key", "%s header %s", IdempotencyKeyHeader, rpc.IdempotencyKeyRule)
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

// charge asks payments to charge a pending order and records the outcome. It
// returns the settled order (PAID or PAYMENT_DECLINED) or an error for the
// caller, in which case the order is still PENDING or, if payments found the
// request invalid, gone.
func (s *Service) charge(ctx context.Context, o *ordersv1.Order, token string) (*ordersv1.Order, error) {
	callCtx, cancel := context.WithTimeout(ctx, s.paymentTimeout)
	resp, err := s.payments.Charge(callCtx, connect.NewRequest(&paymentsv1.ChargeRequest{
		IdempotencyKey: o.GetId(),
		Amount:         &paymentsv1.Money{CurrencyCode: o.GetTotal().GetCurrencyCode(), MinorUnits: o.GetTotal().GetMinorUnits()},
		PaymentToken:   token,
		Reference:      o.GetId(),
	}))
	cancel()
	var declined bool
	switch {
	case err == nil:
	case rpc.Reason(err) == ReasonCardDeclined:
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
		// The order stays PENDING until a retry or ResumePending settles it;
		// watchers see it waiting. (A pending order that is being charged
		// right now is not published: it may still vanish as invalid.)
		s.hub.publish(o)
		return nil, s.paymentsFailed(ctx, "charge", o.GetId(), err)
	}
	hops := s.hops(ctx, paymentHeader(resp, err))
	return s.transition(ctx, o.GetId(), ordersv1.OrderStatus_ORDER_STATUS_PENDING, hops, func(o *ordersv1.Order) {
		if declined {
			o.Status = ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED
			return
		}
		o.Status = ordersv1.OrderStatus_ORDER_STATUS_PAID
		o.PaymentId = resp.Msg.GetPayment().GetId()
		o.PaymentReplica = resp.Msg.GetPayment().GetReplica()
	})
}

// transition moves order id from status from to what apply sets, appending
// hops, unless a concurrent call moved it first, and tells watchers. It returns
// the order as stored. It runs even if the client has gone, since the payment
// it records has happened.
func (s *Service) transition(ctx context.Context, id string, from ordersv1.OrderStatus, hops []*ordersv1.Hop, apply func(*ordersv1.Order)) (*ordersv1.Order, error) {
	updateCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.paymentTimeout)
	defer cancel()
	o, changed, err := s.store.Update(updateCtx, id, func(o *ordersv1.Order) (bool, error) {
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
	if changed {
		s.hub.publish(o)
	}
	return o, nil
}

// declined is the error for an order whose card was declined.
func declined(o *ordersv1.Order) error {
	return rpc.NewErrorWithReason(connect.CodeFailedPrecondition, ReasonCardDeclined,
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
	return rpc.NewErrorWithReason(connect.CodeUnavailable, ReasonPaymentsUnavailable,
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

// hops returns the hops of the current call: client to orders, as orders sees
// it now, and orders to payments, as the payments replica reported it in
// header. It counts the answer in the replica stats.
func (s *Service) hops(ctx context.Context, header http.Header) []*ordersv1.Hop {
	var hops []*ordersv1.Hop
	if h, ok := rpc.HopFromContext(ctx, ServerName); ok {
		hops = append(hops, hopProto(h))
	}
	if h, ok := rpc.ParseHop(header); ok {
		s.stats.record(h.Server)
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

// GetOrder implements [ordersv1connect.OrderServiceHandler].
func (s *Service) GetOrder(ctx context.Context, req *connect.Request[ordersv1.GetOrderRequest]) (*connect.Response[ordersv1.GetOrderResponse], error) {
	if err := requireID(req.Msg.GetId()); err != nil {
		return nil, err
	}
	o, err := s.store.Order(ctx, req.Msg.GetId())
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	return connect.NewResponse(&ordersv1.GetOrderResponse{Order: o}), nil
}

// ListOrders implements [ordersv1connect.OrderServiceHandler].
func (s *Service) ListOrders(ctx context.Context, req *connect.Request[ordersv1.ListOrdersRequest]) (*connect.Response[ordersv1.ListOrdersResponse], error) {
	var v rpc.Violations
	size := int(req.Msg.GetPageSize())
	switch {
	case size == 0:
		size = defaultPage
	case size < 0 || size > maxPage:
		v.Add("page_size", "must be between 1 and %d", maxPage)
	}
	cursor, ok := decodePageToken(req.Msg.GetPageToken())
	if !ok {
		v.Add("page_token", "is not a token this service returned")
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	list, next, err := s.store.List(ctx, cursor, size)
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	return connect.NewResponse(&ordersv1.ListOrdersResponse{
		Orders:        list,
		NextPageToken: encodePageToken(next),
	}), nil
}

// Page tokens are opaque to clients; inside they are the store's cursor.
func encodePageToken(cursor int64) string {
	if cursor == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte("seq:" + strconv.FormatInt(cursor, 10)))
}

func decodePageToken(token string) (int64, bool) {
	if token == "" {
		return 0, true
	}
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 5 || string(b[:4]) != "seq:" {
		return 0, false
	}
	n, err := strconv.ParseInt(string(b[4:]), 10, 64)
	return n, err == nil && n > 0
}

// CancelOrder implements [ordersv1connect.OrderServiceHandler].
func (s *Service) CancelOrder(ctx context.Context, req *connect.Request[ordersv1.CancelOrderRequest]) (*connect.Response[ordersv1.CancelOrderResponse], error) {
	if err := requireID(req.Msg.GetId()); err != nil {
		return nil, err
	}
	o, err := s.store.Order(ctx, req.Msg.GetId())
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	switch o.GetStatus() {
	case ordersv1.OrderStatus_ORDER_STATUS_CANCELLED:
		return connect.NewResponse(&ordersv1.CancelOrderResponse{Order: o}), nil
	case ordersv1.OrderStatus_ORDER_STATUS_PAID:
	default:
		return nil, connect.NewError(connect.CodeFailedPrecondition,
			fmt.Errorf("order is %s; only a paid order can be cancelled", statusName(o.GetStatus())))
	}
	// Refund first: it is idempotent, so if the update below fails a retry
	// refunds nothing twice.
	callCtx, cancel := context.WithTimeout(ctx, s.paymentTimeout)
	resp, err := s.payments.Refund(callCtx, connect.NewRequest(&paymentsv1.RefundRequest{PaymentId: o.GetPaymentId()}))
	cancel()
	if err != nil {
		return nil, s.paymentsFailed(ctx, "refund", o.GetId(), err)
	}
	o, err = s.transition(ctx, o.GetId(), ordersv1.OrderStatus_ORDER_STATUS_PAID, s.hops(ctx, resp.Header()), func(o *ordersv1.Order) {
		o.Status = ordersv1.OrderStatus_ORDER_STATUS_CANCELLED
	})
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&ordersv1.CancelOrderResponse{Order: o}), nil
}

// WatchOrders implements [ordersv1connect.OrderServiceHandler].
func (s *Service) WatchOrders(ctx context.Context, _ *connect.Request[ordersv1.WatchOrdersRequest], stream *connect.ServerStream[ordersv1.WatchOrdersResponse]) error {
	w, ok := s.hub.subscribe()
	if !ok {
		return connect.NewError(connect.CodeUnavailable, errors.New("server is shutting down"))
	}
	defer s.hub.unsubscribe(w)
	// Send the headers now: once a client has them, it knows every later
	// change will reach it.
	if err := stream.Send(nil); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case o, ok := <-w.changes:
			if !ok {
				if s.hub.isLagged(w) {
					return connect.NewError(connect.CodeResourceExhausted, errors.New("watcher fell behind; reconnect"))
				}
				return nil // shutting down
			}
			if err := stream.Send(&ordersv1.WatchOrdersResponse{Order: o}); err != nil {
				return err
			}
		}
	}
}

// ResumePending settles orders that have been pending for longer than
// olderThan: their client gave up, or orders stopped between the charge and
// the order update. Charging again is safe because the charge is keyed by the
// order id.
func (s *Service) ResumePending(ctx context.Context, olderThan time.Duration) error {
	pending, err := s.store.Pending(ctx, time.Now().Add(-olderThan))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pending {
		if _, err := s.charge(ctx, p.order, p.paymentToken); err != nil && connect.CodeOf(err) != connect.CodeInvalidArgument {
			errs = append(errs, fmt.Errorf("resume order %s: %w", p.order.GetId(), err))
		}
	}
	return errors.Join(errs...)
}

// RunRecovery calls [Service.ResumePending] every interval until ctx is done,
// logging failures; run it in its own goroutine. It leaves alone orders younger
// than twice the payment timeout, which their own CreateOrder may still be
// settling.
func (s *Service) RunRecovery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.ResumePending(ctx, 2*s.paymentTimeout); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "resume pending orders", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func requireID(id string) error {
	if id != "" {
		return nil
	}
	var v rpc.Violations
	v.Add("id", "is required")
	return v.Err()
}

func statusName(st ordersv1.OrderStatus) string {
	switch st {
	case ordersv1.OrderStatus_ORDER_STATUS_PENDING:
		return "pending"
	case ordersv1.OrderStatus_ORDER_STATUS_PAYMENT_DECLINED:
		return "declined"
	default:
		return st.String()
	}
}

func errorMessage(err error) string {
	var cerr *connect.Error
	if errors.As(err, &cerr) {
		return cerr.Message()
	}
	return err.Error()
}

// toConnect is the one place where store errors become codes. Anything
// unexpected is logged and sent as a bland INTERNAL error.
func (s *Service) toConnect(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return connect.NewError(connect.CodeNotFound, ErrNotFound)
	case errors.Is(err, ErrKeyReused):
		return rpc.NewErrorWithReason(connect.CodeAlreadyExists, ReasonKeyReused, ErrKeyReused.Error(), nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	s.logger.ErrorContext(ctx, "orders store failed", "err", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}
