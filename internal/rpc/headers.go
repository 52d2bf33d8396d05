package rpc

import (
	"net/http"
	"net/url"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
)

// Bounds on response headers and trailers. gRPC and gRPC-Web send an error's
// message (grpc-message) and details (grpc-status-details-bin) in them; a
// client-supplied value echoed there (a request header, a number protojson
// quotes in full) must not make a header of hundreds of kilobytes, which
// proxies refuse (nginx reads response headers into 4 or 8 KB by default,
// Envoy allows 60 KB) and which costs every hop. The shop's own errors stay
// far below: [Violations] keeps ten, and quotes values through [Truncate].
const (
	// maxHeaderValueBytes bounds one response header or trailer value.
	maxHeaderValueBytes = 8 << 10
	// maxErrorMessageBytes is what a grpc-message over the bound is cut to.
	maxErrorMessageBytes = 1 << 10
)

// guardedWriter bounds the response headers before they are sent, and the
// trailers when the handler returns ([boundHeaders]).
type guardedWriter struct {
	http.ResponseWriter
	sent bool
}

func (g *guardedWriter) WriteHeader(code int) {
	if code < http.StatusOK {
		boundHeaders(g.Header()) // informational: the final headers come later
	} else {
		g.beforeSend()
	}
	g.ResponseWriter.WriteHeader(code)
}

func (g *guardedWriter) Write(p []byte) (int, error) {
	g.beforeSend()
	return g.ResponseWriter.Write(p)
}

// Flush lets streams (connect-go looks for [http.Flusher]) flush through.
func (g *guardedWriter) Flush() {
	g.beforeSend()
	_ = http.NewResponseController(g.ResponseWriter).Flush()
}

// Unwrap lets [http.ResponseController] reach the connection's deadlines.
func (g *guardedWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

func (g *guardedWriter) beforeSend() {
	if !g.sent {
		g.sent = true
		boundHeaders(g.Header())
	}
}

// finish bounds the trailers, which net/http sends after the handler
// returns.
func (g *guardedWriter) finish() { boundHeaders(g.Header()) }

// boundHeaders shortens every value of h longer than [maxHeaderValueBytes]:
// grpc-message is cut to its first kilobyte, grpc-status-details-bin loses
// its details (and its message is cut), any other header is dropped, since a
// cut value of an unknown header would be wrong rather than short.
func boundHeaders(h http.Header) {
	for key, values := range h {
		for i, v := range values {
			if len(v) <= maxHeaderValueBytes {
				continue
			}
			switch http.CanonicalHeaderKey(strings.TrimPrefix(key, http.TrailerPrefix)) {
			case "Grpc-Message":
				values[i] = boundGRPCMessage(v)
			case "Grpc-Status-Details-Bin":
				values[i] = boundStatusDetails(v)
			default:
				values[i] = ""
			}
		}
		kept := values[:0]
		for _, v := range values {
			if v != "" {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(h, key)
		} else {
			h[key] = kept
		}
	}
}

// boundGRPCMessage cuts a percent-encoded grpc-message.
func boundGRPCMessage(v string) string {
	msg, err := url.PathUnescape(v)
	if err != nil {
		msg = v
	}
	return grpcPercentEncode(Truncate(msg, maxErrorMessageBytes))
}

// boundStatusDetails cuts the message of a grpc-status-details-bin (a
// google.rpc.Status) and drops its details if it is still too long; "" if
// it cannot be read.
func boundStatusDetails(v string) string {
	bin, err := connect.DecodeBinaryHeader(v)
	if err != nil {
		return ""
	}
	st := new(status.Status)
	if err := proto.Unmarshal(bin, st); err != nil {
		return ""
	}
	st.Message = Truncate(st.GetMessage(), maxErrorMessageBytes)
	for range 2 {
		if bin, err = proto.Marshal(st); err != nil {
			return ""
		}
		if enc := connect.EncodeBinaryHeader(bin); len(enc) <= maxHeaderValueBytes {
			return enc
		}
		st.Details = nil
	}
	return ""
}

// grpcPercentEncode encodes a grpc-message as gRPC asks: bytes outside
// printable ASCII, and '%', as %XX.
func grpcPercentEncode(msg string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c < ' ' || c > '~' || c == '%' {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
