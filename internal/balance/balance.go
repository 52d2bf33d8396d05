// Package balance is the client side of per-request (L7) load balancing over
// the replicas of a service that speaks gRPC over HTTP/2 cleartext.
//
// HTTP/2 multiplexes every call on one long-lived connection, so behind a
// connection-level (L4) balancer one client sends everything to one replica.
// A [Client] instead keeps a connection to every replica it resolves and
// picks one per request (round robin over the healthy ones). It finds
// replicas from a static list or from DNS, re-resolved every few seconds (a
// Kubernetes headless Service answers with every ready pod); it checks each
// with the gRPC health protocol; and it ejects a replica whose calls fail at
// the transport, before the next health check would notice.
//
// It is built on github.com/bufbuild/httplb, which supplies the resolver,
// connection pool and pickers; this package adds the gRPC health prober and
// the passive ejection that httplb leaves to its users.
package balance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bufbuild/httplb"
	"github.com/bufbuild/httplb/health"
	"github.com/bufbuild/httplb/resolver"
)

// Defaults; see the options to change them.
const (
	DefaultResolveInterval = 5 * time.Second
	DefaultHealthInterval  = 2 * time.Second
	// A replica whose calls fail this many times in a row at the transport
	// (refused, reset, or answered UNAVAILABLE) is ejected for ejectFor.
	ejectAfterFailures = 2
	ejectFor           = 5 * time.Second
)

// Client is an HTTP client that spreads requests over replicas. Use its
// embedded [http.Client] with the URL from [Client.BaseURL].
type Client struct {
	*httplb.Client
	baseURL string
	ejector *ejector
	cancel  context.CancelFunc
	warm    sync.WaitGroup
}

// BaseURL is the URL to give API clients: its host names the replica group,
// not one replica.
func (c *Client) BaseURL() string { return c.baseURL }

// Option configures a [Client].
type Option interface{ apply(*options) }

type options struct {
	resolver        resolver.Resolver
	resolveInterval time.Duration
	healthInterval  time.Duration
	service         string
	dial            func(ctx context.Context, network, address string) (net.Conn, error)
	onEject         func(addr string)
	onChange        func()
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithOnEject calls fn, which must not block, with the address of each
// replica ejected for failing at the transport (for metrics).
func WithOnEject(fn func(addr string)) Option {
	return optionFunc(func(o *options) { o.onEject = fn })
}

// WithOnHealthChange calls fn, which must not block, whenever the health of
// a replica may have changed: see [Client.Health].
func WithOnHealthChange(fn func()) Option {
	return optionFunc(func(o *options) { o.onChange = fn })
}

// WithResolver replaces the resolver the target implies; tests use it to
// change the set of replicas at will.
func WithResolver(r resolver.Resolver) Option {
	return optionFunc(func(o *options) { o.resolver = r })
}

// WithResolveInterval sets how often a dns:/// target is resolved again;
// default [DefaultResolveInterval].
func WithResolveInterval(d time.Duration) Option {
	return optionFunc(func(o *options) { o.resolveInterval = d })
}

// WithDialer replaces the TCP dialer (3 s connect timeout); tests use it to
// reach replicas served in memory.
func WithDialer(dial func(ctx context.Context, network, address string) (net.Conn, error)) Option {
	return optionFunc(func(o *options) { o.dial = dial })
}

// WithHealthCheck sets the service name sent in gRPC health checks (empty
// asks about the server as a whole) and how often each replica is checked;
// default: the whole server, every [DefaultHealthInterval].
func WithHealthCheck(service string, interval time.Duration) Option {
	return optionFunc(func(o *options) { o.service, o.healthInterval = service, interval })
}

// NewClient returns a client for target, which is either a comma-separated
// list of "http://host:port" replicas or "dns:///name:port" to use every
// address name resolves to, following changes.
func NewClient(target string, opts ...Option) (*Client, error) {
	dialer := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
	o := options{resolveInterval: DefaultResolveInterval, healthInterval: DefaultHealthInterval, dial: dialer.DialContext}
	for _, opt := range opts {
		opt.apply(&o)
	}
	group, res, err := parseTarget(target, o.resolveInterval)
	if err != nil {
		return nil, err
	}
	if o.resolver != nil {
		res = o.resolver
	}
	ejector := newEjector()
	ejector.onEject, ejector.onChange = o.onEject, o.onChange
	ctx, cancel := context.WithCancel(context.Background())
	lb := httplb.NewClient(
		httplb.WithRootContext(ctx),
		// One target only, kept connected however long it idles.
		httplb.WithAllowBackendTarget("h2c", group),
		httplb.WithResolver(res),
		httplb.WithDialer(o.dial),
		httplb.WithTransport("h2c", ejector.transport()),
		httplb.WithHealthChecks(ejector.checker(health.NewPollingChecker(health.PollingCheckerConfig{
			PollingInterval:    o.healthInterval,
			Jitter:             0.2,
			Timeout:            time.Second,
			UnhealthyThreshold: 1,
			HealthyThreshold:   1,
		}, newGRPCHealthProber(o.service)))),
	)
	c := &Client{Client: lb, baseURL: "h2c://" + group, ejector: ejector, cancel: cancel}
	// httplb resolves and connects on a target's first request. Send one now
	// (its answer does not matter), so that replicas are connected and health
	// checked before the first real call, and readiness can be known.
	c.warm.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+"/", nil)
		if err != nil {
			return
		}
		if resp, err := lb.Do(req); err == nil {
			resp.Body.Close()
		}
	})
	return c, nil
}

// Close stops the health checks and closes every connection.
func (c *Client) Close() error {
	c.cancel()
	c.warm.Wait()
	return c.Client.Close()
}

// States of a replica, as [Client.Health] reports them.
const (
	Healthy   = "healthy"   // its last health check passed
	Unhealthy = "unhealthy" // its last health check failed
	Unknown   = "unknown"   // not checked yet
	Ejected   = "ejected"   // its calls failed at the transport; out for a while
)

// Health returns the state of every replica the client is connected to, by
// host:port.
func (c *Client) Health() map[string]string { return c.ejector.health() }

// Healthy returns how many replicas are healthy.
func (c *Client) Healthy() int {
	n := 0
	for _, state := range c.Health() {
		if state == Healthy {
			n++
		}
	}
	return n
}

// parseTarget returns the group name for URLs and the resolver for target.
func parseTarget(target string, interval time.Duration) (string, resolver.Resolver, error) {
	if rest, ok := strings.CutPrefix(target, "dns:///"); ok {
		host, port, err := net.SplitHostPort(rest)
		if err != nil || host == "" || port == "" {
			return "", nil, fmt.Errorf("target %q: want dns:///name:port", target)
		}
		return rest, resolver.NewDNSResolver(net.DefaultResolver, resolver.PreferIPv4, interval), nil
	}
	var hostPorts []string
	for _, t := range strings.Split(target, ",") {
		if t = strings.TrimSpace(t); t == "" {
			continue
		}
		u, err := url.Parse(t)
		if err != nil || u.Scheme != "http" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
			return "", nil, fmt.Errorf("target %q: want http://host:port", t)
		}
		hostPorts = append(hostPorts, u.Host)
	}
	if len(hostPorts) == 0 {
		return "", nil, errors.New("no target: want http://host:port[,...] or dns:///name:port")
	}
	// The group name is only a label: the static resolver ignores it.
	return "replicas", resolver.NewPollingResolver(staticAddresses(hostPorts), time.Hour), nil
}

// staticAddresses resolves any name to a fixed list of addresses.
type staticAddresses []string

func (s staticAddresses) ResolveOnce(context.Context, string, string) ([]resolver.Address, time.Duration, error) {
	addrs := make([]resolver.Address, len(s))
	for i, hp := range s {
		addrs[i] = resolver.Address{HostPort: hp}
	}
	return addrs, 0, nil
}
