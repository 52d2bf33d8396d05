package rpc

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// checkInput answers malformed requests that connect-go (or net/http below
// it) would answer as a server failure with the client's error instead, and
// keeps response headers small ([boundHeaders]):
//
//   - A request body that cannot be read (malformed chunked encoding, a body
//     shorter than its Content-Length) is INVALID_ARGUMENT; connect-go says
//     UNKNOWN (HTTP 500). One that does not arrive in time is
//     DEADLINE_EXCEEDED.
//   - Enveloped bodies (gRPC, gRPC-Web, Connect streaming) are checked frame
//     by frame as connect-go reads them ([framing]): a body that ends inside
//     a message, a message flagged as compressed in a request that names no
//     compression, or flags a request may not set are INVALID_ARGUMENT, where
//     connect-go says INTERNAL; a unary or server-streaming call with no
//     message or more than one is INVALID_ARGUMENT too, where connect-go says
//     UNIMPLEMENTED (gRPC's status code table asks for UNIMPLEMENTED, but that
//     tells a client the method does not exist; the request is what is wrong).
//   - A Connect GET with base64=1 whose message is not base64 is
//     INVALID_ARGUMENT; connect-go says UNKNOWN.
//
// The errors travel inside the body reader: connect-go passes a
// [*connect.Error] from a read through unchanged, in whatever protocol the
// call speaks.
func checkInput(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gw := &guardedWriter{ResponseWriter: w}
		defer gw.finish()
		rpcPath := isRPCPath(r.URL.Path)
		if rpcPath && r.Method == http.MethodGet {
			if err := checkConnectGET(r); err != nil {
				_ = getErrorWriter.Write(gw, r, err)
				return
			}
		}
		var f *framing
		if rpcPath && r.Method == http.MethodPost {
			f = framingOf(r)
		}
		if f != nil || (r.Body != nil && r.Body != http.NoBody) {
			body := r.Body
			if body == nil {
				body = http.NoBody
			}
			r.Body = &requestBody{ReadCloser: body, ctx: r.Context(), framing: f}
		}
		next.ServeHTTP(gw, r)
	})
}

var getErrorWriter = connect.NewErrorWriter()

func invalidArgument(format string, args ...any) *connect.Error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf(format, args...))
}

// requestBody is a request body whose read errors say whose fault they are,
// and, for enveloped protocols, whose framing is checked as it is read.
type requestBody struct {
	io.ReadCloser
	ctx     context.Context //nolint:containedctx // the request's, to tell a client that left
	framing *framing        // nil: not enveloped
	err     error           // sticky: once wrong, always wrong
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.ReadCloser.Read(p)
	if b.framing != nil {
		if ferr := b.framing.scan(p[:n]); ferr != nil {
			b.err = ferr
			return 0, ferr
		}
		if errors.Is(err, io.EOF) {
			if ferr := b.framing.end(); ferr != nil {
				// Hand over the bytes first, so that the reader judges what
				// they say (a message over its limit) before it learns that
				// the body ended early, whichever read brought the end.
				b.err = ferr
				if n > 0 {
					return n, nil
				}
				return 0, ferr
			}
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = b.readError(err)
	}
	return n, err
}

// readError classifies a failure to read the body. A client that went away
// or a limit that was hit keeps its error, which connect-go maps (CANCELED,
// RESOURCE_EXHAUSTED); a body that took too long is DEADLINE_EXCEEDED;
// anything else is a body the client sent malformed.
func (b *requestBody) readError(err error) error {
	var (
		cerr   *connect.Error
		maxErr *http.MaxBytesError
	)
	switch {
	case b.ctx.Err() != nil, errors.As(err, &cerr), errors.As(err, &maxErr), errors.Is(err, http.ErrBodyReadAfterClose):
		return err
	case errors.Is(err, os.ErrDeadlineExceeded):
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("the request body did not arrive within %v", bodyTimeout))
	}
	return invalidArgument("malformed request body: %s", Truncate(err.Error(), 128))
}

// envelopePrefixBytes is the size of the prefix of each message in gRPC,
// gRPC-Web and Connect streaming bodies: one byte of flags, four of length.
const envelopePrefixBytes = 5

// framing follows the envelopes of a request body as they are read.
type framing struct {
	procedure      string // "/pkg.Service/Method"
	one            bool   // exactly one message expected (unary, server stream)
	compressed     bool   // the request names a compression, so flag 0x01 is allowed
	encodingHeader string // the header that names it

	prefix  [envelopePrefixBytes]byte
	inPref  int   // bytes of the current prefix seen
	payload int64 // bytes of the current message still to come
	msgs    int   // messages begun
}

// framingOf returns the framing check of an enveloped request, or nil.
func framingOf(r *http.Request) *framing {
	ct := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Type")))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	var header string
	switch {
	case ct == "application/grpc", strings.HasPrefix(ct, "application/grpc+"),
		ct == "application/grpc-web", strings.HasPrefix(ct, "application/grpc-web+"):
		header = "Grpc-Encoding"
	case strings.HasPrefix(ct, "application/connect+"):
		header = "Connect-Content-Encoding"
	default:
		return nil
	}
	enc := r.Header.Get(header)
	m := method(r.URL.Path)
	return &framing{
		procedure:      r.URL.Path,
		one:            m != nil && !m.IsStreamingClient(),
		compressed:     enc != "" && enc != "identity",
		encodingHeader: header,
	}
}

// scan checks the next bytes of the body.
func (f *framing) scan(p []byte) error {
	for len(p) > 0 {
		if f.payload > 0 {
			n := min(int64(len(p)), f.payload)
			f.payload -= n
			p = p[n:]
			continue
		}
		if f.inPref == 0 && f.one && f.msgs == 1 {
			return invalidArgument("the request has more than one message; %s takes exactly one", f.procedure)
		}
		n := copy(f.prefix[f.inPref:], p)
		f.inPref += n
		p = p[n:]
		if f.inPref < envelopePrefixBytes {
			continue
		}
		f.inPref = 0
		f.msgs++
		switch flags := f.prefix[0]; {
		case flags&^0x01 != 0:
			return invalidArgument("message %d has flags 0x%02x; a request message may only set 0x01 (compressed)", f.msgs, flags)
		case flags == 0x01 && !f.compressed:
			return invalidArgument("message %d is flagged as compressed, but the request names no compression in %s", f.msgs, f.encodingHeader)
		}
		f.payload = int64(binary.BigEndian.Uint32(f.prefix[1:]))
	}
	return nil
}

// end checks that the body ended where a message did.
func (f *framing) end() error {
	switch {
	case f.inPref > 0:
		return invalidArgument("the request body ends inside the %d-byte prefix of message %d", envelopePrefixBytes, f.msgs+1)
	case f.payload > 0:
		return invalidArgument("the request body ends %d bytes short of the end of message %d, as its length prefix gave it", f.payload, f.msgs)
	case f.one && f.msgs == 0:
		return invalidArgument("the request has no message; %s takes exactly one", f.procedure)
	}
	return nil
}

// method returns the descriptor of the RPC at path ("/pkg.Service/Method")
// from the generated code linked in, or nil.
func method(path string) protoreflect.MethodDescriptor {
	service, name, ok := strings.Cut(strings.TrimPrefix(path, "/"), "/")
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(service))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	return sd.Methods().ByName(protoreflect.Name(name))
}

// checkConnectGET checks the message of a Connect GET request that
// connect-go would serve (an RPC without side effects) before connect-go
// decodes it: with base64=1 it must be URL-safe base64, padded or not.
func checkConnectGET(r *http.Request) error {
	m := method(r.URL.Path)
	if m == nil {
		return nil
	}
	opts, _ := m.Options().(*descriptorpb.MethodOptions)
	if opts.GetIdempotencyLevel() != descriptorpb.MethodOptions_NO_SIDE_EFFECTS {
		return nil // connect-go answers 405
	}
	query := r.URL.Query()
	if query.Get("base64") != "1" {
		return nil
	}
	msg := query.Get("message")
	enc := base64.URLEncoding
	if len(msg)%4 != 0 {
		enc = base64.RawURLEncoding // as connect-go decides
	}
	if _, err := enc.DecodeString(msg); err != nil {
		return invalidArgument("the message parameter is not URL-safe base64, as base64=1 says: %v", err)
	}
	return nil
}
