package rpc

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
)

func TestBodyDeadline(t *testing.T) {
	t.Parallel()
	const timeout = 200 * time.Millisecond
	// The handler reads the whole body, then keeps answering for longer than
	// the timeout, as a server stream does.
	h := bodyDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, "read: "+err.Error(), http.StatusRequestTimeout)
			return
		}
		w.WriteHeader(http.StatusOK)
		for range 4 {
			time.Sleep(timeout / 2)
			io.WriteString(w, "tick ")
			http.NewResponseController(w).Flush()
		}
	}), timeout)
	srv := memhttptest.Serve(t, NewHTTPServer(h, slog.New(slog.DiscardHandler)))

	for name, client := range map[string]*http.Client{"h2c": srv.Client(), "http1": srv.HTTP1Client()} {
		t.Run(name+"/complete body, long answer", func(t *testing.T) {
			t.Parallel()
			resp, err := client.Post(srv.URL(), "text/plain", strings.NewReader("hello"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != "tick tick tick tick " {
				t.Fatalf("got %d %q (err %v), want 4 ticks", resp.StatusCode, body, err)
			}
		})
		t.Run(name+"/stalled body", func(t *testing.T) {
			t.Parallel()
			pr, pw := io.Pipe()
			defer pw.Close()
			go io.WriteString(pw, "partial") // and then nothing more
			start := time.Now()
			resp, err := client.Post(srv.URL(), "text/plain", pr)
			if err == nil {
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusRequestTimeout {
					t.Fatalf("got status %d, want the read to fail", resp.StatusCode)
				}
			}
			if d := time.Since(start); d > timeout+2*time.Second {
				t.Fatalf("stalled body held the handler %v, want about %v", d, timeout)
			}
		})
	}
}
