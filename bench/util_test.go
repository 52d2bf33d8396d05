package bench

import (
	"context"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

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

// measureCPU resets b's timer and returns a function that reports, as
// cpu-µs/op, the CPU time (user and system) the whole process spent per op
// since: client, servers and their background work together. Unlike ns/op
// it hardly moves when a noisy neighbour takes the machine's cores for a
// while, so it is the figure to compare between runs. It also reports the
// read and write syscalls per op (reads/op, writes/op, /proc/self/io): how
// well an HTTP/2 stack batches frames.
func measureCPU(b *testing.B) (report func()) {
	b.ResetTimer()
	start := processCPU(b)
	r0, w0 := syscalls()
	return func() {
		b.ReportMetric(float64(processCPU(b)-start)/float64(time.Microsecond)/float64(b.N), "cpu-µs/op")
		r1, w1 := syscalls()
		b.ReportMetric(float64(r1-r0)/float64(b.N), "reads/op")
		b.ReportMetric(float64(w1-w0)/float64(b.N), "writes/op")
	}
}

func processCPU(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

func syscalls() (r, w int) {
	data, _ := os.ReadFile("/proc/self/io")
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.Atoi(v)
		switch k {
		case "syscr":
			r = n
		case "syscw":
			w = n
		}
	}
	return r, w
}
