package payments

import (
	"context"
	"errors"
	"time"

	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
)

// Store keeps payments durably. Several replicas may share one store:
// idempotency must hold across them, enforced by the database (a unique key
// checked inside a write transaction), not by memory. payments/sqlite
// implements it; every implementation must pass the suite in
// payments/storetest.
type Store interface {
	// Charge stores p under key unless a payment with that key exists. It
	// returns the stored payment: p, or the earlier one if its request hash
	// matches, else [ErrKeyReused].
	Charge(ctx context.Context, key string, requestHash []byte, p *paymentsv1.Payment) (*paymentsv1.Payment, error)
	// Refund marks a captured payment refunded at now and returns it. A
	// refunded payment is returned unchanged; a declined one is
	// [ErrNotRefundable]; an unknown id [ErrNotFound].
	Refund(ctx context.Context, id string, now time.Time) (*paymentsv1.Payment, error)
	// Payment returns the payment with the given id, or [ErrNotFound].
	Payment(ctx context.Context, id string) (*paymentsv1.Payment, error)
	// Ping reports whether the database answers, for readiness checks.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// Errors a [Store] returns; the service maps them to codes.
var (
	ErrNotFound      = errors.New("payment not found")
	ErrKeyReused     = errors.New("idempotency key already used for a different request")
	ErrNotRefundable = errors.New("payment was declined and cannot be refunded")
)
