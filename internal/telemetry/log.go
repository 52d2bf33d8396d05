package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"
)

// Log levels and formats, as the -log-level and -log-format flags take them.
const (
	LevelNames  = "debug|info|warn|error"
	FormatNames = "text|json"
)

// Logger returns a logger that writes to w at level and above, in format
// ("text" or "json"; "" is text, and "" level is info), and adds trace_id and
// span_id to every line written with a context that holds a span: a line
// logged while serving or making a traced call names the trace it belongs to.
func Logger(w io.Writer, level, format string) (*slog.Logger, error) {
	lvl, err := ParseLevel(level)
	if err != nil {
		return nil, err
	}
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch strings.ToLower(format) {
	case "", "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, fmt.Errorf("log format %q: want %s", format, FormatNames)
	}
	return slog.New(WithTraceContext(h)), nil
}

// ParseLevel parses one of debug, info, warn and error, in any case; "" is
// info. It accepts nothing else (slog would take "info+2"): a level flag
// should be one of four words.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("log level %q: want %s", s, LevelNames)
}

// WithTraceContext wraps h so that a record logged with a context holding a
// valid span context gets trace_id and span_id attributes (lower-case hex,
// as in a W3C traceparent header). It reads the span from the record's
// context only, so callers must log with the ...Context methods
// (InfoContext) and the call's ctx, as the rpc log interceptor does.
//
// The attributes are added to the record, so they land inside any group
// opened with [slog.Logger.WithGroup]; nothing here opens groups.
func WithTraceContext(h slog.Handler) slog.Handler {
	if t, ok := h.(traceHandler); ok {
		return t // wrapping twice would add the ids twice
	}
	return traceHandler{h}
}

type traceHandler struct{ slog.Handler }

func (h traceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		// Clone only clips the record's attribute slice (no copy), so that
		// adding to it cannot write into a caller's backing array.
		r = r.Clone()
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	return h.Handler.Handle(ctx, r)
}

func (h traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceHandler{h.Handler.WithAttrs(attrs)}
}

func (h traceHandler) WithGroup(name string) slog.Handler {
	return traceHandler{h.Handler.WithGroup(name)}
}
