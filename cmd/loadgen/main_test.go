package main

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
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
	} {
		var stdout, stderr bytes.Buffer
		if err := run(context.Background(), append([]string{"loadgen"}, args...), &stdout, &stderr); err == nil {
			t.Errorf("%v: no error; output %s", args, stdout.String())
		}
	}
}
