// Command lbproof shows the HTTP/2 load-balancing trap and its fixes on this
// machine: three payments replicas, and the same orders load sent through
//
//   - one replica directly (the baseline),
//   - HAProxy in TCP mode (L4): the one HTTP/2 connection pins every call to
//     one replica,
//   - HAProxy in HTTP mode with h2c on both sides (L7 proxy): spread, plus a hop,
//   - orders balancing per request itself (client-side L7): spread, no hop.
//
// It prints each replica's share of the orders and the latency and
// throughput of each setup as a Markdown table. HAProxy comes from Debian's
// haproxy package; without it those rows are skipped.
//
//	go run ./cmd/lbproof -orders 3000 -concurrency 16
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/connectshop/connectshop/internal/lbproof"
	"github.com/connectshop/connectshop/internal/load"
	"github.com/connectshop/connectshop/payments"
)

func main() {
	if err := run(context.Background(), os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "lbproof: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("orders", 2000, "orders per setup (and per pass)")
	concurrency := fs.Int("concurrency", 16, "concurrent clients")
	passes := fs.Int("passes", 2, "interleaved passes over all setups; figures are summed over passes")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *n < 1 || *concurrency < 1 || *passes < 1 {
		return errors.New("-orders, -concurrency and -passes must be at least 1")
	}
	dir, err := os.MkdirTemp("", "lbproof")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	rs, err := lbproof.StartReplicas(ctx, dir, []string{"127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"}, payments.Faults{})
	if err != nil {
		return err
	}
	defer rs.Close()

	type setup struct {
		name, target string
		replicas     int // that orders connects to
	}
	setups := []setup{
		{"direct to one replica (no balancing)", "http://" + rs.List[0].Addr, 1},
	}
	for _, mode := range []lbproof.Mode{lbproof.TCP, lbproof.HTTP} {
		h, err := lbproof.StartHAProxy(ctx, dir, mode, rs.Addrs())
		if errors.Is(err, lbproof.ErrNoHAProxy) {
			fmt.Fprintf(stderr, "skipping HAProxy rows: %v\n", err)
			break
		}
		if err != nil {
			return err
		}
		defer h.Close()
		name := "HAProxy `mode tcp` (L4)"
		if mode == lbproof.HTTP {
			name = "HAProxy `mode http`, h2c (L7 proxy)"
		}
		setups = append(setups, setup{name, "http://" + h.Addr, 1})
	}
	setups = append(setups, setup{"orders balances per request (client-side L7)", rs.Targets(), len(rs.List)})

	// One orders instance per setup for the whole run: behind L4 its one
	// connection stays pinned to one replica across passes, as in production.
	clients := make([]*lbproof.Orders, len(setups))
	for i, s := range setups {
		o, err := lbproof.StartOrders(ctx, fmt.Sprintf("%s/orders-%d", dir, i), rs, s.target, nil)
		if err != nil {
			return err
		}
		defer o.Close()
		clients[i] = o
	}
	for i, s := range setups { // let the first health checks pass
		waitCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := clients[i].WaitForPayments(waitCtx, s.replicas)
		cancel()
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}

	totals := make([]*load.Result, len(setups))
	for pass := range *passes {
		for i, s := range setups {
			res := load.Load{Orders: *n, Concurrency: *concurrency}.Run(ctx, clients[i].Client())
			if len(res.Errors) > 0 {
				return fmt.Errorf("%s: %d orders failed; first: %w", s.name, len(res.Errors), res.Errors[0])
			}
			fmt.Fprintf(stderr, "pass %d: %s: %d orders in %v\n", pass+1, s.name, res.Orders(), res.Elapsed.Round(time.Millisecond))
			totals[i] = load.Merge(totals[i], res)
		}
	}

	fmt.Fprintf(stdout, "| setup | %s | orders/s | vs direct | p50 | p99 |\n", strings.Join(names(rs), " | "))
	fmt.Fprintf(stdout, "|---|%s---:|---:|---:|---:|\n", strings.Repeat("---:|", len(rs.List)))
	base := totals[0].Throughput()
	for i, s := range setups {
		r := totals[i]
		fmt.Fprintf(stdout, "| %s |", s.name)
		for _, rep := range rs.List {
			fmt.Fprintf(stdout, " %.0f%% |", 100*r.Share(rep.Name))
		}
		fmt.Fprintf(stdout, " %.0f | %.2f | %v | %v |\n", r.Throughput(), r.Throughput()/base,
			r.Percentile(50).Round(10*time.Microsecond), r.Percentile(99).Round(10*time.Microsecond))
	}
	return nil
}

func names(rs *lbproof.Replicas) []string {
	var out []string
	for _, r := range rs.List {
		out = append(out, r.Name)
	}
	return out
}
