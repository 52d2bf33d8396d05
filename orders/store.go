package orders

import (
	"context"
	"errors"
	"time"

	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
)

// Store keeps orders durably. orders/sqlite implements it; every
// implementation must pass the suite in orders/storetest.
//
// An order is written as a whole: its status, items, hops and payment are in
// the [ordersv1.Order] stored. Every method returns once what it wrote is
// durable.
type Store interface {
	// Create stores o under key unless an order of the same customer
	// (o.CustomerId) with that key exists: keys are per customer. It returns
	// the stored order: o, or the earlier one if its request hash matches,
	// else [ErrKeyReused]. paymentToken is kept to settle the order later
	// (see Unsettled).
	Create(ctx context.Context, key string, requestHash []byte, paymentToken string, o *ordersv1.Order) (*ordersv1.Order, error)
	// Update changes the order with the given id in one transaction: fn gets
	// the stored order, changes it in place and reports whether it did. Update
	// returns the order as stored afterwards and whether fn changed it, or
	// [ErrNotFound]. When fn reports a change, the order as stored is also
	// appended, in the same transaction, to its customer's change feed (see
	// Changes); Create appends nothing, as a new order is PENDING and may
	// still be deleted.
	Update(ctx context.Context, id string, fn func(*ordersv1.Order) (bool, error)) (*ordersv1.Order, bool, error)
	// DeletePending removes the order with the given id if it is still
	// pending, and does nothing otherwise.
	DeletePending(ctx context.Context, id string) error
	// Order returns the order with the given id, or [ErrNotFound].
	Order(ctx context.Context, id string) (*ordersv1.Order, error)
	// List returns up to limit orders of the customer created before the
	// cursor (0: from the newest), newest first, and the cursor of the next
	// page (0 on the last).
	List(ctx context.Context, customerID string, before int64, limit int) ([]*ordersv1.Order, int64, error)
	// Unsettled returns up to 100 orders left PENDING or CANCELLING since
	// before cutoff (by their update time), oldest first: the steps still to
	// do of a change that spans orders and payments. A store shared by
	// several orders instances may hand each order to one caller at a time
	// (a lease), so that their recovery loops split the work.
	Unsettled(ctx context.Context, cutoff time.Time) ([]UnsettledOrder, error)
	// Changes returns the changes of the customer's orders with a sequence
	// number above after, oldest first, at most limit. A customer's sequence
	// numbers count up from 1 without gaps, in the order the changes were
	// committed, across every store sharing the database: a caller that has
	// seen up to n and gets n+2 first knows that n+1 was pruned.
	Changes(ctx context.Context, customerID string, after int64, limit int) ([]Change, error)
	// LastChange returns the sequence number of the customer's latest change,
	// or 0 if there is none.
	LastChange(ctx context.Context, customerID string) (int64, error)
	// PruneChanges deletes the changes made before cutoff. It never resets a
	// customer's sequence numbers.
	PruneChanges(ctx context.Context, cutoff time.Time) error
	// Listen calls changed with the customer of each change committed from
	// now on, by this store or any other sharing its database, until ctx ends
	// or the connection it listens on fails (it returns the error then; call
	// it again). Calls may be coalesced and may come late, so they are only a
	// wake-up: read the changes with Changes. Once it listens, Listen first
	// calls changed(""), meaning any customer, so that callers catch up on
	// what they missed before; it also may call changed("") at any time.
	Listen(ctx context.Context, changed func(customerID string)) error
	// Ping reports whether the database answers, for readiness checks.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// Change is one entry of a customer's change feed.
type Change struct {
	Seq   int64           // the customer's sequence number of the change
	Order *ordersv1.Order // the order as stored by the change
}

// UnsettledOrder is an order whose payment is not settled (PENDING, to
// charge) or whose cancel is not finished (CANCELLING, to refund), with what
// it takes to settle it.
type UnsettledOrder struct {
	Order        *ordersv1.Order
	PaymentToken string
}

// Errors a [Store] returns; the service maps them to codes.
var (
	ErrNotFound  = errors.New("order not found")
	ErrKeyReused = errors.New("idempotency key already used for a different request")
)
