package orders

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/rpc"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

// maxValidationMessageBytes bounds the message of a validation error: ten
// violations with values quoted by their first 64 bytes, and a count.
const maxValidationMessageBytes = 2 << 10

// FuzzValidateCreate checks CreateOrder's validation on any request: it
// never panics; what it accepts can be priced; what it refuses is
// INVALID_ARGUMENT with a small, valid UTF-8 message and at most
// rpc.MaxViolations violations, however many lines or bytes the request has.
// Strings may hold invalid UTF-8 here, which Connect refuses before the
// handler: the checks must not depend on that.
func FuzzValidateCreate(f *testing.F) {
	f.Add("gopher-plush", int32(2), "sticker-pack", int32(1), uint16(2), "tok_visa", "key-1", "")
	f.Add("gopher-plush", int32(1), "gopher-plush", int32(1), uint16(10_000), "tok_visa", "", "")
	f.Add(strings.Repeat("x", 1<<16), int32(0), "", int32(-1), uint16(1), "", "a b", "c d")
	f.Add("\xff\xfe", int32(101), "h2c-hoodie", int32(100), uint16(21), "tok_declined", "k", "other")
	f.Add("", int32(1<<31-1), "protobuf-mug", int32(-1<<31), uint16(3), "tok_visa", strings.Repeat("k", 129), "ok-key")
	f.Fuzz(func(t *testing.T, id1 string, q1 int32, id2 string, q2 int32, lines uint16, token, key, header string) {
		msg := &ordersv1.CreateOrderRequest{PaymentToken: token, IdempotencyKey: key}
		for i := range int(lines) % 2048 {
			if i%2 == 0 {
				msg.Items = append(msg.Items, &ordersv1.CartItem{ProductId: id1, Quantity: q1})
			} else {
				msg.Items = append(msg.Items, &ordersv1.CartItem{ProductId: id2, Quantity: q2})
			}
		}
		err := validateCreate(msg)
		if err == nil {
			items, total := price(msg.GetItems())
			if len(items) == 0 || len(items) > maxItems || total.GetMinorUnits() <= 0 {
				t.Fatalf("accepted %d lines priced %v", len(items), total)
			}
			for _, it := range items {
				if it.GetProductName() == "" || it.GetQuantity() < 1 || it.GetQuantity() > maxQuantity {
					t.Fatalf("accepted line %v", it)
				}
			}
		} else {
			checkValidationError(t, err)
		}

		got, err := idempotencyKey(key, header)
		switch {
		case err != nil:
			checkValidationError(t, err)
		case key != "":
			if got != key || (header != "" && header != key) {
				t.Fatalf("idempotencyKey(%q, %q) = %q", key, header, got)
			}
		case header != "":
			if got != header || !rpc.ValidIdempotencyKey(got) {
				t.Fatalf("idempotencyKey(%q, %q) = %q", key, header, got)
			}
		default:
			if !strings.HasPrefix(got, "auto:") {
				t.Fatalf("idempotencyKey of nothing = %q, want a random key", got)
			}
		}
	})
}

func checkValidationError(t *testing.T, err error) {
	t.Helper()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeInvalidArgument {
		t.Fatalf("got %v, want invalid_argument", err)
	}
	if msg := cerr.Message(); !utf8.ValidString(msg) || len(msg) > maxValidationMessageBytes {
		t.Fatalf("message of %d bytes (valid UTF-8: %v): %.200q", len(msg), utf8.ValidString(msg), msg)
	}
	if len(cerr.Details()) != 1 {
		t.Fatalf("got %d details, want a BadRequest", len(cerr.Details()))
	}
	v, derr := cerr.Details()[0].Value()
	br, ok := v.(*errdetails.BadRequest)
	if derr != nil || !ok {
		t.Fatalf("detail %v: %v", v, derr)
	}
	if n := len(br.GetFieldViolations()); n == 0 || n > rpc.MaxViolations {
		t.Fatalf("got %d violations, want 1 to %d", n, rpc.MaxViolations)
	}
	for _, fv := range br.GetFieldViolations() {
		if fv.GetField() == "" || fv.GetDescription() == "" {
			t.Fatalf("violation %v without a field or a description", fv)
		}
	}
}

// FuzzPageToken checks that page tokens round-trip and that no token, however
// forged, is accepted with a cursor the store would misread (zero or negative
// means "from the start" to it, which only the empty token may ask for). A
// refused token's cursor is not looked at.
func FuzzPageToken(f *testing.F) {
	f.Add("", int64(1))
	f.Add(encodePageToken(42), int64(42))
	f.Add("c2VxOi0x", int64(-1)) // "seq:-1"
	f.Add("c2VxOjA", int64(0))   // "seq:0"
	f.Add("c2VxOis1", int64(5))  // "seq:+5"
	f.Add("!!", int64(1<<62))
	f.Add("c2VxOjk5OTk5OTk5OTk5OTk5OTk5OTk5OTk", int64(9))
	f.Fuzz(func(t *testing.T, token string, n int64) {
		cursor, ok := decodePageToken(token)
		switch {
		case token == "" && (!ok || cursor != 0):
			t.Fatalf("the empty token: got %d, %v; want the first page", cursor, ok)
		case token != "" && ok && cursor <= 0:
			t.Fatalf("token %q decodes to cursor %d", token, cursor)
		}
		if n > 0 {
			if got, ok := decodePageToken(encodePageToken(n)); !ok || got != n {
				t.Fatalf("cursor %d: round trip gave %d, %v", n, got, ok)
			}
		} else if encodePageToken(n) != "" && n == 0 {
			t.Fatalf("cursor 0 encodes to %q, want no token", encodePageToken(n))
		}
	})
}
