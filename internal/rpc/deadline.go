package rpc

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// bodyTimeout is how long a client may take to send a request body.
const bodyTimeout = 15 * time.Second

// bodyDeadline bounds how long a request body may take to arrive, so a client
// that trickles bytes cannot hold a handler forever (net/http's ReadTimeout
// would do that too, but it stays armed for the whole connection and would cut
// server streams). The deadline is lifted once the body has been read to its
// end, which every unary call and every server stream does before it answers:
// a WatchOrders stream then lives as long as its client wants. Client and
// bidirectional streams keep their request body open, so the paths under
// exempt (e.g. server reflection, a bidirectional stream) get no deadline.
func bodyDeadline(next http.Handler, timeout time.Duration, exempt ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, prefix := range exempt {
			if strings.HasPrefix(r.URL.Path, prefix) {
				next.ServeHTTP(w, r)
				return
			}
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			next.ServeHTTP(w, r) // a writer without deadlines, e.g. in a unit test
			return
		}
		r.Body = &liftOnEOF{ReadCloser: r.Body, lift: func() { rc.SetReadDeadline(time.Time{}) }}
		next.ServeHTTP(w, r)
	})
}

type liftOnEOF struct {
	io.ReadCloser
	once sync.Once
	lift func()
}

func (b *liftOnEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.once.Do(b.lift)
	}
	return n, err
}
