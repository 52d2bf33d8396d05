package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/grpchealth"
)

// CheckTimeout bounds each readiness check. Probes give up after 2 s (see
// deploy/k8s), and the checks run at once, so a stuck one still leaves time
// to answer "not ready" rather than nothing.
const CheckTimeout = time.Second

// ErrDraining is the readiness error of a server that is shutting down.
var ErrDraining = errors.New("shutting down")

// Check is one condition of readiness, such as "database" reachable.
type Check struct {
	Name string
	// Func returns nil when the condition holds. Its context ends after
	// [CheckTimeout].
	Func func(context.Context) error
}

// Readiness says whether a server should get traffic: all its checks pass
// and it is not shutting down. It answers /readyz (see [NewAdmin]) and keeps
// the gRPC health statuses of [Readiness.HealthChecker] in step.
type Readiness struct {
	checks  []Check
	timeout time.Duration // of each check: CheckTimeout, shorter in tests

	recheck chan struct{} // holds a token when Run should check now

	mu       sync.Mutex // so that no Check publishes after Drain
	draining bool
	health   []health
}

type health struct {
	checker  *grpchealth.StaticChecker
	services []string
}

// NewReadiness returns a readiness made of checks; with none, it is ready
// until it drains.
func NewReadiness(checks ...Check) *Readiness {
	return &Readiness{checks: checks, timeout: CheckTimeout, recheck: make(chan struct{}, 1)}
}

// Recheck makes [Readiness.Run] check now rather than at its next tick,
// without blocking: for a condition that just changed, such as a replica's
// health.
func (r *Readiness) Recheck() {
	select {
	case r.recheck <- struct{}{}:
	default:
	}
}

// Check runs every check at once, each bounded by [CheckTimeout], and returns
// nil if all pass, or an error naming each one that failed ("database: ...").
// It returns [ErrDraining] once [Readiness.Drain] has been called. It also
// publishes the result to the health checkers.
func (r *Readiness) Check(ctx context.Context) error {
	if r.isDraining() {
		return ErrDraining
	}
	err := r.run(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.draining {
		return ErrDraining // drained while checking: Drain is final
	}
	r.publish(err == nil)
	return err
}

func (r *Readiness) isDraining() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.draining
}

func (r *Readiness) run(ctx context.Context) error {
	errs := make([]error, len(r.checks))
	var wg sync.WaitGroup
	for i, c := range r.checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, r.timeout)
			defer cancel()
			if err := c.Func(ctx); err != nil {
				errs[i] = fmt.Errorf("%s: %w", c.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Drain makes r not ready from now on, and every health checker's services,
// the whole server ("") included, NOT_SERVING: a server about to shut down
// tells balancers and probes to stop sending it calls. Register it with
// [http.Server.RegisterOnShutdown].
func (r *Readiness) Drain() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.draining = true
	for _, h := range r.health {
		h.checker.SetStatus("", grpchealth.StatusNotServing)
		for _, s := range h.services {
			h.checker.SetStatus(s, grpchealth.StatusNotServing)
		}
	}
}

// HealthChecker returns a gRPC health checker (for [grpchealth.NewHandler])
// whose named services are SERVING while r is ready and NOT_SERVING
// otherwise, as of the last [Readiness.Check]; they start NOT_SERVING,
// until one passes. The server as a whole (service "") stays SERVING until
// [Readiness.Drain]: the deployments' liveness probes ask for "", and a
// server whose database is away should be kept out of traffic, not
// restarted.
func (r *Readiness) HealthChecker(services ...string) *grpchealth.StaticChecker {
	checker := grpchealth.NewStaticChecker() // "" only, SERVING
	r.mu.Lock()
	defer r.mu.Unlock()
	h := health{checker: checker, services: services}
	r.health = append(r.health, h)
	for _, s := range services {
		checker.SetStatus(s, grpchealth.StatusNotServing)
	}
	if r.draining {
		checker.SetStatus("", grpchealth.StatusNotServing)
	}
	return checker
}

// publish sets every named service's status; r.mu is held.
func (r *Readiness) publish(ready bool) {
	status := grpchealth.StatusNotServing
	if ready {
		status = grpchealth.StatusServing
	}
	for _, h := range r.health {
		for _, s := range h.services {
			h.checker.SetStatus(s, status)
		}
	}
}

// Run checks readiness every interval, and when asked to by
// [Readiness.Recheck], until ctx is done; then it drains r. Statuses of the
// health checkers follow. It does not check at once: call
// [Readiness.Check] first, so that health is known from the first call.
func (r *Readiness) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Drain()
			return
		case <-t.C:
		case <-r.recheck:
		}
		r.Check(ctx)
	}
}
