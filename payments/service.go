// Package payments is the payments service: it charges and refunds test card
// tokens and keeps every payment in SQLite. No real money moves.
package payments

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"regexp"
	"time"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/rpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Test card tokens.
const (
	TokenApproved = "tok_visa"
	TokenDeclined = "tok_declined"
)

// maxAmount caps one charge (in minor units) to keep test amounts sane.
const maxAmount = 100_000_000

var currencyPattern = regexp.MustCompile(`^[A-Z]{3}$`)

// Service implements [paymentsv1connect.PaymentServiceHandler].
type Service struct {
	logger  *slog.Logger
	store   Store
	replica string
	metrics *metrics
}

var _ paymentsv1connect.PaymentServiceHandler = (*Service)(nil)

// Charge implements [paymentsv1connect.PaymentServiceHandler].
func (s *Service) Charge(ctx context.Context, req *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	msg := req.Msg
	if err := validateCharge(msg); err != nil {
		return nil, err
	}
	status := paymentsv1.PaymentStatus_PAYMENT_STATUS_CAPTURED
	if msg.GetPaymentToken() == TokenDeclined {
		status = paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED
	}
	id := newID("pay_")
	p, err := s.store.Charge(ctx, msg.GetIdempotencyKey(), requestHash(msg), &paymentsv1.Payment{
		Id:        id,
		Status:    status,
		Amount:    msg.GetAmount(),
		Reference: msg.GetReference(),
		Replica:   s.replica,
		CreatedAt: timestamppb.Now(),
	})
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	s.metrics.charged(p, p.GetId() != id)
	if p.GetStatus() == paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED {
		return nil, rpc.NewErrorWithReason(connect.CodeFailedPrecondition, paymentsv1.ErrorReason_CARD_DECLINED.String(),
			"card declined", map[string]string{"payment_id": p.GetId()})
	}
	return connect.NewResponse(&paymentsv1.ChargeResponse{Payment: p}), nil
}

func validateCharge(msg *paymentsv1.ChargeRequest) error {
	var v rpc.Violations
	if !rpc.ValidIdempotencyKey(msg.GetIdempotencyKey()) {
		v.Add("idempotency_key", rpc.IdempotencyKeyRule)
	}
	if !currencyPattern.MatchString(msg.GetAmount().GetCurrencyCode()) {
		v.Add("amount.currency_code", "must be an ISO 4217 code such as USD")
	}
	if n := msg.GetAmount().GetMinorUnits(); n <= 0 || n > maxAmount {
		v.Add("amount.minor_units", "must be between 1 and %d", maxAmount)
	}
	switch msg.GetPaymentToken() {
	case TokenApproved, TokenDeclined:
	case "":
		v.Add("payment_token", "is required")
	default:
		v.Add("payment_token", "unknown test token; use %s or %s", TokenApproved, TokenDeclined)
	}
	if len(msg.GetReference()) > 128 {
		v.Add("reference", "must be at most 128 characters")
	}
	return v.Err()
}

// requestHash fingerprints what a request asks for, without its idempotency
// key; see [rpc.Fingerprint].
func requestHash(msg *paymentsv1.ChargeRequest) []byte {
	clone := proto.CloneOf(msg)
	clone.IdempotencyKey = ""
	return rpc.Fingerprint(clone)
}

// Refund implements [paymentsv1connect.PaymentServiceHandler]. A refund is
// naturally idempotent: it is always for the whole payment, so the payment id
// is its key.
func (s *Service) Refund(ctx context.Context, req *connect.Request[paymentsv1.RefundRequest]) (*connect.Response[paymentsv1.RefundResponse], error) {
	if req.Msg.GetPaymentId() == "" {
		var v rpc.Violations
		v.Add("payment_id", "is required")
		return nil, v.Err()
	}
	p, err := s.store.Refund(ctx, req.Msg.GetPaymentId(), time.Now())
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	return connect.NewResponse(&paymentsv1.RefundResponse{Payment: p}), nil
}

// GetPayment implements [paymentsv1connect.PaymentServiceHandler].
func (s *Service) GetPayment(ctx context.Context, req *connect.Request[paymentsv1.GetPaymentRequest]) (*connect.Response[paymentsv1.GetPaymentResponse], error) {
	if req.Msg.GetId() == "" {
		var v rpc.Violations
		v.Add("id", "is required")
		return nil, v.Err()
	}
	p, err := s.store.Payment(ctx, req.Msg.GetId())
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	return connect.NewResponse(&paymentsv1.GetPaymentResponse{Payment: p}), nil
}

// toConnect is the one place where store errors become codes. Anything
// unexpected is logged and sent as a bland INTERNAL error.
func (s *Service) toConnect(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return connect.NewError(connect.CodeNotFound, ErrNotFound)
	case errors.Is(err, ErrKeyReused):
		return rpc.NewErrorWithReason(connect.CodeAlreadyExists, paymentsv1.ErrorReason_IDEMPOTENCY_KEY_REUSED.String(), ErrKeyReused.Error(), nil)
	case errors.Is(err, ErrNotRefundable):
		return connect.NewError(connect.CodeFailedPrecondition, ErrNotRefundable)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	s.logger.ErrorContext(ctx, "payments store failed", "err", err)
	return connect.NewError(connect.CodeInternal, errors.New("internal error"))
}

// newID returns prefix followed by 26 random base32 characters (130 bits).
func newID(prefix string) string {
	return prefix + rand.Text()
}
