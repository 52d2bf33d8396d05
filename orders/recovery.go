package orders

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
)

// resumePending settles orders left half-way for longer than olderThan:
// PENDING ones (their client gave up, or orders stopped between the charge and
// the order update) are charged, CANCELLING ones (a cancel cut off before or
// after the refund) are refunded and cancelled. Doing a step again is safe:
// the charge is keyed by the order id, the refund by the payment id.
func (s *Service) resumePending(ctx context.Context, olderThan time.Duration) error {
	unsettled, err := s.store.Unsettled(ctx, time.Now().Add(-olderThan))
	if err != nil {
		return err
	}
	var errs []error
	for _, u := range unsettled {
		var err error
		switch u.Order.GetStatus() {
		case ordersv1.OrderStatus_ORDER_STATUS_PENDING:
			if _, err = s.charge(ctx, u.Order, u.PaymentToken); connect.CodeOf(err) == connect.CodeInvalidArgument {
				err = nil // the order is gone: nothing was charged
			}
		case ordersv1.OrderStatus_ORDER_STATUS_CANCELLING:
			_, err = s.finishCancel(ctx, u.Order)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("resume order %s: %w", u.Order.GetId(), err))
		}
	}
	return errors.Join(errs...)
}

// runRecovery calls [Service.resumePending] and prunes the change feed every
// interval until ctx is done, logging failures. It leaves alone orders
// younger than twice the payment timeout, which their own CreateOrder may
// still be settling.
func (s *Service) runRecovery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.resumePending(ctx, 2*s.paymentTimeout); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "resume pending orders", "err", err)
		}
		if err := s.store.PruneChanges(ctx, time.Now().Add(-changeRetention)); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "prune the change feed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
