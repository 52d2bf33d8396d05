package orders

import (
	"context"
	"errors"
	"fmt"
	"time"

	"connectrpc.com/connect"
)

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
