package orders

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
)

// resumePending settles orders that have been pending for longer than
// olderThan: their client gave up, or orders stopped between the charge and
// the order update. Charging again is safe because the charge is keyed by the
// order id.
func (s *Service) resumePending(ctx context.Context, olderThan time.Duration) error {
	pending, err := s.store.Pending(ctx, time.Now().Add(-olderThan))
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pending {
		if _, err := s.charge(ctx, p.Order, p.PaymentToken); err != nil && connect.CodeOf(err) != connect.CodeInvalidArgument {
			errs = append(errs, fmt.Errorf("resume order %s: %w", p.Order.GetId(), err))
		}
	}
	return errors.Join(errs...)
}

// runRecovery calls [Service.resumePending] every interval until ctx is done,
// logging failures. It leaves alone orders younger than twice the payment
// timeout, which their own CreateOrder may still be settling.
func (s *Service) runRecovery(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := s.resumePending(ctx, 2*s.paymentTimeout); err != nil && ctx.Err() == nil {
			s.logger.WarnContext(ctx, "resume pending orders", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
