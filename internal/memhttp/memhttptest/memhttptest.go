// Package memhttptest starts [memhttp] servers that tests clean up.
package memhttptest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/connectshop/connectshop/internal/memhttp"
)

// NewServer serves h in memory until the test ends.
func NewServer(t testing.TB, h http.Handler) *memhttp.Server {
	t.Helper()
	return Serve(t, &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second})
}

// Serve runs srv in memory until the test ends.
func Serve(t testing.TB, srv *http.Server) *memhttp.Server {
	t.Helper()
	s := memhttp.Serve(srv)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("memhttp shutdown: %v", err)
		}
	})
	return s
}
