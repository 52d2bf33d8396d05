package web_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/connectshop/connectshop/web"
)

func TestHandlerServesPageWithRevalidation(t *testing.T) {
	t.Parallel()
	h := web.Handler()
	for path, wantType := range map[string]string{
		"/":        "text/html",
		"/app.js":  "text/javascript",
		"/app.css": "text/css",
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		etag := rec.Header().Get("ETag")
		if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), wantType) || etag == "" ||
			rec.Header().Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: got %d, %q, ETag %q, Cache-Control %q", path, rec.Code, rec.Header().Get("Content-Type"), etag, rec.Header().Get("Cache-Control"))
			continue
		}
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("If-None-Match", etag)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: got %d, want 304", path, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/nope.js", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope.js: got %d, want 404", rec.Code)
	}
}
