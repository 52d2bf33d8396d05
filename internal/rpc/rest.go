package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"connectrpc.com/connect"
)

// RESTErrors wraps a REST transcoder (vanguard) in front of a Connect
// handler built with [HandlerOptions], so that every REST error is
// google.rpc.Status JSON with the HTTP status and code that say what was
// wrong.
//
// Errors of the service itself pass through as the transcoder renders them.
// The transcoder's own answers, given before the request reached the
// service, are rewritten: vanguard v0.4.0 answers some requests it cannot
// transcode with INTERNAL or UNKNOWN and HTTP 500 (an unknown query
// parameter, a string that is not UTF-8, a body on a route without one, a
// malformed JSON body on a route with query parameters), which are the
// client's mistakes and become INVALID_ARGUMENT (400); and its plain-text
// 404, 405 and 415 become Status JSON with NOT_FOUND or INVALID_ARGUMENT. A
// path or query that is not UTF-8, or a query parameter whose name is not a
// field path, is refused before transcoding.
func RESTErrors(transcoder http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if msg := checkRESTTarget(r); msg != "" {
			writeRESTError(w, http.StatusBadRequest, connect.CodeInvalidArgument, msg)
			return
		}
		reached := new(atomic.Bool)
		rw := &restWriter{ResponseWriter: w, reached: reached}
		transcoder.ServeHTTP(rw, r.WithContext(context.WithValue(r.Context(), reachedKey{}, reached)))
		rw.finish(r)
	})
}

// checkRESTTarget returns what is wrong with the path and query of a REST
// request that the transcoder would fail on as its own error, or "".
func checkRESTTarget(r *http.Request) string {
	if !utf8.ValidString(r.URL.Path) {
		return "the path is not valid UTF-8 (after percent-decoding)"
	}
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "malformed query string: " + Truncate(err.Error(), EchoBytes)
	}
	for key, values := range query {
		if !utf8.ValidString(key) {
			return fmt.Sprintf("query parameter name %q is not valid UTF-8", Truncate(key, EchoBytes))
		}
		// A field path with an empty part: vanguard v0.4.0 panics on one
		// that ends with a dot after a repeated field ("items."; found by
		// FuzzREST), and no field has an empty name.
		if slices.Contains(strings.Split(key, "."), "") {
			return fmt.Sprintf("query parameter name %q is not a field path (a.b.c)", Truncate(key, EchoBytes))
		}
		for _, v := range values {
			if !utf8.ValidString(v) {
				return fmt.Sprintf("query parameter %q is not valid UTF-8", Truncate(key, EchoBytes))
			}
		}
	}
	return ""
}

type reachedKey struct{}

// reachInterceptor records, for [RESTErrors], that a call reached the
// service's interceptors: from there on, errors are the service's.
func reachInterceptor() connect.Interceptor { return reach{} }

type reach struct{}

func markReached(ctx context.Context) {
	if reached, ok := ctx.Value(reachedKey{}).(*atomic.Bool); ok {
		reached.Store(true)
	}
}

func (reach) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		markReached(ctx)
		return next(ctx, req)
	}
}

func (reach) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		markReached(ctx)
		return next(ctx, conn)
	}
}

func (reach) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// maxRejectionBytes bounds what is kept of a transcoder's own error body.
const maxRejectionBytes = 16 << 10

// restWriter holds back an error response of the transcoder's own (one
// written before the service was reached) for [restWriter.finish] to
// rewrite; everything else passes through.
type restWriter struct {
	http.ResponseWriter
	reached *atomic.Bool
	status  int // of a held-back error; 0: passing through
	passing bool
	body    bytes.Buffer
}

func (w *restWriter) WriteHeader(status int) {
	if w.status != 0 || w.passing {
		return
	}
	if status < http.StatusOK {
		w.ResponseWriter.WriteHeader(status) // informational
		return
	}
	if status >= 400 && !w.reached.Load() {
		w.status = status
		return
	}
	w.passing = true
	w.ResponseWriter.WriteHeader(status)
}

func (w *restWriter) Write(p []byte) (int, error) {
	if w.status == 0 && !w.passing {
		w.WriteHeader(http.StatusOK)
	}
	if w.status != 0 {
		if room := maxRejectionBytes - w.body.Len(); room > 0 {
			w.body.Write(p[:min(len(p), room)])
		}
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

func (w *restWriter) Flush() {
	if w.status != 0 {
		return
	}
	w.passing = true // a flush sends the headers
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *restWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// finish writes a held-back error as google.rpc.Status JSON.
func (w *restWriter) finish(r *http.Request) {
	if w.status == 0 {
		return
	}
	status, code, msg := restRejection(r, w.status, w.body.Bytes())
	writeRESTError(w.ResponseWriter, status, code, msg)
}

// restRejection says how to answer a request that the transcoder refused
// with status and body (google.rpc.Status JSON or plain text).
func restRejection(r *http.Request, status int, body []byte) (int, connect.Code, string) {
	var st struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	code, msg := connect.Code(0), strings.TrimSpace(string(body))
	if json.Unmarshal(body, &st) == nil && st.Code > 0 && st.Code <= int(connect.CodeUnauthenticated) {
		code, msg = connect.Code(st.Code), st.Message
	}
	switch {
	case status >= 500:
		// The transcoder could not turn the request into a call: its
		// INTERNAL and UNKNOWN here are about the request, not the server.
		return http.StatusBadRequest, connect.CodeInvalidArgument, msg
	case status == http.StatusNotFound:
		return status, connect.CodeNotFound, fmt.Sprintf("no route matches %s %s", Truncate(r.Method, EchoBytes), Truncate(r.URL.Path, EchoBytes))
	case status == http.StatusMethodNotAllowed:
		return status, connect.CodeInvalidArgument, fmt.Sprintf("%s is not allowed on %s (see the Allow header)", Truncate(r.Method, EchoBytes), Truncate(r.URL.Path, EchoBytes))
	case status == http.StatusUnsupportedMediaType:
		return status, connect.CodeInvalidArgument, "unsupported content type or encoding: " + msg + "; send Content-Type: application/json"
	case code == 0:
		code = codeOfHTTP(status)
	}
	return status, code, msg
}

// codeOfHTTP is the code of an HTTP error status, for a transcoder error
// that came without one.
func codeOfHTTP(status int) connect.Code {
	switch status {
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated
	case http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusConflict:
		return connect.CodeAlreadyExists
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return connect.CodeResourceExhausted
	case http.StatusRequestTimeout:
		return connect.CodeDeadlineExceeded
	}
	return connect.CodeInvalidArgument
}

// writeRESTError writes a google.rpc.Status as REST clients get it from
// the transcoder.
func writeRESTError(w http.ResponseWriter, status int, code connect.Code, msg string) {
	body, _ := json.Marshal(struct {
		Code    int        `json:"code"`
		Message string     `json:"message"`
		Details []struct{} `json:"details"`
	}{int(code), Truncate(msg, maxErrorMessageBytes), []struct{}{}})
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
