package rpc

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"connectrpc.com/connect"
)

// logInterceptor writes one line per finished call: procedure, protocol,
// code and duration, at debug level: metrics count calls in production, and
// a line per call costs more than the call's own work at thousands a second.
// Failures are logged at warn, and server errors (INTERNAL, UNKNOWN,
// DATA_LOSS) at error level with their message, which the client never sees. A call
// whose client went away (cancelled, disconnected, out of time) is logged as
// such, whatever error that caused inside: it is the client's doing, not a
// failure of the server.
func logInterceptor(logger *slog.Logger) connect.Interceptor {
	return &logging{logger: logger}
}

type logging struct{ logger *slog.Logger }

func (l *logging) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		resp, err := next(ctx, req)
		l.log(ctx, req.Spec().Procedure, req.Peer().Protocol, start, err)
		return resp, err
	}
}

func (l *logging) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		err := next(ctx, conn)
		l.log(ctx, conn.Spec().Procedure, conn.Peer().Protocol, start, err)
		return err
	}
}

func (l *logging) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (l *logging) log(ctx context.Context, procedure, protocol string, start time.Time, err error) {
	if err == nil && !l.logger.Enabled(ctx, slog.LevelDebug) {
		return // the common case in production: nothing to build
	}
	attrs := []any{"procedure", procedure, "protocol", protocol, "duration", time.Since(start)}
	if err == nil {
		l.logger.DebugContext(ctx, "call", append(attrs, "code", "ok")...)
		return
	}
	if cause := ctx.Err(); cause != nil {
		code := connect.CodeCanceled
		if errors.Is(cause, context.DeadlineExceeded) {
			code = connect.CodeDeadlineExceeded
		}
		l.logger.DebugContext(ctx, "call ended by its client", append(attrs, "code", code.String())...)
		return
	}
	code := connect.CodeOf(err)
	attrs = append(attrs, "code", code.String())
	switch code {
	case connect.CodeInternal, connect.CodeUnknown, connect.CodeDataLoss:
		l.logger.ErrorContext(ctx, "call failed", append(attrs, "err", err)...)
	default:
		var cerr *connect.Error
		if errors.As(err, &cerr) {
			attrs = append(attrs, "msg", cerr.Message())
		}
		l.logger.WarnContext(ctx, "call failed", attrs...)
	}
}
