// Command loadgen places orders against a running shop, over the protocol you
// choose, and prints throughput and latency percentiles. It is bounded in
// time and in requests, and refuses addresses that are not on this machine.
//
// By default it is a closed loop: -concurrency clients, each placing its next
// order when the last is answered. With -rate it is an open loop: orders are
// due at a fixed rate and start on schedule whatever the shop does, at most
// -max-in-flight at once, and each latency runs from the order's scheduled
// start, so a slow shop is charged for the orders that waited behind it
// (see [load.FixedRate]). It also prints how many orders started late for
// want of a slot, and how many never started before the run ended.
//
// Customers change every -orders-per-session orders (each client's, or each
// batch of the schedule), so the shop's per-customer rate limit never
// throttles it: it measures the shop, not the limiter.
//
// -url may list several orders instances of one shop (sharing a database
// and a session key): customers are dealt out over them round-robin, each
// staying on one, and the output says what share of the orders each got.
//
//	go run ./cmd/loadgen -protocol grpc -concurrency 32 -duration 10s
//	go run ./cmd/loadgen -protocol grpc -rate 500 -duration 10s
//	go run ./cmd/loadgen -rate 1000 -url http://localhost:8080,http://localhost:9080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/load"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/connectshop/connectshop/orders"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "loadgen: %v\n", err)
		os.Exit(1)
	}
}

// protocols are the client setups loadgen can use.
var protocols = map[string]func() (*http.Client, []connect.ClientOption){
	"connect-json": func() (*http.Client, []connect.ClientOption) {
		return rpc.NewH2CClient(), []connect.ClientOption{connect.WithProtoJSON()}
	},
	"connect-proto": func() (*http.Client, []connect.ClientOption) { return rpc.NewH2CClient(), nil },
	"grpc": func() (*http.Client, []connect.ClientOption) {
		return rpc.NewH2CClient(), []connect.ClientOption{connect.WithGRPC()}
	},
	"grpcweb": func() (*http.Client, []connect.ClientOption) {
		return rpc.NewH2CClient(), []connect.ClientOption{connect.WithGRPCWeb()}
	},
	"connect-json-http1": func() (*http.Client, []connect.ClientOption) {
		return http1Client(), []connect.ClientOption{connect.WithProtoJSON()}
	},
}

func http1Client() *http.Client {
	t := &http.Transport{MaxIdleConnsPerHost: 256, Protocols: new(http.Protocols)}
	t.Protocols.SetHTTP1(true)
	return &http.Client{Transport: t}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("url", "http://localhost:8080", "orders base URL (loopback only), or a comma-separated list of orders instances of one shop: customers are dealt out over them round-robin")
	protocol := fs.String("protocol", "grpc", "connect-json, connect-proto, grpc, grpcweb or connect-json-http1")
	concurrency := fs.Int("concurrency", 32, "orders in flight, without -rate")
	rate := fs.Float64("rate", 0, "orders per second on a fixed schedule (open loop), at most 100000; 0: a closed loop of -concurrency clients")
	maxInFlight := fs.Int("max-in-flight", load.DefaultMaxInFlight, "with -rate: calls in flight at most; an order due beyond it starts late, or not at all if the run ends first")
	duration := fs.Duration("duration", 10*time.Second, "how long to run (at most 5m)")
	maxOrders := fs.Int("max-orders", 1_000_000, "stop after this many orders")
	perSession := fs.Int("orders-per-session", orders.DefaultOrderBurst,
		"orders each client (or each batch of the -rate schedule) places as one customer before it starts a new session; at most the shop's -order-burst, so that no customer is rate limited")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	newClient, ok := protocols[*protocol]
	if !ok {
		return fmt.Errorf("unknown -protocol %q", *protocol)
	}
	if *concurrency < 1 || *concurrency > 1024 || *duration <= 0 || *duration > 5*time.Minute || *maxOrders < 1 || *maxOrders > 1_000_000 || *perSession < 1 {
		return errors.New("want 1 <= -concurrency <= 1024, 0 < -duration <= 5m, 1 <= -max-orders <= 1000000, -orders-per-session >= 1")
	}
	if !(*rate >= 0 && *rate <= 100_000) || *maxInFlight < 1 || *maxInFlight > 1024 {
		return errors.New("want 0 <= -rate <= 100000 and 1 <= -max-in-flight <= 1024")
	}
	if *rate > 0 && set["concurrency"] {
		return errors.New("-concurrency is for the closed loop; with -rate, bound the calls in flight with -max-in-flight")
	}
	if *rate == 0 && set["max-in-flight"] {
		return errors.New("-max-in-flight needs -rate; the closed loop has -concurrency calls in flight")
	}
	targets, err := parseTargets(*target)
	if err != nil {
		return err
	}
	httpClient, opts := newClient()
	clients := make([]ordersv1connect.OrderServiceClient, len(targets))
	for i, t := range targets {
		clients[i] = ordersv1connect.NewOrderServiceClient(httpClient, t, opts...)
	}

	var res *load.Result
	if *rate > 0 {
		res = load.FixedRate{Rate: *rate, Orders: *maxOrders, Duration: *duration, MaxInFlight: *maxInFlight, OrdersPerSession: *perSession}.Run(ctx, clients...)
		fmt.Fprintf(stdout, "protocol %s, rate %g/s: %d orders in %v, %.0f orders/s achieved, %s, %d errors\n",
			*protocol, *rate, res.Orders(), res.Elapsed.Round(time.Millisecond), res.Throughput(), percentiles(res), len(res.Errors))
		fmt.Fprintf(stdout, "  open loop, latency from each order's scheduled start: %d scheduled, %d started late (max in flight %d), %d never started, max start lag %v\n",
			res.Scheduled, res.Delayed, *maxInFlight, res.Unstarted, res.MaxStartLag.Round(10*time.Microsecond))
	} else {
		res = load.Load{Orders: *maxOrders, Duration: *duration, Concurrency: *concurrency, OrdersPerSession: *perSession}.Run(ctx, clients...)
		fmt.Fprintf(stdout, "protocol %s, concurrency %d: %d orders in %v, %.0f orders/s, %s, %d errors\n",
			*protocol, *concurrency, res.Orders(), res.Elapsed.Round(time.Millisecond), res.Throughput(), percentiles(res), len(res.Errors))
	}
	replicas := make([]string, 0, len(res.PerReplica))
	for name := range res.PerReplica {
		replicas = append(replicas, name)
	}
	slices.Sort(replicas)
	for _, name := range replicas {
		fmt.Fprintf(stdout, "  %s: %.1f%%\n", name, 100*res.Share(name))
	}
	if len(targets) > 1 {
		for i, t := range targets {
			share := 0.0
			if res.Orders() > 0 {
				share = float64(res.PerClient[i]) / float64(res.Orders())
			}
			fmt.Fprintf(stdout, "  orders at %s: %.1f%%\n", t, 100*share)
		}
	}
	if len(res.Errors) > 0 {
		return fmt.Errorf("%d orders failed; first: %w", len(res.Errors), res.Errors[0])
	}
	return nil
}

// percentiles formats res's p50, p90, p99 and p99.9 latencies.
func percentiles(res *load.Result) string {
	p := func(q float64) time.Duration { return res.Percentile(q).Round(10 * time.Microsecond) }
	return fmt.Sprintf("p50 %v, p90 %v, p99 %v, p999 %v", p(50), p(90), p(99), p(99.9))
}

// parseTargets splits -url, a comma-separated list of orders base URLs, and
// checks that each is on this machine. An empty entry or a URL listed twice
// is refused: a list is instances of one shop, each given an equal share.
func parseTargets(list string) ([]string, error) {
	var targets []string
	for t := range strings.SplitSeq(list, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			return nil, fmt.Errorf("-url %q: an empty entry", list)
		}
		if slices.Contains(targets, t) {
			return nil, fmt.Errorf("-url %q: %s listed twice", list, t)
		}
		if err := requireLoopback(t); err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// requireLoopback refuses to send load anywhere but this machine.
func requireLoopback(target string) error {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" {
		return fmt.Errorf("-url %q: want http://host:port", target)
	}
	addrs, err := net.LookupIP(u.Hostname())
	if err != nil {
		return fmt.Errorf("-url %q: %w", target, err)
	}
	for _, ip := range addrs {
		if !ip.IsLoopback() {
			return fmt.Errorf("-url %q resolves to %s: loadgen only targets loopback", target, ip)
		}
	}
	return nil
}
