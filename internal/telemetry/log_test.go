package telemetry

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// decodeLines parses JSON log output, one object a line.
func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(out) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		lines = append(lines, m)
	}
	return lines
}

func TestLogLinesInASpanCarryItsIDs(t *testing.T) {
	var buf bytes.Buffer
	logger, err := Logger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	defer span.End()
	sc := span.SpanContext()

	logger.InfoContext(ctx, "in the span", "k", "v")
	logger.With("service", "orders").WarnContext(ctx, "with attrs")
	logger.Info("no context")
	logger.InfoContext(context.Background(), "context without a span")

	lines := decodeLines(t, buf.String())
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4:\n%s", len(lines), buf.String())
	}
	for _, line := range lines[:2] {
		if line["trace_id"] != sc.TraceID().String() || line["span_id"] != sc.SpanID().String() {
			t.Errorf("line %v: want trace_id %s and span_id %s", line, sc.TraceID(), sc.SpanID())
		}
	}
	if lines[0]["k"] != "v" || lines[1]["service"] != "orders" {
		t.Errorf("the line's own attributes are lost: %v", lines[:2])
	}
	for _, line := range lines[2:] {
		if _, ok := line["trace_id"]; ok {
			t.Errorf("line %v has a trace_id without a span", line)
		}
	}
}

func TestLoggerLevelAndTextFormat(t *testing.T) {
	var buf bytes.Buffer
	logger, err := Logger(&buf, "WARN", "text")
	if err != nil {
		t.Fatal(err)
	}
	ctx, span := sdktrace.NewTracerProvider().Tracer("test").Start(context.Background(), "call")
	defer span.End()
	logger.InfoContext(ctx, "dropped")
	logger.WarnContext(ctx, "kept")
	out := buf.String()
	if strings.Contains(out, "dropped") || !strings.Contains(out, "msg=kept") {
		t.Errorf("at warn, want only the warning, got:\n%s", out)
	}
	if want := "trace_id=" + span.SpanContext().TraceID().String(); !strings.Contains(out, want) {
		t.Errorf("text line %q lacks %s", out, want)
	}
}

func TestLoggerRejectsUnknownLevelsAndFormats(t *testing.T) {
	for _, c := range []struct{ level, format string }{
		{"verbose", "text"},
		{"info+2", "text"}, // slog would take it; a flag should not
		{"info", "logfmt"},
	} {
		if _, err := Logger(&bytes.Buffer{}, c.level, c.format); err == nil {
			t.Errorf("Logger(%q, %q): no error", c.level, c.format)
		}
	}
	for _, level := range []string{"", "debug", "info", "warn", "error"} {
		if _, err := ParseLevel(level); err != nil {
			t.Errorf("ParseLevel(%q): %v", level, err)
		}
	}
}

func TestWithTraceContextWrapsOnce(t *testing.T) {
	h := WithTraceContext(slog.DiscardHandler)
	if WithTraceContext(h) != h {
		t.Error("wrapping a wrapped handler again would log the ids twice")
	}
}
