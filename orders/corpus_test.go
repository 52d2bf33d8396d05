package orders_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/rpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The adversarial corpus: malformed, hostile and oversized requests, sent as
// raw HTTP on every protocol the orders server speaks. Each must get the
// client's error with a precise code, never a server error (5xx, or a gRPC
// code that maps to one), and a small answer.

// Wire protocols of the corpus.
const (
	pConnectJSON  = "connect+json"   // Connect unary, application/json
	pConnectProto = "connect+proto"  // Connect unary, application/proto
	pConnectGET   = "connect-get"    // Connect unary GET
	pConnectSJSON = "connect-stream" // Connect streaming, application/connect+json
	pGRPC         = "grpc"           // application/grpc, HTTP/2
	pGRPCJSON     = "grpc+json"      // application/grpc+json, HTTP/2
	pGRPCWeb      = "grpc-web"       // application/grpc-web, HTTP/1.1
	pREST         = "rest"           // vanguard routes, HTTP/1.1
)

const (
	procCreate = "/orders.v1.OrderService/CreateOrder"
	procList   = "/orders.v1.OrderService/ListOrders"
	procWatch  = "/orders.v1.OrderService/WatchOrders"
)

// noCode is the want of a case answered with a bare HTTP status (415, 405),
// as the protocol asks, without an error body.
const noCode connect.Code = 999

type corpusCase struct {
	name     string
	protocol string
	method   string // POST unless set
	path     string // a procedure, or a REST path with its query
	header   http.Header
	body     []byte // for gRPC, gRPC-Web and Connect streaming: the message, enveloped unless raw
	raw      bool   // body is the whole enveloped body, malformed on purpose
	rawHTTP  string // a whole HTTP/1.1 request, written as is ("TOKEN" is replaced)

	wantStatus int          // HTTP status; 0: 200 for gRPC and gRPC-Web, else from wantCode
	wantCode   connect.Code // 0: OK
	// specFiveXX marks an answer in the 5xx range that a protocol
	// specification requires: Connect and gRPC both ask for UNIMPLEMENTED
	// (501) for a compression the server does not support.
	specFiveXX bool
}

func envelope(flags byte, msg []byte) []byte {
	b := make([]byte, 5, 5+len(msg))
	b[0] = flags
	binary.BigEndian.PutUint32(b[1:], uint32(len(msg)))
	return append(b, msg...)
}

func gzipped(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func mustProto(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// manyLines is a CreateOrder of n lines of the same product: n-1 violations.
func manyLines(n int) *ordersv1.CreateOrderRequest {
	msg := &ordersv1.CreateOrderRequest{PaymentToken: "tok_visa"}
	for range n {
		msg.Items = append(msg.Items, &ordersv1.CartItem{ProductId: "gopher-plush", Quantity: 1})
	}
	return msg
}

// bigProductID is a CreateOrder whose one product id is 1 MB (under the 1 MiB
// message limit), which the error quotes.
func bigProductID() *ordersv1.CreateOrderRequest {
	return &ordersv1.CreateOrderRequest{PaymentToken: "tok_visa", Items: []*ordersv1.CartItem{{ProductId: strings.Repeat("x", 1_000_000), Quantity: 1}}}
}

func corpus(t testing.TB) []corpusCase {
	var cases []corpusCase
	add := func(c corpusCase) { cases = append(cases, c) }
	h := func(kv ...string) http.Header {
		hdr := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			hdr.Set(kv[i], kv[i+1])
		}
		return hdr
	}
	ia, re, ok := connect.CodeInvalidArgument, connect.CodeResourceExhausted, connect.Code(0)

	// Message contents, in JSON, for every JSON protocol.
	jsonProtocols := []string{pConnectJSON, pGRPCJSON, pREST}
	pathOf := func(protocol, proc string) string {
		if protocol != pREST {
			return proc
		}
		return map[string]string{procCreate: "/v1/orders", procList: "/v1/orders?page_size=5"}[proc]
	}
	bomb := gzipped(t, bytes.Repeat([]byte(" "), 64<<20)) // 64 KiB that inflate to 64 MiB
	hugeNumber := `{"items":[{"productId":"gopher-plush","quantity":` + strings.Repeat("9", 900_000) + `}],"paymentToken":"tok_visa"}`
	for _, p := range jsonProtocols {
		for _, c := range []struct {
			name, proc, body string
			want             connect.Code
		}{
			{"malformed JSON", procCreate, `{"items":[`, ia},
			{"not an object", procCreate, `[1,2]`, ia},
			{"wrong type", procCreate, `{"items":"gopher-plush","paymentToken":"tok_visa"}`, ia},
			{"wrong type in list", procCreate, `{"items":[{"productId":7,"quantity":"one"}],"paymentToken":"tok_visa"}`, ia},
			{"number out of int32", procCreate, `{"items":[{"productId":"gopher-plush","quantity":99999999999999999999}],"paymentToken":"tok_visa"}`, ia},
			{"900 KB number", procCreate, hugeNumber, ia},
			{"negative quantity", procCreate, `{"items":[{"productId":"gopher-plush","quantity":-1}],"paymentToken":"tok_visa"}`, ia},
			{"fractional quantity", procCreate, `{"items":[{"productId":"gopher-plush","quantity":1.5}],"paymentToken":"tok_visa"}`, ia},
			{"invalid UTF-8 in a string", procCreate, "{\"items\":[{\"productId\":\"\xff\xfe\",\"quantity\":1}],\"paymentToken\":\"tok_visa\"}", ia},
			{"NUL in a string", procCreate, `{"items":[{"productId":"gopher\u0000plush","quantity":1}],"paymentToken":"tok_visa"}`, ia},
			{"unknown product", procCreate, `{"items":[{"productId":"nope","quantity":1}],"paymentToken":"tok_visa"}`, ia},
			{"unknown payment token", procCreate, `{"items":[{"productId":"gopher-plush","quantity":1}],"paymentToken":"tok_nope"}`, ia},
			{"bad idempotency key", procCreate, `{"items":[{"productId":"gopher-plush","quantity":1}],"paymentToken":"tok_visa","idempotencyKey":"a b"}`, ia},
			{"empty object", procCreate, `{}`, ia},
			{"bad page token", procList, `{"pageToken":"!!not-a-token"}`, ia},
			{"forged page token", procList, `{"pageToken":"c2VxOi0x"}`, ia}, // "seq:-1"
			{"page size out of range", procList, `{"pageSize":1000}`, ia},
			// Unknown fields are ignored, as protojson does for forward
			// compatibility (a newer client, an older server).
			{"unknown field", procList, `{"pageSize":5,"evil":{"nested":[1,2,3]}}`, ok},
		} {
			path := pathOf(p, c.proc)
			if p == pREST && c.proc == procList {
				continue // ListOrders is a GET route on REST: no body; its query cases are below
			}
			add(corpusCase{name: c.name, protocol: p, path: path, body: []byte(c.body), wantCode: c.want})
		}
		add(corpusCase{name: "oversize message", protocol: p, path: pathOf(p, procCreate),
			body: []byte(`{"paymentToken":"` + strings.Repeat("x", rpc.MaxMessageBytes) + `"}`), wantCode: re})
		enc, compressed := "Content-Encoding", func(b []byte) ([]byte, bool) { return b, false }
		if p == pGRPCJSON {
			enc, compressed = "Grpc-Encoding", func(b []byte) ([]byte, bool) { return envelope(1, b), true }
		}
		b, raw := compressed(bomb)
		add(corpusCase{name: "gzip bomb", protocol: p, path: pathOf(p, procCreate), header: h(enc, "gzip"), body: b, raw: raw, wantCode: re})
		b, raw = compressed([]byte("not gzip at all"))
		add(corpusCase{name: "corrupt gzip", protocol: p, path: pathOf(p, procCreate), header: h(enc, "gzip"), body: b, raw: raw, wantCode: ia})
		if p == pREST {
			add(corpusCase{name: "unsupported compression", protocol: p, path: pathOf(p, procCreate), header: h(enc, "br"), body: []byte(`{}`), wantStatus: 415, wantCode: ia})
		} else {
			add(corpusCase{name: "unsupported compression", protocol: p, path: pathOf(p, procCreate), header: h(enc, "br"), body: []byte(`{}`), wantCode: connect.CodeUnimplemented, specFiveXX: true})
		}
	}

	// Message contents, in binary, for every binary protocol.
	binProtocols := []string{pConnectProto, pGRPC, pGRPCWeb}
	// A string field (product_id) holding invalid UTF-8.
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte{0xff, 0xfe}))
	unknownField := protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 7)
	for _, p := range binProtocols {
		for _, c := range []struct {
			name, proc string
			body       []byte
			want       connect.Code
		}{
			{"garbage bytes", procCreate, []byte{0xff, 0xff, 0xff, 0xff}, ia},
			{"truncated field", procCreate, []byte{0x0a, 0x10, 0x0a}, ia},
			{"invalid UTF-8 in a string", procCreate, badUTF8, ia},
			{"quantity MaxInt32", procCreate, mustProto(t, &ordersv1.CreateOrderRequest{Items: []*ordersv1.CartItem{{ProductId: "gopher-plush", Quantity: 1<<31 - 1}}, PaymentToken: "tok_visa"}), ia},
			{"empty message", procCreate, nil, ia},
			{"10,000 lines", procCreate, mustProto(t, manyLines(10_000)), ia},
			{"1 MB product id", procCreate, mustProto(t, bigProductID()), ia},
			{"bad page token", procList, mustProto(t, &ordersv1.ListOrdersRequest{PageToken: "\x00\x01"}), ia},
			{"unknown field", procList, unknownField, ok},
		} {
			add(corpusCase{name: c.name, protocol: p, path: c.proc, body: c.body, wantCode: c.want})
		}
		oversize := mustProto(t, &ordersv1.CreateOrderRequest{PaymentToken: strings.Repeat("x", rpc.MaxMessageBytes)})
		add(corpusCase{name: "oversize message", protocol: p, path: procCreate, body: oversize, wantCode: re})
		if p == pConnectProto {
			add(corpusCase{name: "gzip bomb", protocol: p, path: procCreate, header: h("Content-Encoding", "gzip"), body: bomb, wantCode: re})
			continue
		}
		add(corpusCase{name: "gzip bomb", protocol: p, path: procCreate, header: h("Grpc-Encoding", "gzip"), body: envelope(1, bomb), raw: true, wantCode: re})
		add(corpusCase{name: "corrupt gzip", protocol: p, path: procCreate, header: h("Grpc-Encoding", "gzip"), body: envelope(1, []byte("not gzip")), raw: true, wantCode: ia})
		add(corpusCase{name: "unsupported compression", protocol: p, path: procCreate, header: h("Grpc-Encoding", "br"), body: envelope(1, []byte{1}), raw: true,
			wantCode: connect.CodeUnimplemented, specFiveXX: true})
	}

	// Framing of enveloped bodies: gRPC, gRPC-Web and Connect streaming, on a
	// unary RPC and a server stream (both take exactly one message).
	list := mustProto(t, &ordersv1.ListOrdersRequest{PageSize: 5})
	for _, p := range []string{pGRPC, pGRPCWeb, pConnectSJSON} {
		procs := []string{procList, procWatch}
		one, two := list, list
		if p == pConnectSJSON {
			procs = []string{procWatch}
			one, two = []byte(`{}`), []byte(`{}`)
		}
		for _, proc := range procs {
			if proc == procWatch && p != pConnectSJSON {
				one, two = nil, nil // WatchOrdersRequest is empty
			}
			for _, c := range []struct {
				name string
				body []byte
				want connect.Code
			}{
				{"empty body (no message)", nil, ia},
				{"two messages", append(envelope(0, one), envelope(0, two)...), ia},
				{"message then garbage", append(envelope(0, one), 0xde, 0xad), ia},
				{"truncated prefix", []byte{0, 0, 0}, ia},
				{"truncated message", envelope(0, []byte{0x08, 0x05, 0x12, 0x04, 'a'})[:9], ia},
				{"length prefix past the body", append([]byte{0, 0, 0, 0x10, 0}, one...), ia},
				{"length prefix 4 GiB", append([]byte{0, 0xff, 0xff, 0xff, 0xff}, one...), re},
				{"compressed flag, no encoding", envelope(1, one), ia},
				{"end-stream flag in a request", envelope(0x02, one), ia},
				{"trailer flag in a request", envelope(0x80, one), ia},
			} {
				add(corpusCase{name: c.name, protocol: p, path: proc, body: c.body, raw: true, wantCode: c.want})
			}
		}
	}

	// Content types and methods.
	add(corpusCase{name: "text/plain", protocol: pConnectJSON, path: procCreate, header: h("Content-Type", "text/plain"), body: []byte(`{}`), wantStatus: 415, wantCode: noCode})
	add(corpusCase{name: "form encoding (curl's default)", protocol: pConnectJSON, path: procCreate, header: h("Content-Type", "application/x-www-form-urlencoded"), body: []byte(`a=b`), wantStatus: 415, wantCode: noCode})
	add(corpusCase{name: "codec xml", protocol: pGRPC, path: procCreate, header: h("Content-Type", "application/grpc+xml"), body: nil, wantStatus: 415, wantCode: noCode})
	add(corpusCase{name: "GET", protocol: pGRPC, method: "GET", path: procCreate, wantStatus: 405, wantCode: noCode})
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "application/proto", "multipart/form-data; boundary=x"} {
		add(corpusCase{name: "content type " + ct, protocol: pREST, path: "/v1/orders", header: h("Content-Type", ct), body: []byte(`{}`), wantStatus: 415, wantCode: ia})
	}

	// Connect GET.
	for _, c := range []struct {
		name, query string
		status      int
		want        connect.Code
	}{
		{"base64 that is not", "encoding=proto&base64=1&message=!!!", 0, ia},
		{"base64 JSON that is not", "encoding=json&base64=1&message=%7B%7D", 0, ia},
		{"no message", "encoding=json", 0, ia},
		{"malformed JSON", "encoding=json&message=%7B", 0, ia},
		{"invalid UTF-8", "encoding=json&message=%7B%22pageToken%22:%22%ff%22%7D", 0, ia},
		{"bad page token", "encoding=json&message=%7B%22pageToken%22:%22x%22%7D", 0, ia},
		{"unknown codec", "encoding=xml&message=x", 415, noCode},
		{"corrupt compression", "encoding=json&message=x&compression=gzip", 0, ia},
		{"base64 proto", "encoding=proto&base64=1&message=CAU", 0, ok},
	} {
		add(corpusCase{name: c.name, protocol: pConnectGET, method: "GET", path: procList + "?" + c.query, wantStatus: c.status, wantCode: c.want})
	}
	add(corpusCase{name: "GET of a call with side effects", protocol: pConnectGET, method: "GET", path: procCreate + "?encoding=json&message=%7B%7D", wantStatus: 405, wantCode: noCode})

	// REST: paths, queries and bodies that vanguard cannot transcode.
	for _, c := range []struct {
		name, method, path, body string
		status                   int
		want                     connect.Code
	}{
		{"unknown query parameter", "GET", "/v1/orders?evil=1", "", 0, ia},
		{"unknown nested query parameter", "GET", "/v1/orders?page_size.x=1", "", 0, ia},
		{"invalid UTF-8 in a path variable", "GET", "/v1/orders/%ff%fe", "", 0, ia},
		{"invalid UTF-8 in a query value", "GET", "/v1/orders?page_token=%ff", "", 0, ia},
		{"invalid UTF-8 in a query name", "GET", "/v1/orders?%ff=1", "", 0, ia},
		{"malformed percent-encoding in the query", "GET", "/v1/orders?page_token=%zz", "", 0, ia},
		{"page_size not a number", "GET", "/v1/orders?page_size=ten", "", 0, ia},
		{"page_size past int32", "GET", "/v1/orders?page_size=99999999999999999999", "", 0, ia},
		{"page_size out of range", "GET", "/v1/orders?page_size=1000", "", 0, ia},
		{"bad page token", "GET", "/v1/orders?page_token=%21%21", "", 0, ia},
		{"body on a route without one", "POST", "/v1/orders/ord_x:cancel", `{"reason":"x"}`, 0, ia},
		{"body on a GET route", "GET", "/v1/orders/ord_x", `{"id":"y"}`, 0, ia},
		{"malformed JSON body with a query", "POST", "/v1/orders?payment_token=tok_visa", `{"items":[`, 0, ia},
		{"wrong type with a query", "POST", "/v1/orders?payment_token=tok_visa", `{"items":7}`, 0, ia},
		{"unknown order", "GET", "/v1/orders/ord_nope", "", 404, connect.CodeNotFound},
		{"30 KB order id", "GET", "/v1/orders/" + strings.Repeat("a", 30_000), "", 404, connect.CodeNotFound},
		{"empty order id", "GET", "/v1/orders//", "", 0, ia},
		{"unknown route", "GET", "/v1/nope", "", 404, connect.CodeNotFound},
		{"wrong method", "DELETE", "/v1/orders", "", 405, ia},
		{"wrong method on a custom verb", "GET", "/v1/orders/ord_x:cancel", "", 405, ia},
		{"unknown custom verb", "POST", "/v1/orders/ord_x:explode", "", 404, connect.CodeNotFound},
	} {
		add(corpusCase{name: c.name, protocol: pREST, method: c.method, path: c.path, body: []byte(c.body), wantStatus: c.status, wantCode: c.want})
	}

	// Malformed HTTP/1.1 bodies, below any protocol: chunked encoding that
	// is not.
	chunked := func(path, ct string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: shop\r\nAuthorization: Bearer TOKEN\r\nContent-Type: " + ct +
			"\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
	}
	add(corpusCase{name: "malformed chunked body", protocol: pConnectJSON, path: procCreate, rawHTTP: chunked(procCreate, "application/json"), wantCode: ia})
	add(corpusCase{name: "malformed chunked body", protocol: pGRPCWeb, path: procCreate, rawHTTP: chunked(procCreate, "application/grpc-web"), wantCode: ia})
	add(corpusCase{name: "malformed chunked body", protocol: pREST, path: "/v1/orders", rawHTTP: chunked("/v1/orders", "application/json"), wantCode: ia})
	return cases
}

// outcome is what a call got: its HTTP status, its code (0 for OK,
// noCode for a bare HTTP answer), its message, and the sizes of what came
// back.
type outcome struct {
	status      int
	code        connect.Code
	message     string
	headerBytes int // headers and trailers, names and values
	bodyBytes   int
}

// send sends c and reads the answer in c's protocol.
func (s *shop) send(t *testing.T, c corpusCase, token string) outcome {
	t.Helper()
	if c.rawHTTP != "" {
		return s.sendRaw(t, c, token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	method := c.method
	if method == "" {
		method = http.MethodPost
	}
	body := c.body
	header := http.Header{"Authorization": {"Bearer " + token}}
	client := s.orders.HTTP1Client()
	switch c.protocol {
	case pConnectJSON, pREST:
		header.Set("Content-Type", "application/json")
	case pConnectProto:
		header.Set("Content-Type", "application/proto")
	case pConnectSJSON:
		header.Set("Content-Type", "application/connect+json")
		client = s.orders.Client()
	case pGRPC:
		header.Set("Content-Type", "application/grpc")
		header.Set("Te", "trailers")
		client = s.orders.Client()
	case pGRPCJSON:
		header.Set("Content-Type", "application/grpc+json")
		header.Set("Te", "trailers")
		client = s.orders.Client()
	case pGRPCWeb:
		header.Set("Content-Type", "application/grpc-web")
	}
	if (c.protocol == pGRPC || c.protocol == pGRPCJSON || c.protocol == pGRPCWeb || c.protocol == pConnectSJSON) && !c.raw {
		body = envelope(0, body)
	}
	if method == http.MethodGet && len(body) == 0 {
		header.Del("Content-Type")
	}
	for k, v := range c.header {
		header[k] = v
	}
	req, err := http.NewRequestWithContext(ctx, method, s.orders.URL()+c.path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	req.Header = header
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, c.path, err)
	}
	defer resp.Body.Close()
	return readOutcome(t, c.protocol, resp)
}

// sendRaw writes c.rawHTTP on a new connection and reads the answer.
func (s *shop) sendRaw(t *testing.T, c corpusCase, token string) outcome {
	t.Helper()
	conn, err := s.orders.Listener().DialContext(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, strings.Replace(c.rawHTTP, "TOKEN", token, 1)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return readOutcome(t, c.protocol, resp)
}

func readOutcome(t *testing.T, protocol string, resp *http.Response) outcome {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	o := outcome{status: resp.StatusCode, headerBytes: headerBytes(resp.Header) + headerBytes(resp.Trailer), bodyBytes: len(body)}
	if resp.StatusCode == http.StatusUnsupportedMediaType || resp.StatusCode == http.StatusMethodNotAllowed {
		if protocol != pREST {
			o.code = noCode
			return o
		}
	}
	switch protocol {
	case pConnectJSON, pConnectProto, pConnectGET:
		if resp.StatusCode == http.StatusOK {
			return o
		}
		var e struct {
			Code    connect.Code `json:"code"`
			Message string       `json:"message"`
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("HTTP %d, error body %.200q: %v", resp.StatusCode, body, err)
		}
		o.code, o.message = e.Code, e.Message
	case pREST:
		if resp.StatusCode == http.StatusOK {
			return o
		}
		var e struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("HTTP %d with Content-Type %q, want application/json", resp.StatusCode, ct)
		}
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("HTTP %d, error body %.200q is not google.rpc.Status JSON: %v", resp.StatusCode, body, err)
		}
		o.code, o.message = connect.Code(e.Code), e.Message
	case pConnectSJSON:
		for env := range envelopes(t, body) {
			if env.flags&0x02 == 0 {
				continue
			}
			var end struct {
				Error *struct {
					Code    connect.Code `json:"code"`
					Message string       `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(env.data, &end); err != nil {
				t.Fatalf("end of stream %.200q: %v", env.data, err)
			}
			if end.Error != nil {
				o.code, o.message = end.Error.Code, end.Error.Message
			}
		}
	case pGRPC, pGRPCJSON, pGRPCWeb:
		status, message := resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
		if status == "" {
			status, message = resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
		}
		if status == "" && protocol == pGRPCWeb {
			for env := range envelopes(t, body) {
				if env.flags&0x80 == 0 {
					continue
				}
				for line := range strings.SplitSeq(string(env.data), "\r\n") {
					k, v, _ := strings.Cut(line, ":")
					switch strings.ToLower(strings.TrimSpace(k)) {
					case "grpc-status":
						status = strings.TrimSpace(v)
					case "grpc-message":
						message = strings.TrimSpace(v)
					}
				}
			}
		}
		n, err := strconv.Atoi(status)
		if err != nil {
			t.Fatalf("HTTP %d, grpc-status %q: no gRPC status", resp.StatusCode, status)
		}
		o.code, o.message = connect.Code(n), message
	}
	return o
}

type env struct {
	flags byte
	data  []byte
}

func envelopes(t *testing.T, body []byte) func(func(env) bool) {
	return func(yield func(env) bool) {
		for len(body) > 0 {
			if len(body) < 5 {
				t.Fatalf("response body ends inside an envelope prefix")
			}
			n := int(binary.BigEndian.Uint32(body[1:5]))
			if len(body) < 5+n {
				t.Fatalf("response body ends inside an envelope")
			}
			if !yield(env{body[0], body[5 : 5+n]}) {
				return
			}
			body = body[5+n:]
		}
	}
}

func headerBytes(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v)
		}
	}
	return n
}

// httpStatusOf is the HTTP status of a code, as Connect maps it: what
// "server error" means for a gRPC answer, which is always HTTP 200.
func httpStatusOf(code connect.Code) int {
	switch code {
	case 0:
		return 200
	case connect.CodeCanceled:
		return 499
	case connect.CodeInvalidArgument, connect.CodeFailedPrecondition, connect.CodeOutOfRange:
		return 400
	case connect.CodeDeadlineExceeded:
		return 504
	case connect.CodeNotFound:
		return 404
	case connect.CodeAlreadyExists, connect.CodeAborted:
		return 409
	case connect.CodePermissionDenied:
		return 403
	case connect.CodeResourceExhausted:
		return 429
	case connect.CodeUnimplemented:
		return 501
	case connect.CodeUnavailable:
		return 503
	case connect.CodeUnauthenticated:
		return 401
	}
	return 500 // unknown, internal, data_loss
}

// Bounds on every answer of the corpus.
const (
	maxAnswerHeaderBytes = 16 << 10
	maxAnswerBodyBytes   = 16 << 10
)

func codeName(c connect.Code) string {
	switch c {
	case 0:
		return "ok"
	case noCode:
		return "-"
	}
	return c.String()
}

func TestAdversarialCorpus(t *testing.T) {
	t.Parallel()
	s := newShop(t, shopConfig{})
	cases := corpus(t)
	type row struct{ protocol, code string }
	var (
		summary = make(map[row]int)
		protos  []string
		results = make([]outcome, len(cases))
		tokens  []string
	)
	// Each call spends one of its customer's CreateOrder tokens: a customer
	// for every 10 cases stays under the rate limit.
	for range len(cases)/10 + 1 {
		tokens = append(tokens, s.newCustomer(t))
	}
	t.Run("cases", func(t *testing.T) {
		for i, c := range cases {
			token := tokens[i/10]
			t.Run(c.protocol+"/"+c.name, func(t *testing.T) {
				t.Parallel()
				o := s.send(t, c, token)
				results[i] = o
				wantStatus := c.wantStatus
				if wantStatus == 0 {
					wantStatus = httpStatusOf(c.wantCode)
					if c.protocol == pGRPC || c.protocol == pGRPCJSON || c.protocol == pGRPCWeb || c.protocol == pConnectSJSON {
						wantStatus = http.StatusOK
					}
				}
				if o.status != wantStatus || o.code != c.wantCode {
					t.Errorf("got HTTP %d %s (%.300q), want HTTP %d %s", o.status, codeName(o.code), o.message, wantStatus, codeName(c.wantCode))
				}
				if o.headerBytes > maxAnswerHeaderBytes || o.bodyBytes > maxAnswerBodyBytes {
					t.Errorf("answer of %d bytes of headers and %d of body, want at most %d and %d", o.headerBytes, o.bodyBytes, maxAnswerHeaderBytes, maxAnswerBodyBytes)
				}
				if o.code != 0 && o.code != noCode && o.message == "" {
					t.Errorf("code %s without a message", o.code)
				}
				t.Logf("HTTP %d %s, %d bytes of headers, %d of body: %.200s", o.status, codeName(o.code), o.headerBytes, o.bodyBytes, o.message)
			})
		}
	})
	for i, c := range cases {
		o := results[i]
		if !slices.Contains(protos, c.protocol) {
			protos = append(protos, c.protocol)
		}
		summary[row{c.protocol, codeName(o.code)}]++
		if (o.status >= 500 || (o.code != noCode && httpStatusOf(o.code) >= 500)) && !c.specFiveXX {
			t.Errorf("%s %s: a server error (HTTP %d, %s) for a bad request", c.protocol, c.name, o.status, codeName(o.code))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d cases:\n", len(cases))
	for _, p := range protos {
		fmt.Fprintf(&b, "  %-15s", p)
		for _, code := range []string{"ok", "invalid_argument", "resource_exhausted", "not_found", "unimplemented", "-"} {
			if n := summary[row{p, code}]; n > 0 {
				fmt.Fprintf(&b, " %s=%d", code, n)
			}
		}
		b.WriteString("\n")
	}
	t.Log(b.String())
}
