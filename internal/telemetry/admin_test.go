package telemetry

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// get requests path from h and returns the status, content type and body.
func get(t *testing.T, h http.Handler, path string) (int, string, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Header().Get("Content-Type"), string(body)
}

func TestAdminHealthAndReadiness(t *testing.T) {
	db := new(switchable)
	ready := NewReadiness(Check{"database", db.check})
	admin := NewAdmin(AdminConfig{Gatherer: prometheus.NewRegistry(), Ready: ready})

	if code, _, body := get(t, admin, "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _, body := get(t, admin, "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Errorf("/readyz, ready: %d %q", code, body)
	}
	db.fail(errors.New("no such host"))
	if code, _, body := get(t, admin, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "database: no such host") {
		t.Errorf("/readyz, database down: %d %q; want 503 naming the check", code, body)
	}
	if code, _, _ := get(t, admin, "/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while not ready: %d; the process still lives", code)
	}
	db.pass()
	ready.Drain()
	if code, _, body := get(t, admin, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, ErrDraining.Error()) {
		t.Errorf("/readyz, draining: %d %q", code, body)
	}

	always := NewAdmin(AdminConfig{Gatherer: prometheus.NewRegistry()})
	if code, _, _ := get(t, always, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz without checks: %d, want 200", code)
	}
}

func TestAdminMetrics(t *testing.T) {
	reg := NewRegistry()
	m, err := NewRPCMetrics(prometheus.WrapRegistererWith(prometheus.Labels{"server": "orders"}, reg))
	if err != nil {
		t.Fatal(err)
	}
	m.server.WithLabelValues("/orders.v1.OrderService/CreateOrder", "connect", "ok").Observe(0.003)
	code, contentType, body := get(t, NewAdmin(AdminConfig{Gatherer: reg}), "/metrics")
	if code != http.StatusOK || !strings.HasPrefix(contentType, "text/plain") {
		t.Fatalf("/metrics: %d %s, want 200 in the text format", code, contentType)
	}
	for _, want := range []string{
		`rpc_server_duration_seconds_bucket{code="ok",procedure="/orders.v1.OrderService/CreateOrder",protocol="connect",server="orders",le="0.005"} 1`,
		`rpc_server_duration_seconds_count{code="ok",procedure="/orders.v1.OrderService/CreateOrder",protocol="connect",server="orders"} 1`,
		"go_goroutines ",
		"process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestAdminPprof(t *testing.T) {
	admin := NewAdmin(AdminConfig{Gatherer: prometheus.NewRegistry()})
	for path, want := range map[string]string{
		"/debug/pprof/":                   "goroutine",
		"/debug/pprof/goroutine?debug=1":  "goroutine profile: total",
		"/debug/pprof/heap?debug=1":       "heap profile:",
		"/debug/pprof/cmdline":            "telemetry.test",
		"/debug/pprof/profile?seconds=1":  "", // binary; 200 is enough
		"/debug/pprof/trace?seconds=0.01": "",
	} {
		code, _, body := get(t, admin, path)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s: %d, body without %q", path, code, want)
		}
	}
	if code, _, _ := get(t, admin, "/debug/vars"); code != http.StatusNotFound {
		t.Errorf("/debug/vars: %d, want 404: only what is listed is served", code)
	}
}
