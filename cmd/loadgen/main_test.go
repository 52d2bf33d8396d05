package main

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/connectshop/connectshop/internal/shop/shoptest"
)

// Both modes run against the real shop and print their percentiles, p999
// included; -rate prints what became of its schedule.
func TestRunPrintsPercentiles(t *testing.T) {
	t.Parallel()
	url := shoptest.Start(t, slog.New(slog.DiscardHandler))
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{
			[]string{"-concurrency", "2", "-max-orders", "20"},
			[]string{`^protocol grpc, concurrency 2: 20 orders in \S+, \d+ orders/s, p50 \S+, p90 \S+, p99 \S+, p999 \S+, 0 errors$`},
		},
		{
			[]string{"-rate", "40", "-duration", "500ms"},
			[]string{
				`^protocol grpc, rate 40/s: 20 orders in \S+, \d+ orders/s achieved, p50 \S+, p90 \S+, p99 \S+, p999 \S+, 0 errors$`,
				`^  open loop, latency from each order's scheduled start: 20 scheduled, 0 started late \(max in flight 1024\), 0 never started, max start lag \S+$`,
			},
		},
	} {
		var stdout, stderr bytes.Buffer
		args := append([]string{"loadgen", "-url", url}, tc.args...)
		if err := run(context.Background(), args, &stdout, &stderr); err != nil {
			t.Fatalf("%v: %v\n%s", tc.args, err, stderr.String())
		}
		lines := strings.Split(stdout.String(), "\n")
		for i, want := range tc.want {
			if i >= len(lines) || !regexp.MustCompile(want).MatchString(lines[i]) {
				t.Errorf("%v: output\n%s\nwant line %d to match %s", tc.args, stdout.String(), i+1, want)
			}
		}
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"-rate", "100", "-concurrency", "8"},
		{"-max-in-flight", "8"},
		{"-rate", "-1"},
		{"-rate", "NaN"},
		{"-rate", "100", "-max-in-flight", "0"},
		{"-rate", "100", "-max-in-flight", "2000"},
		{"-url", "http://192.0.2.1:8080", "-rate", "100"},
		{"-url", "http://127.0.0.1:8080,http://192.0.2.1:8080", "-rate", "100"},
		{"-url", "", "-rate", "100"},
	} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), append([]string{"loadgen"}, args...), &stdout, &stderr); err == nil {
			t.Errorf("%v: no error; output %s", args, stdout.String())
		}
	}
}

// -url takes a list of orders instances; each must be on this machine, and
// each is listed once.
func TestParseTargets(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string // nil: an error
	}{
		{"http://localhost:8080", []string{"http://localhost:8080"}},
		{"http://127.0.0.1:8080,http://127.0.0.1:9080", []string{"http://127.0.0.1:8080", "http://127.0.0.1:9080"}},
		{" http://127.0.0.1:8080 , http://[::1]:9080 ", []string{"http://127.0.0.1:8080", "http://[::1]:9080"}},
		{"", nil},
		{"http://127.0.0.1:8080,", nil},
		{"http://127.0.0.1:8080,,http://127.0.0.1:9080", nil},
		{"http://127.0.0.1:8080,http://127.0.0.1:8080", nil},
		{"http://127.0.0.1:8080,http://192.0.2.1:8080", nil},
		{"http://127.0.0.1:8080,https://127.0.0.1:9080", nil},
	} {
		got, err := parseTargets(tc.in)
		if tc.want == nil {
			if err == nil {
				t.Errorf("parseTargets(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("parseTargets(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// With two orders instances in -url, each gets half the customers, and the
// output says what share of the orders each placed. (Two whole shops here,
// each with its own session key: a customer stays on the instance that made
// its session, so that works too.)
func TestRunSpreadsOverInstances(t *testing.T) {
	t.Parallel()
	a := shoptest.Start(t, slog.New(slog.DiscardHandler))
	b := shoptest.Start(t, slog.New(slog.DiscardHandler))
	var stdout, stderr bytes.Buffer
	args := []string{"loadgen", "-url", a + "," + b, "-rate", "80", "-duration", "500ms", "-orders-per-session", "5"}
	if err := run(context.Background(), args, &stdout, &stderr); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr.String())
	}
	for _, want := range []string{
		`(?m)^protocol grpc, rate 80/s: 40 orders in .*, 0 errors$`,
		`(?m)^  orders at ` + regexp.QuoteMeta(a) + `: 50\.0%$`,
		`(?m)^  orders at ` + regexp.QuoteMeta(b) + `: 50\.0%$`,
	} {
		if !regexp.MustCompile(want).MatchString(stdout.String()) {
			t.Errorf("output\n%s\nwant a line matching %s", stdout.String(), want)
		}
	}
}
