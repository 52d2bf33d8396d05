package rpc

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		method, contentType, target string
		protocol, codec             string
	}{
		{"POST", "application/json", "/p.S/M", "connect", "json"},
		{"POST", "application/proto", "/p.S/M", "connect", "proto"},
		{"POST", "application/json; charset=utf-8", "/p.S/M", "connect", "json"},
		{"POST", "application/connect+json", "/p.S/Stream", "connect", "json"},
		{"POST", "application/connect+proto", "/p.S/Stream", "connect", "proto"},
		{"GET", "", "/p.S/M?encoding=json&message=%7B%7D", "connect", "json"},
		{"GET", "", "/p.S/M?encoding=proto&base64=1&message=", "connect", "proto"},
		{"POST", "application/grpc", "/p.S/M", "grpc", "proto"},
		{"POST", "application/grpc+proto", "/p.S/M", "grpc", "proto"},
		{"POST", "application/grpc+json", "/p.S/M", "grpc", "json"},
		{"POST", "application/grpc-web", "/p.S/M", "grpcweb", "proto"},
		{"POST", "application/grpc-web+proto", "/p.S/M", "grpcweb", "proto"},
		{"POST", "application/grpc-web+json", "/p.S/M", "grpcweb", "json"},
		{"POST", "application/json", "/v1/orders", "rest", "json"},
		{"GET", "", "/v1/orders/ord_1", "rest", "json"},
		{"POST", "", "/v1/orders/ord_1:cancel", "rest", "json"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(tt.method, tt.target, nil)
		if tt.contentType != "" {
			r.Header.Set("Content-Type", tt.contentType)
		}
		protocol, codec := classify(r)
		if protocol != tt.protocol || codec != tt.codec {
			t.Errorf("%s %q %s: got %s/%s, want %s/%s", tt.method, tt.contentType, tt.target, protocol, codec, tt.protocol, tt.codec)
		}
	}
}

func TestHopHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	want := Hop{
		Procedure:   "/payments.v1.PaymentService/Charge",
		Server:      "payments-2",
		Protocol:    "grpc",
		Codec:       "proto",
		HTTPVersion: "HTTP/2.0",
		Duration:    1234 * time.Microsecond, // the header keeps microseconds
	}
	h := http.Header{}
	h.Set(HopHeader, want.Encode())
	got, ok := ParseHop(h)
	if !ok {
		t.Fatalf("ParseHop(%q) failed", h.Get(HopHeader))
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if _, ok := ParseHop(http.Header{}); ok {
		t.Error("ParseHop of no header succeeded")
	}
}

// The header is a URL query as url.Values writes it, whatever the values
// hold (a REST path is client input).
func TestHopEncodeIsAQuery(t *testing.T) {
	t.Parallel()
	h := Hop{
		Procedure:   "/v1/orders/ord 1&x=y/ü?%",
		Server:      "orders",
		Protocol:    "rest",
		Codec:       "json",
		HTTPVersion: "HTTP/1.1",
		Duration:    1500 * time.Microsecond,
	}
	want := url.Values{
		"procedure": {h.Procedure},
		"server":    {h.Server},
		"protocol":  {h.Protocol},
		"codec":     {h.Codec},
		"http":      {h.HTTPVersion},
		"duration":  {"0.001500s"},
	}.Encode()
	if got := h.Encode(); got != want {
		t.Errorf("Encode() = %q, want %q", got, want)
	}
	header := http.Header{HopHeader: {h.Encode()}}
	if got, ok := ParseHop(header); !ok || got != h {
		t.Errorf("ParseHop(Encode()) = %+v, %v; want %+v", got, ok, h)
	}
}

func TestViolations(t *testing.T) {
	t.Parallel()
	var v Violations
	if v.Err() != nil {
		t.Fatal("empty Violations gave an error")
	}
	v.Add("items", "must not be empty")
	v.Add("items[0].quantity", "must be between %d and %d", 1, 100)
	err := v.Err()
	if connect.CodeOf(err) != connect.CodeInvalidArgument {
		t.Fatalf("got code %v, want invalid_argument", connect.CodeOf(err))
	}
	var cerr *connect.Error
	if !errors.As(err, &cerr) || len(cerr.Details()) != 1 {
		t.Fatalf("got %v, want one detail", err)
	}
	got, err := cerr.Details()[0].Value()
	if err != nil {
		t.Fatal(err)
	}
	want := &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
		{Field: "items", Description: "must not be empty"},
		{Field: "items[0].quantity", Description: "must be between 1 and 100"},
	}}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("detail (-want +got):\n%s", diff)
	}
	if want := "invalid request: items: must not be empty; items[0].quantity: must be between 1 and 100"; cerr.Message() != want {
		t.Errorf("got message %q, want %q", cerr.Message(), want)
	}
}

func TestReason(t *testing.T) {
	t.Parallel()
	reason := ordersv1.ErrorReason_CARD_DECLINED.String()
	err := NewErrorWithReason(connect.CodeFailedPrecondition, reason, "card declined", map[string]string{"id": "x"})
	if got := Reason(err); got != reason {
		t.Errorf("got reason %q, want %s", got, reason)
	}
	if got := ErrorInfo(err).GetMetadata()["id"]; got != "x" {
		t.Errorf("got metadata id %q, want x", got)
	}
	if got := Reason(connect.NewError(connect.CodeInternal, nil)); got != "" {
		t.Errorf("got reason %q for an error without ErrorInfo, want none", got)
	}
}
