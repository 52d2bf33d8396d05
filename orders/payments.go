package orders

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"connectrpc.com/connect"
	"github.com/bufbuild/httplb/resolver"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/balance"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/internal/telemetry"
)

// Payments is what orders needs of the payments service. The client built
// from [PaymentsConfig] implements it.
type Payments interface {
	Charge(context.Context, *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error)
	Refund(context.Context, *connect.Request[paymentsv1.RefundRequest]) (*connect.Response[paymentsv1.RefundResponse], error)
}

// PaymentsConfig is how orders reaches payments: the whole policy of the
// client lives here. Only Target is required.
type PaymentsConfig struct {
	// Target names the replicas: "http://host:port,..." or "dns:///name:port"
	// for every address of name, re-resolved every ResolveInterval.
	Target string
	// Timeout bounds each call, retries included; default 5 s. A call that
	// runs out fails the order's RPC with UNAVAILABLE, never a hang.
	Timeout time.Duration
	// HealthInterval is how often each replica's gRPC health is checked;
	// default 2 s.
	HealthInterval time.Duration
	// ResolveInterval is how often a dns:/// target is resolved again;
	// default 5 s.
	ResolveInterval time.Duration
	// ServiceKey, if set, is the key with which orders proves itself to
	// payments: every call carries a short-lived service token signed with
	// it (see [auth.ServiceCredentials]).
	ServiceKey auth.Key
	// Resolver replaces the resolver the target implies (static list or
	// DNS), for other service discovery; tests use it to change the set of
	// replicas at will.
	Resolver resolver.Resolver
	// Dial replaces the TCP dialer; tests use it to reach servers in memory.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

const (
	defaultPaymentTimeout = 5 * time.Second
	// Six attempts back off for up to ~1.5 s in all: time enough for the
	// balancer to eject a replica that just died, well inside the timeout of
	// the call. An attempt that takes over 2 s is given up for another.
	paymentAttempts       = 6
	paymentAttemptTimeout = 2 * time.Second
	paymentBackoff        = 50 * time.Millisecond
)

func (c PaymentsConfig) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return defaultPaymentTimeout
}

// paymentsClient calls payments with binary gRPC over HTTP/2 cleartext,
// choosing a healthy replica per request (see internal/balance), with a
// deadline on every call and retries of the calls that are safe to repeat.
type paymentsClient struct {
	paymentsv1connect.PaymentServiceClient
	lb *balance.Client
}

// newPaymentsClient returns the one payments client of an orders service,
// built from cfg. Close it when done.
//
// Its calls go through observe (telemetry) after the retries, so that each
// attempt is traced and measured; retries and ejections are counted in m;
// onHealthChange is called when a replica's health may have changed.
func newPaymentsClient(cfg PaymentsConfig, observe []connect.Interceptor, m *metrics, onHealthChange func()) (*paymentsClient, error) {
	if cfg.Target == "" {
		return nil, errors.New("no payments target")
	}
	healthInterval := balance.DefaultHealthInterval
	if cfg.HealthInterval > 0 {
		healthInterval = cfg.HealthInterval
	}
	opts := []balance.Option{
		balance.WithHealthCheck(paymentsv1connect.PaymentServiceName, healthInterval),
		balance.WithOnEject(func(string) { m.ejections.Inc() }),
		balance.WithOnHealthChange(onHealthChange),
	}
	if cfg.ResolveInterval > 0 {
		opts = append(opts, balance.WithResolveInterval(cfg.ResolveInterval))
	}
	if cfg.Resolver != nil {
		opts = append(opts, balance.WithResolver(cfg.Resolver))
	}
	if cfg.Dial != nil {
		opts = append(opts, balance.WithDialer(cfg.Dial))
	}
	lb, err := balance.NewClient(cfg.Target, opts...)
	if err != nil {
		return nil, fmt.Errorf("payments %w", err)
	}
	interceptors := []connect.Interceptor{
		rpc.TimeoutInterceptor(cfg.timeout()),
		// Charge and Refund are IDEMPOTENT in payments.proto (keyed by the
		// order id and the payment id), so a call that a dead or restarting
		// replica could not answer is sent again, to whichever replica the
		// balancer picks next.
		rpc.RetryInterceptor(paymentAttempts, paymentAttemptTimeout, paymentBackoff, func(connect.Spec, error) { m.retries.Inc() }),
	}
	interceptors = append(interceptors, observe...)
	if len(cfg.ServiceKey) > 0 {
		interceptors = append(interceptors, auth.ServiceCredentials(cfg.ServiceKey, auth.OrdersCaller, auth.PaymentsAudience))
	}
	client := paymentsv1connect.NewPaymentServiceClient(lb.Client.Client, lb.BaseURL(),
		connect.WithGRPC(),
		connect.WithReadMaxBytes(rpc.MaxMessageBytes), // a payment is tiny; refuse a runaway answer
		connect.WithInterceptors(interceptors...),
	)
	return &paymentsClient{PaymentServiceClient: client, lb: lb}, nil
}

// NewPaymentsClient returns a payments client with the whole policy of cfg,
// as an orders service builds its own in [New]: balanced over the healthy
// replicas, retried, with a deadline on every call, traced and measured by
// tel (nil: not). Its metrics are not registered anywhere. It is for
// programs that call payments as orders does (bench/ measures the hop with
// it); close it when done.
func NewPaymentsClient(cfg PaymentsConfig, tel *telemetry.Scope) (Payments, io.Closer, error) {
	c, err := newPaymentsClient(cfg, tel.Interceptors(), newMetrics(), func() {})
	if err != nil {
		return nil, nil, err
	}
	return c, c, nil
}

// healthyReplicas returns how many replicas currently pass their health
// checks.
func (c *paymentsClient) healthyReplicas() int { return c.lb.Healthy() }

// Close closes the connections to every replica.
func (c *paymentsClient) Close() error { return c.lb.Close() }
