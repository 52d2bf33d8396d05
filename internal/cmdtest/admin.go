package cmdtest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Get fetches url, within 5 s, and returns its status and body.
func Get(t testing.TB, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// WaitFor polls cond every 20 ms until it holds, failing the test after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
	}
}

// Metrics are the metric families of a Prometheus text exposition, by name.
type Metrics map[string]*dto.MetricFamily

// Scrape fetches and parses the metrics that an admin listener serves at
// url (its /metrics).
func Scrape(t testing.TB, url string) Metrics {
	t.Helper()
	code, body := Get(t, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse %s: %v\n%s", url, err, body)
	}
	return fams
}

// Series returns the series of family name whose labels include labels.
func (m Metrics) Series(name string, labels map[string]string) []*dto.Metric {
	var found []*dto.Metric
	for _, s := range m[name].GetMetric() {
		n := 0
		for _, lp := range s.GetLabel() {
			if want, ok := labels[lp.GetName()]; ok && want == lp.GetValue() {
				n++
			}
		}
		if n == len(labels) {
			found = append(found, s)
		}
	}
	return found
}

// Total sums the series of family name whose labels include labels: the
// values of counters and gauges, the counts of histograms.
func (m Metrics) Total(name string, labels map[string]string) float64 {
	var sum float64
	for _, s := range m.Series(name, labels) {
		switch {
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Histogram != nil:
			sum += float64(s.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// Want is a series expected of a scrape: the sum of the series of Name with
// Labels (see [Metrics.Total]) is at least Min.
type Want struct {
	Name   string
	Labels map[string]string
	Min    float64
}

// AtLeast wants the series of name with the labels of labelPairs (name,
// value, name, value...) to add up to at least min.
func AtLeast(min float64, name string, labelPairs ...string) Want {
	labels := make(map[string]string)
	for i := 0; i+1 < len(labelPairs); i += 2 {
		labels[labelPairs[i]] = labelPairs[i+1]
	}
	return Want{Name: name, Labels: labels, Min: min}
}

// Check reports every series of wants that m lacks, and every label of m
// that would make series without bound: a value holding one of the
// shop's id prefixes (ord_, pay_, cus_) or one of ids (the ids of orders
// placed, their payments, customers and traces). The RPC histograms must
// have exactly the labels code, procedure, protocol and server.
func (m Metrics) Check(t testing.TB, wants []Want, ids ...string) {
	t.Helper()
	for _, w := range wants {
		if got := m.Total(w.Name, w.Labels); got < w.Min {
			t.Errorf("%s%v: %v, want at least %v", w.Name, w.Labels, got, w.Min)
		}
	}
	for _, name := range []string{"rpc_server_duration_seconds", "rpc_client_duration_seconds"} {
		for _, s := range m[name].GetMetric() {
			var names []string
			for _, lp := range s.GetLabel() {
				names = append(names, lp.GetName())
			}
			if got := strings.Join(names, ","); got != "code,procedure,protocol,server" {
				t.Errorf("%s has labels %s, want code,procedure,protocol,server", name, got)
			}
		}
	}
	unbounded := append([]string{"ord_", "pay_", "cus_"}, ids...)
	for name, fam := range m {
		for _, s := range fam.GetMetric() {
			for _, lp := range s.GetLabel() {
				for _, bad := range unbounded {
					if bad != "" && strings.Contains(lp.GetValue(), bad) {
						t.Errorf("%s{%s=%q}: an unbounded label value (%s)", name, lp.GetName(), lp.GetValue(), bad)
					}
				}
			}
		}
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes"} {
		if m[name] == nil {
			t.Errorf("no %s: the Go and process collectors are missing", name)
		}
	}
}

// CheckAdmin checks the endpoints of the admin listener at base
// (http://host:port) other than /metrics: /healthz and /debug/pprof/ answer
// 200, and /readyz does within 5 s.
func CheckAdmin(t testing.TB, base string) {
	t.Helper()
	WaitFor(t, 5*time.Second, "/readyz never 200", func() bool {
		code, _ := Get(t, base+"/readyz")
		return code == http.StatusOK
	})
	for _, path := range []string{"/healthz", "/debug/pprof/"} {
		if code, body := Get(t, base+path); code != http.StatusOK {
			t.Errorf("GET %s: %d %.200s", path, code, body)
		}
	}
}
