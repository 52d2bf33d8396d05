package bench

import (
	"context"
	"io"
	"runtime"
	"testing"

	"github.com/connectshop/connectshop/internal/telemetry"
)

func goMaxProcs() int { return runtime.GOMAXPROCS(0) }

// newTelemetry returns the telemetry of a process run as production runs it
// without a collector (no OTEL_EXPORTER_OTLP_* variables): spans are made
// and dropped, metrics recorded, logs discarded.
func newTelemetry(b *testing.B) *telemetry.Telemetry {
	b.Helper()
	tel, err := telemetry.Setup(context.Background(), telemetry.Options{LogOutput: io.Discard, Getenv: func(string) string { return "" }})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tel.Shutdown(context.Background()) })
	return tel
}
