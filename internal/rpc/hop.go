package rpc

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
)

// HopHeader is the response header in which a server says how it saw a unary
// call (see [Hop]). A caller reads it to learn what happened on the far side of
// a hop, e.g. orders learns which protocol the payments replica saw.
const HopHeader = "Shop-Hop"

// Hop is one call as the server that received it saw it.
type Hop struct {
	Procedure   string        // "/payments.v1.PaymentService/Charge"
	Server      string        // "orders", "payments-2"
	Protocol    string        // "connect", "grpc", "grpcweb", or "rest" for a transcoded route
	Codec       string        // "json" or "proto"
	HTTPVersion string        // "HTTP/1.1" or "HTTP/2.0"
	Duration    time.Duration // from arrival to the end of the handler
}

// Encode returns h in the form of [HopHeader]: a URL query with its keys in
// order, as [url.Values.Encode] writes it, built without a map (a header
// on every call).
func (h Hop) Encode() string {
	var b strings.Builder
	b.Grow(len(h.Procedure) + len(h.Server) + 96)
	for i, kv := range [...][2]string{
		{"codec", h.Codec},
		{"duration", strconv.FormatFloat(h.Duration.Seconds(), 'f', 6, 64) + "s"}, // ASCII, unlike "µs"
		{"http", h.HTTPVersion},
		{"procedure", h.Procedure},
		{"protocol", h.Protocol},
		{"server", h.Server},
	} {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(kv[0])
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(kv[1]))
	}
	return b.String()
}

// ParseHop reads a [HopHeader] value. It reports false if there is none or it
// is malformed.
func ParseHop(header http.Header) (Hop, bool) {
	v, err := url.ParseQuery(header.Get(HopHeader))
	if err != nil || v.Get("server") == "" {
		return Hop{}, false
	}
	d, err := time.ParseDuration(v.Get("duration"))
	if err != nil {
		return Hop{}, false
	}
	return Hop{
		Procedure:   v.Get("procedure"),
		Server:      v.Get("server"),
		Protocol:    v.Get("protocol"),
		Codec:       v.Get("codec"),
		HTTPVersion: v.Get("http"),
		Duration:    d,
	}, true
}

// maxProcedureBytes bounds the procedure recorded of a call.
const maxProcedureBytes = 256

type callKey struct{}

// call is what the HTTP layer knows of a call before Connect decodes it.
type call struct {
	start                                   time.Time
	procedure, protocol, codec, httpVersion string
}

// observe records, for every request, when it arrived and how it came, for
// [HopFromContext]. Connect's own request type does not expose the HTTP
// version, so this has to happen in front of it.
func observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A REST path carries client input (ids): bounded, like any echo.
		c := call{start: time.Now(), procedure: Truncate(r.URL.Path, maxProcedureBytes), httpVersion: r.Proto}
		c.protocol, c.codec = classify(r)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
	})
}

// classify names the protocol and codec of a request the way Connect tells
// them apart: by content type, or for Connect GET requests by the encoding
// query parameter.
func classify(r *http.Request) (protocol, codec string) {
	if !isRPCPath(r.URL.Path) {
		return "rest", "json" // a resource route such as /v1/orders, transcoded
	}
	if r.Method == http.MethodGet {
		return "connect", r.URL.Query().Get("encoding")
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	sub := func(prefix string) string {
		rest := strings.TrimPrefix(ct, prefix)
		if rest == "" {
			return "proto" // gRPC's default codec
		}
		return strings.TrimPrefix(rest, "+")
	}
	switch {
	case strings.HasPrefix(ct, "application/grpc-web"):
		return "grpcweb", sub("application/grpc-web")
	case strings.HasPrefix(ct, "application/grpc"):
		return "grpc", sub("application/grpc")
	case strings.HasPrefix(ct, "application/connect+"):
		return "connect", strings.TrimPrefix(ct, "application/connect+")
	default:
		return "connect", strings.TrimPrefix(ct, "application/")
	}
}

// isRPCPath reports whether path names an RPC: /package.Service/Method.
func isRPCPath(path string) bool {
	service, method, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	return ok && strings.Contains(service, ".") && method != "" && !strings.Contains(method, "/")
}

// HopFromContext returns the call being handled as server saw it so far, its
// duration running up to now. It reports false outside a request that went
// through [Middleware].
func HopFromContext(ctx context.Context, server string) (Hop, bool) {
	c, ok := ctx.Value(callKey{}).(call)
	if !ok {
		return Hop{}, false
	}
	return Hop{
		Procedure:   c.procedure,
		Server:      server,
		Protocol:    c.protocol,
		Codec:       c.codec,
		HTTPVersion: c.httpVersion,
		Duration:    time.Since(c.start),
	}, true
}

// hopInterceptor puts the [HopHeader] on every unary response and error.
func hopInterceptor(server string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			resp, err := next(ctx, req)
			hop, ok := HopFromContext(ctx, server)
			if !ok {
				return resp, err
			}
			if cerr := (*connect.Error)(nil); errors.As(err, &cerr) {
				cerr.Meta().Set(HopHeader, hop.Encode())
			} else if resp != nil {
				resp.Header().Set(HopHeader, hop.Encode())
			}
			return resp, err
		}
	}
}
