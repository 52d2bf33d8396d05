package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestTruncate(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 64, "short"},
		{"abcdef", 3, "abc…"},
		{"héllo", 2, "h…"}, // é is two bytes: not split
		{"héllo", 3, "hé…"},
		{"日本語", 4, "日…"},
		{"a\xffb", 64, "a\uFFFDb"},
		{strings.Repeat("\x80", 100), 10, "\uFFFD…"},
		{"abc", 0, "…"},
	} {
		got := Truncate(tt.in, tt.n)
		if got != tt.want || !utf8.ValidString(got) {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
		}
	}
}

func TestViolationsCap(t *testing.T) {
	t.Parallel()
	var v Violations
	id := strings.Repeat("x", 900_000)
	for i := range 10_000 {
		v.Add(fmt.Sprintf("items[%d].product_id", i), "unknown product %q", Truncate(id, EchoBytes))
	}
	err := v.Err()
	var cerr *connect.Error
	if !errors.As(err, &cerr) || cerr.Code() != connect.CodeInvalidArgument {
		t.Fatalf("got %v, want invalid_argument", err)
	}
	if !strings.HasSuffix(cerr.Message(), "; and 9990 more not listed") {
		t.Errorf("message ends %q, want the count of the rest", cerr.Message()[len(cerr.Message())-60:])
	}
	detail, err := cerr.Details()[0].Value()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(detail.(*errdetails.BadRequest).GetFieldViolations()); n != MaxViolations {
		t.Errorf("got %d violations in the detail, want %d", n, MaxViolations)
	}
	if len(cerr.Message()) > 2<<10 {
		t.Errorf("message of %d bytes, want a couple of KB at most", len(cerr.Message()))
	}
}

func TestFraming(t *testing.T) {
	t.Parallel()
	env := func(flags byte, payload string) string {
		return string([]byte{flags, 0, 0, 0, byte(len(payload))}) + payload
	}
	for _, tt := range []struct {
		name       string
		body       string
		one        bool
		compressed bool
		wantErr    string // "" for none
	}{
		{"one message", env(0, "abc"), true, false, ""},
		{"empty message", env(0, ""), true, false, ""},
		{"stream of three", env(0, "a") + env(0, "") + env(0, "bc"), false, false, ""},
		{"no message, stream", "", false, false, ""},
		{"no message, unary", "", true, false, "has no message"},
		{"two messages, unary", env(0, "a") + env(0, "b"), true, false, "more than one message"},
		{"trailing byte, unary", env(0, "a") + "x", true, false, "more than one message"},
		{"cut prefix", env(0, "abc")[:3], true, false, "inside the 5-byte prefix"},
		{"cut message", env(0, "abc")[:6], true, false, "2 bytes short"},
		{"compressed, no encoding", env(1, "abc"), true, false, "names no compression"},
		{"compressed, with encoding", env(1, "abc"), true, true, ""},
		{"end-stream flag", env(2, "{}"), true, false, "flags 0x02"},
		{"trailer flag", env(0x80, ""), true, false, "flags 0x80"},
	} {
		for _, read := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{{"whole", func(r io.Reader) io.Reader { return r }}, {"byte by byte", iotest.OneByteReader}, {"data with EOF", iotest.DataErrReader}} {
			body := &requestBody{
				ReadCloser: io.NopCloser(read.wrap(strings.NewReader(tt.body))),
				ctx:        t.Context(),
				framing:    &framing{procedure: "/p.S/M", one: tt.one, compressed: tt.compressed, encodingHeader: "Grpc-Encoding"},
			}
			_, err := io.ReadAll(body)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("%s, %s: got %v, want none", tt.name, read.name, err)
			case tt.wantErr != "" && (connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("%s, %s: got %v, want invalid_argument saying %q", tt.name, read.name, err, tt.wantErr)
			}
		}
	}
}

// A body that cannot be read is the client's error; one that the client
// abandoned keeps its error, for connect-go to call it canceled.
func TestRequestBodyReadErrors(t *testing.T) {
	t.Parallel()
	broken := errors.New("invalid byte in chunk length")
	body := &requestBody{ReadCloser: io.NopCloser(iotest.ErrReader(broken)), ctx: t.Context()}
	if _, err := io.ReadAll(body); connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), broken.Error()) {
		t.Errorf("got %v, want invalid_argument saying what was wrong", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	body = &requestBody{ReadCloser: io.NopCloser(iotest.ErrReader(broken)), ctx: ctx}
	if _, err := io.ReadAll(body); !errors.Is(err, broken) {
		t.Errorf("client gone: got %v, want the read error as it was", err)
	}
}

func TestBoundHeaders(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", maxHeaderValueBytes)
	bin, err := proto.Marshal(&status.Status{Code: 3, Message: long, Details: []*anypb.Any{{TypeUrl: "x", Value: bytes.Repeat([]byte{1}, 4<<10)}}})
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{
		"Grpc-Message": {grpcPercentEncode(long)},
		http.TrailerPrefix + "Grpc-Status-Details-Bin": {connect.EncodeBinaryHeader(bin)},
		"Shop-Hop":    {strings.Repeat("x", maxHeaderValueBytes+1)},
		"Grpc-Status": {"3"},
	}
	boundHeaders(h)
	if n := len(h.Get("Grpc-Message")); n == 0 || n > maxHeaderValueBytes {
		t.Errorf("grpc-message of %d bytes, want it cut", n)
	}
	details := h.Get(http.TrailerPrefix + "Grpc-Status-Details-Bin")
	if details == "" || len(details) > maxHeaderValueBytes {
		t.Fatalf("details of %d bytes, want them cut", len(details))
	}
	bin, err = connect.DecodeBinaryHeader(details)
	if err != nil {
		t.Fatal(err)
	}
	var st status.Status
	if err := proto.Unmarshal(bin, &st); err != nil || st.GetCode() != 3 || !strings.HasSuffix(st.GetMessage(), "…") {
		t.Errorf("details: got %v (%v), want code 3 and the message cut", &st, err)
	}
	if _, ok := h["Shop-Hop"]; ok {
		t.Error("an oversized header was kept")
	}
	if h.Get("Grpc-Status") != "3" {
		t.Error("a small header was changed")
	}
}

func TestRESTErrors(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		target      string
		transcoder  http.HandlerFunc
		wantStatus  int
		wantCode    connect.Code
		wantMessage string
	}{
		{
			name:   "the transcoder's own 500 is the request's fault",
			target: "/v1/things?evil=1",
			transcoder: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/")
				w.WriteHeader(500)
				io.WriteString(w, `{"code":13,"message":"unknown field \"evil\"","details":[]}`)
			},
			wantStatus: 400, wantCode: connect.CodeInvalidArgument, wantMessage: `unknown field "evil"`,
		},
		{
			name:   "plain-text 404",
			target: "/v1/nope",
			transcoder: func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "Not Found", 404)
			},
			wantStatus: 404, wantCode: connect.CodeNotFound, wantMessage: "no route matches GET /v1/nope",
		},
		{
			name:   "the service's own 503 passes",
			target: "/v1/things",
			transcoder: func(w http.ResponseWriter, r *http.Request) {
				markReached(r.Context())
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(503)
				io.WriteString(w, `{"code":14,"message":"payments is unavailable","details":[]}`)
			},
			wantStatus: 503, wantCode: connect.CodeUnavailable, wantMessage: "payments is unavailable",
		},
		{
			name:       "a path that is not UTF-8",
			target:     "/v1/things/%ff",
			transcoder: func(http.ResponseWriter, *http.Request) { t.Error("transcoder called") },
			wantStatus: 400, wantCode: connect.CodeInvalidArgument, wantMessage: "not valid UTF-8",
		},
	} {
		rec := httptest.NewRecorder()
		RESTErrors(tt.transcoder).ServeHTTP(rec, httptest.NewRequest("GET", tt.target, nil))
		var got struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("%s: body %q: %v", tt.name, rec.Body, err)
		}
		if rec.Code != tt.wantStatus || connect.Code(got.Code) != tt.wantCode || !strings.Contains(got.Message, tt.wantMessage) ||
			rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: got HTTP %d %s, %q (%s), want HTTP %d %v saying %q", tt.name, rec.Code, rec.Header().Get("Content-Type"),
				rec.Body, connect.Code(got.Code), tt.wantStatus, tt.wantCode, tt.wantMessage)
		}
	}
}
