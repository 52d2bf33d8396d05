// Command cpubudget splits a CPU profile of the shop into the layers an
// order goes through and prints the CPU microseconds one order costs in
// each, as a Markdown table. scripts/cpu-budget takes the profile from the
// shop's admin listener under load and counts the orders placed meanwhile.
//
//	go run ./cpubudget -profile cpu.pb.gz -orders 12000
//
// Each sample goes to the layer of the frame nearest its leaf that belongs
// to one: a write syscall under HTTP/2 is HTTP/2's, an allocation under
// protobuf is protobuf's; but a sample with an fsync anywhere in its stack
// is the disk's, whoever asked for it. The syscall package itself belongs to
// no layer: its callers (the network poller, SQLite's C library) say whose a
// syscall is. Samples with no such frame (garbage collection, the
// scheduler) are the Go runtime's.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/google/pprof/profile"
)

// layers, tried in order on each frame from the leaf up: the first that
// matches a frame's function takes the sample.
var layers = []struct {
	name string
	re   *regexp.Regexp
}{
	{"SQLite (driver, database/sql, group commit)", regexp.MustCompile(`^(modernc\.org/|database/sql|github\.com/ncruces/|github\.com/mattn/go-sqlite3|github\.com/connectshop/connectshop/internal/sqlitedb|github\.com/connectshop/connectshop/(orders|payments)/sqlite)`)},
	{"PostgreSQL (pgx)", regexp.MustCompile(`^github\.com/jackc/`)},
	{"telemetry (OpenTelemetry, Prometheus, store spans)", regexp.MustCompile(`^(go\.opentelemetry\.io/|connectrpc\.com/otelconnect|github\.com/prometheus/|github\.com/connectshop/connectshop/internal/(telemetry|dbtrace))`)},
	{"balancing (httplb, health, ejection)", regexp.MustCompile(`^(github\.com/bufbuild/httplb|github\.com/connectshop/connectshop/internal/balance)`)},
	{"our interceptors and middleware (auth, limits, hops, logs, input checks)", regexp.MustCompile(`^(github\.com/connectshop/connectshop/internal/(rpc|auth)|github\.com/golang-jwt/|golang\.org/x/time/rate|log/slog)`)},
	{"handlers (orders, payments: validation, pricing, saga)", regexp.MustCompile(`^github\.com/connectshop/connectshop/(orders|payments)\.`)},
	{"protobuf and JSON", regexp.MustCompile(`^(google\.golang\.org/protobuf|encoding/json|github\.com/go-json-experiment)`)},
	{"connect (protocols, envelopes, compression)", regexp.MustCompile(`^(connectrpc\.com/connect|compress/|github\.com/klauspost/compress)`)},
	{"HTTP/1.1, HTTP/2, TCP", regexp.MustCompile(`^(net/http|golang\.org/x/net/http2|net\.|internal/poll|crypto/)`)},
}

// fsync is the layer of every sample under an fsync: the disk wait that
// makes a commit durable, with the kernel's work for it.
var fsync = struct {
	name string
	re   *regexp.Regexp
}{"fsync (durable commits)", regexp.MustCompile(`(?i)fsync|fdatasync`)}

const runtimeLayer = "Go runtime (GC, scheduler)"

func main() {
	path := flag.String("profile", "", "CPU profile (pprof format)")
	orders := flag.Int("orders", 0, "orders placed while it was taken")
	flag.Parse()
	if *path == "" || *orders <= 0 {
		log.Fatal("usage: cpubudget -profile FILE -orders N")
	}
	f, err := os.Open(*path)
	if err != nil {
		log.Fatal(err)
	}
	p, err := profile.Parse(f)
	if err != nil {
		log.Fatal(err)
	}
	idx := slices.IndexFunc(p.SampleType, func(t *profile.ValueType) bool { return t.Type == "cpu" })
	if idx < 0 {
		log.Fatal("not a CPU profile")
	}
	byLayer := map[string]time.Duration{}
	var total time.Duration
	for _, s := range p.Sample {
		d := time.Duration(s.Value[idx]) // nanoseconds
		total += d
		byLayer[layerOf(s)] += d
	}
	names := make([]string, 0, len(byLayer))
	for n := range byLayer {
		names = append(names, n)
	}
	slices.SortFunc(names, func(a, b string) int { return int(byLayer[b] - byLayer[a]) })
	perOrder := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) / float64(*orders) }
	fmt.Printf("| layer | CPU µs per order | share |\n|---|---:|---:|\n")
	for _, n := range names {
		fmt.Printf("| %s | %.0f | %.0f%% |\n", n, perOrder(byLayer[n]), 100*float64(byLayer[n])/float64(total))
	}
	fmt.Printf("| **all** (%d orders, %.1f s of CPU in %.0f s) | **%.0f** | 100%% |\n",
		*orders, total.Seconds(), time.Duration(p.DurationNanos).Seconds(), perOrder(total))
}

// layerOf returns the layer of the frame nearest the sample's leaf that
// belongs to one.
func layerOf(s *profile.Sample) string {
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function != nil && fsync.re.MatchString(line.Function.Name) {
				return fsync.name
			}
		}
	}
	for _, loc := range s.Location {
		// Inlined frames come first in Line: the innermost call.
		for _, line := range loc.Line {
			if line.Function == nil {
				continue
			}
			for _, l := range layers {
				if l.re.MatchString(line.Function.Name) {
					return l.name
				}
			}
		}
	}
	return runtimeLayer
}
