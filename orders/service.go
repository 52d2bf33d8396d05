// Package orders is the orders service: it prices orders from its catalog,
// stores them in SQLite, charges them through the payments service over gRPC
// and streams every change to watchers.
package orders

import (
	"context"
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
		// Six attempts back off for up to ~1.5 s in all, time enough for the
		// balancer to eject a replica that just died, well inside the 5 s
		// deadline of the call.
		connect.WithInterceptors(rpc.RetryInterceptor(6, 2*time.Second, 50*time.Millisecond)),
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
