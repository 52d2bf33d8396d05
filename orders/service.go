// Package orders is the orders service: it prices orders from its catalog,
// stores them in SQLite, charges them through the payments service over gRPC
// and streams every change to watchers.
package orders

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"strconv"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/rpc"
)

// serverName is how orders names itself in hops.
const serverName = "orders"

// Limits of one order and of a page of orders.
const (
	maxItems    = 20
	maxQuantity = 100
	defaultPage = 20
	maxPage     = 100
	// maxTokenBytes bounds a payment token, which is kept with a pending
	// order until it is charged; card tokens are far shorter.
	maxTokenBytes = 128
)

// Service implements [ordersv1connect.OrderServiceHandler].
type Service struct {
	logger         *slog.Logger
	store          Store
	payments       Payments
	paymentTimeout time.Duration // of one call to payments, retries included
	sessions       *auth.Sessions
	hub            *hub
	stats          *replicaStats
	metrics        *metrics
}

var _ ordersv1connect.OrderServiceHandler = (*Service)(nil)

func newService(logger *slog.Logger, store Store, payments Payments, paymentTimeout time.Duration, sessions *auth.Sessions) *Service {
	return &Service{
		logger:         logger,
		store:          store,
		payments:       payments,
		paymentTimeout: paymentTimeout,
		sessions:       sessions,
		hub:            newHub(),
		stats:          newReplicaStats(),
	}
}

// ListProducts implements [ordersv1connect.OrderServiceHandler].
func (s *Service) ListProducts(context.Context, *connect.Request[ordersv1.ListProductsRequest]) (*connect.Response[ordersv1.ListProductsResponse], error) {
	return connect.NewResponse(&ordersv1.ListProductsResponse{Products: catalog}), nil
}

// GetOrder implements [ordersv1connect.OrderServiceHandler].
func (s *Service) GetOrder(ctx context.Context, req *connect.Request[ordersv1.GetOrderRequest]) (*connect.Response[ordersv1.GetOrderResponse], error) {
	if err := requireID(req.Msg.GetId()); err != nil {
		return nil, err
	}
	o, err := s.ownOrder(ctx, req.Msg.GetId())
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
	list, next, err := s.store.List(ctx, customerFrom(ctx), cursor, size)
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

// ownOrder returns the caller's order with the given id. Another customer's
// order is [ErrNotFound], as an unknown id is: whether it exists is not the
// caller's business.
func (s *Service) ownOrder(ctx context.Context, id string) (*ordersv1.Order, error) {
	o, err := s.store.Order(ctx, id)
	if err != nil {
		return nil, err
	}
	if o.GetCustomerId() != customerFrom(ctx) {
		return nil, ErrNotFound
	}
	return o, nil
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
		return rpc.NewErrorWithReason(connect.CodeAlreadyExists, ordersv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String(), ErrKeyReused.Error(), nil)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	s.logger.ErrorContext(ctx, "orders store failed", "err", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}
