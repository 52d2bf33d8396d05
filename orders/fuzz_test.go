package orders_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/connectshop/connectshop/orders"
)

// fuzzMethods and fuzzContentTypes are what FuzzREST picks from by index.
var (
	fuzzMethods      = []string{"GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"}
	fuzzContentTypes = []string{"", "application/json", "application/json; charset=utf-8", "text/plain", "application/proto", "application/x-www-form-urlencoded"}
)

// FuzzREST sends any method, path under /v1/, query, content type and body
// to the orders server's whole handler (middleware, REST transcoding,
// Connect handler, store, payments), in memory, with a customer's session,
// and checks that the answer is never a server error, that every error is
// google.rpc.Status JSON, and that it is small.
func FuzzREST(f *testing.F) {
	handler, token := newFuzzOrders(f)
	seeds := []struct {
		method      uint8
		path, query string
		contentType uint8
		body        string
	}{
		{0, "products", "", 0, ""},
		{0, "orders", "page_size=2", 0, ""},
		{0, "orders", "evil=1", 0, ""},
		{0, "orders", "page_token=%ff", 0, ""},
		{0, "orders/%ff%fe", "", 0, ""},
		{0, "orders/ord_1", "", 1, `{"id":"x"}`},
		{1, "orders/ord_1:cancel", "", 1, `{"x":1}`},
		{1, "orders", "", 1, `{"items":[{"productId":"gopher-plush","quantity":1}],"paymentToken":"tok_visa"}`},
		{1, "orders", "payment_token=tok_visa", 1, `{"items":[`},
		{1, "orders", "", 3, `a=b`},
		{1, "sessions", "", 1, `{}`},
		{2, "orders", "", 0, ""},
		{0, "stats", "", 0, ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.query, s.contentType, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, method uint8, path, query string, contentType uint8, body []byte) {
		target := "/v1/" + path
		if query != "" {
			target += "?" + query
		}
		// What net/http would not deliver to a handler: a request line with
		// spaces or control characters, a target it cannot parse.
		if strings.ContainsFunc(target, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		req := &http.Request{
			Method:     fuzzMethods[int(method)%len(fuzzMethods)],
			URL:        u,
			RequestURI: target,
			Proto:      "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:        http.Header{"Authorization": {"Bearer " + token}},
			Host:          "shop",
			Body:          http.NoBody,
			ContentLength: int64(len(body)),
		}
		if len(body) > 0 {
			req.Body = httpBody(body)
		}
		if ct := fuzzContentTypes[int(contentType)%len(fuzzContentTypes)]; ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req.WithContext(t.Context()))

		if rec.Code >= 500 {
			t.Fatalf("%s %s (%s, %q): HTTP %d %.300s", req.Method, target, req.Header.Get("Content-Type"), body, rec.Code, rec.Body)
		}
		if n := headerBytes(rec.Header()); n > maxAnswerHeaderBytes {
			t.Fatalf("%s %s: %d bytes of headers", req.Method, target, n)
		}
		if rec.Code >= 400 && req.Method != "HEAD" {
			var st struct {
				Code    *int    `json:"code"`
				Message *string `json:"message"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Code == nil || st.Message == nil {
				t.Fatalf("%s %s: HTTP %d with %q, not google.rpc.Status JSON", req.Method, target, rec.Code, rec.Body)
			}
			if rec.Body.Len() > maxAnswerBodyBytes {
				t.Fatalf("%s %s: HTTP %d with %d bytes of body", req.Method, target, rec.Code, rec.Body.Len())
			}
		}
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func httpBody(b []byte) readCloser { return readCloser{bytes.NewReader(b)} }

// newFuzzOrders assembles the shop as newShop does, without a rate limit on
// orders, and returns orders' HTTP handler and a customer's session token.
func newFuzzOrders(f *testing.F) (http.Handler, string) {
	f.Helper()
	s := newShop(f, shopConfig{limits: orders.Limits{OrderRate: -1}})
	return s.ordersServer.HTTPServer().Handler, s.token
}
