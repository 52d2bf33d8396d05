package orders

import (
	"net/http"

	"connectrpc.com/vanguard"
)

// idempotencyKeyHeader is the HTTP header REST clients send their
// idempotency key in; CreateOrder reads it when the request has none.
const idempotencyKeyHeader = "Idempotency-Key"

// rest serves the OrderService's REST routes by transcoding them, with
// vanguard, into calls of handler, the Connect handler mounted at path. The
// routes are the google.api.http options of the RPCs in orders.proto, which
// vanguard reads from the service's descriptor: each route is one RPC, with
// path variables, query parameters and the JSON body mapped onto its request
// fields. Errors are google.rpc.Status JSON with the HTTP status of their code
// (400, 404, 409, 429, 503...). RPC paths do not go through it: they reach the
// handler directly, without a transcoder's cost.
func rest(path string, handler http.Handler) http.Handler {
	transcoder, err := vanguard.NewTranscoder([]*vanguard.Service{vanguard.NewService(path, handler)})
	if err != nil {
		panic(err) // the routes are compiled in from orders.proto; every test server builds them
	}
	return transcoder
}
