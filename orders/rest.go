package orders

import (
	"net/http"

	"connectrpc.com/vanguard"
	"github.com/connectshop/connectshop/internal/rpc"
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
// (400, 404, 409, 429, 503...); [rpc.RESTErrors] makes sure of it for the
// requests that vanguard refuses itself, which it would otherwise answer as
// 500 (an unknown query parameter, a body on a route without one, a string
// that is not UTF-8) or in plain text (404, 405, 415). RPC paths do not go
// through it: they reach the handler directly, without a transcoder's cost.
func rest(path string, handler http.Handler) http.Handler {
	transcoder, err := vanguard.NewTranscoder([]*vanguard.Service{vanguard.NewService(path, handler)})
	if err != nil {
		panic(err) // the routes are compiled in from orders.proto; every test server builds them
	}
	return rpc.RESTErrors(transcoder)
}
