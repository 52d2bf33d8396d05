package memhttp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/connectshop/connectshop/internal/memhttp"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
)

func echoProto(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	io.WriteString(w, r.Proto+" "+string(body))
}

func TestClientsSpeakTheirProtocol(t *testing.T) {
	t.Parallel()
	srv := memhttptest.NewServer(t, http.HandlerFunc(echoProto))
	tests := []struct {
		name   string
		client *http.Client
		want   string
	}{
		{"h2c", srv.Client(), "HTTP/2.0 ping"},
		{"http1", srv.HTTP1Client(), "HTTP/1.1 ping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Several requests, some concurrent, to exercise connection reuse.
			errs := make(chan error, 8)
			for range 8 {
				go func() {
					resp, err := tt.client.Post(srv.URL()+"/", "text/plain", strings.NewReader("ping"))
					if err != nil {
						errs <- err
						return
					}
					defer resp.Body.Close()
					body, err := io.ReadAll(resp.Body)
					if err == nil && string(body) != tt.want {
						err = errors.New("got body " + string(body) + ", want " + tt.want)
					}
					errs <- err
				}()
			}
			for range 8 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestDialAfterCloseFails(t *testing.T) {
	t.Parallel()
	srv := memhttp.New(http.HandlerFunc(echoProto))
	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Close: %v", err)
	}
	_, err := srv.Client().Get(srv.URL())
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("got error %v, want one wrapping net.ErrClosed", err)
	}
}

func TestDialHonoursContext(t *testing.T) {
	t.Parallel()
	lis := memhttp.NewListener() // nobody accepts
	defer lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := lis.DialContext(ctx, "tcp", "x")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got error %v, want context.DeadlineExceeded", err)
	}
}

func TestShutdownWaitsForInFlightRequest(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	srv := memhttp.New(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "done")
	}))
	got := make(chan string, 1)
	go func() {
		resp, err := srv.Client().Get(srv.URL())
		if err != nil {
			got <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- string(b)
	}()
	<-started
	shutdown := make(chan error, 1)
	go func() { shutdown <- srv.Shutdown(context.Background()) }()
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v before the request finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	if body := <-got; body != "done" {
		t.Fatalf("got %q, want %q", body, "done")
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
