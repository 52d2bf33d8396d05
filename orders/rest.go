package orders

import (
	"net/http"

	"connectrpc.com/vanguard"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"google.golang.org/genproto/googleapis/api/annotations"
)

// IdempotencyKeyHeader is the HTTP header REST clients send their
// idempotency key in; CreateOrder reads it when the request has none.
const IdempotencyKeyHeader = "Idempotency-Key"

// restRules are the resource-shaped REST routes of the OrderService, declared
// here rather than as google.api.http options in orders.proto because
// googleapis' annotation protos cannot be fetched into this build. They say
// the same thing: each route is one RPC, with path variables, query
// parameters and the JSON body mapped onto its request fields.
var restRules = []*annotations.HttpRule{
	get("ListProducts", "/v1/products"),
	post("CreateOrder", "/v1/orders", "*"),
	get("ListOrders", "/v1/orders"), // ?page_size=10&page_token=...
	get("GetOrder", "/v1/orders/{id}"),
	post("CancelOrder", "/v1/orders/{id}:cancel", ""),
	get("GetStats", "/v1/stats"),
}

func get(method, path string) *annotations.HttpRule {
	return &annotations.HttpRule{Selector: selector(method), Pattern: &annotations.HttpRule_Get{Get: path}}
}

func post(method, path, body string) *annotations.HttpRule {
	return &annotations.HttpRule{Selector: selector(method), Pattern: &annotations.HttpRule_Post{Post: path}, Body: body}
}

func selector(method string) string { return ordersv1connect.OrderServiceName + "." + method }

// rest serves the OrderService's REST routes by transcoding them, with
// vanguard, into calls of handler, the Connect handler mounted at path.
// Errors are google.rpc.Status JSON with the HTTP status of their code (400,
// 404, 409, 429, 503...). RPC paths do not go through it: they reach the
// handler directly, without a transcoder's cost.
func rest(path string, handler http.Handler) http.Handler {
	transcoder, err := vanguard.NewTranscoder(
		[]*vanguard.Service{vanguard.NewService(path, handler)},
		vanguard.WithRules(restRules...),
	)
	if err != nil {
		panic(err) // the rules are fixed at build time; every test server builds them
	}
	return transcoder
}
