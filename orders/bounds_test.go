package orders_test

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/connectshop/connectshop/internal/rpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/encoding/protojson"
)

// A request with thousands of problems, or one huge bad value, gets a small
// error on every protocol: the first ten violations and a count of the rest,
// values quoted by their first 64 bytes. gRPC and gRPC-Web send the error in
// headers (grpc-message, grpc-status-details-bin), so this is what keeps them
// under what clients and proxies accept.
func TestBoundedErrors(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	var logsMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logsMu.Lock()
		defer logsMu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := newShop(t, shopConfig{logger: logger})
	many, big := manyLines(10_000), bigProductID()
	quoted := `unknown product "` + strings.Repeat("x", rpc.EchoBytes) + `…"`

	// Through the generated clients: the error itself.
	for name, opts := range map[string][]connect.ClientOption{
		"grpc": {connect.WithGRPC()}, "grpcweb": {connect.WithGRPCWeb()},
		"connect+proto": nil, "connect+json": {connect.WithProtoJSON()},
	} {
		c := s.clientAs(s.newCustomer(t), s.orders.Client(), opts...)
		_, err := c.CreateOrder(ctxWithTimeout(t, 10*time.Second), connect.NewRequest(many))
		fields := badRequestFields(t, err)
		if len(fields) != rpc.MaxViolations || fields[0] != "items" || fields[1] != "items[1].product_id" {
			t.Errorf("%s, 10,000 lines: got violations %v, want the first %d", name, fields, rpc.MaxViolations)
		}
		// One for "at most 20 lines", 9,999 for the same product again.
		if msg := errors.Unwrap(err).Error(); !strings.HasSuffix(msg, "; and 9990 more not listed") {
			t.Errorf("%s, 10,000 lines: message %.200q... does not end with the count of the rest", name, msg[max(0, len(msg)-100):])
		}
		_, err = c.CreateOrder(ctxWithTimeout(t, 10*time.Second), connect.NewRequest(big))
		if fields := badRequestFields(t, err); len(fields) != 1 || !strings.Contains(err.Error(), quoted) {
			t.Errorf("%s, 1 MB product id: got %.300q, want one violation quoting the id as %q", name, err.Error(), quoted)
		}
	}

	// On the wire: the size of what comes back.
	manyJSON, err := protojson.Marshal(many)
	if err != nil {
		t.Fatal(err)
	}
	bigJSON, err := protojson.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	var report strings.Builder
	for _, c := range []corpusCase{
		{name: "10,000 lines", protocol: pGRPC, path: procCreate, body: mustProto(t, many)},
		{name: "10,000 lines", protocol: pGRPCWeb, path: procCreate, body: mustProto(t, many)},
		{name: "10,000 lines", protocol: pConnectProto, path: procCreate, body: mustProto(t, many)},
		{name: "10,000 lines", protocol: pConnectJSON, path: procCreate, body: manyJSON},
		{name: "10,000 lines", protocol: pREST, path: "/v1/orders", body: manyJSON},
		{name: "1 MB product id", protocol: pGRPC, path: procCreate, body: mustProto(t, big)},
		{name: "1 MB product id", protocol: pGRPCWeb, path: procCreate, body: mustProto(t, big)},
		{name: "1 MB product id", protocol: pConnectProto, path: procCreate, body: mustProto(t, big)},
		{name: "1 MB product id", protocol: pConnectJSON, path: procCreate, body: bigJSON},
		{name: "1 MB product id", protocol: pREST, path: "/v1/orders", body: bigJSON},
	} {
		o := s.send(t, c, s.newCustomer(t))
		fmt.Fprintf(&report, "\n  %-16s %-14s HTTP %d %s: %5d bytes of headers and trailers, %5d of body", c.name, c.protocol, o.status, codeName(o.code), o.headerBytes, o.bodyBytes)
		if o.code != connect.CodeInvalidArgument {
			t.Errorf("%s over %s: got %s, want invalid_argument", c.name, c.protocol, codeName(o.code))
		}
		if o.headerBytes > maxAnswerHeaderBytes || o.bodyBytes > 8<<10 {
			t.Errorf("%s over %s: %d bytes of headers and trailers, %d of body; want under %d and %d", c.name, c.protocol, o.headerBytes, o.bodyBytes, maxAnswerHeaderBytes, 8<<10)
		}
	}
	t.Log("answers:" + report.String())

	// And in the logs: every line stays small.
	logsMu.Lock()
	defer logsMu.Unlock()
	longest := 0
	for line := range strings.Lines(logs.String()) {
		longest = max(longest, len(line))
	}
	if longest == 0 || longest > 4<<10 {
		t.Errorf("longest log line: %d bytes, want some lines, none over 4 KB", longest)
	}
	t.Logf("longest log line: %d bytes", longest)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func badRequestFields(t *testing.T, err error) []string {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeInvalidArgument {
		t.Fatalf("got %v, want invalid_argument", err)
	}
	var fields []string
	for _, d := range cerr.Details() {
		v, derr := d.Value()
		if br, ok := v.(*errdetails.BadRequest); derr == nil && ok {
			for _, fv := range br.GetFieldViolations() {
				fields = append(fields, fv.GetField())
			}
		}
	}
	return fields
}
