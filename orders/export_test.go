package orders

import (
	"context"
	"time"
)

// WrapPayments makes the service of cfg call payments through wrap, so tests
// can inject failures between orders and payments.
func WrapPayments(cfg *Config, wrap func(Payments) Payments) { cfg.wrapPayments = wrap }

// ResumePending runs one round of s's recovery loop now, for every pending
// order whatever its age.
func ResumePending(ctx context.Context, s *Server) error { return s.svc.resumePending(ctx, 0) }

// PruneChanges prunes the change feed of s's store, as its recovery loop
// does, of the changes made before cutoff.
func PruneChanges(ctx context.Context, s *Server, cutoff time.Time) error {
	return s.svc.store.PruneChanges(ctx, cutoff)
}
