package rpc

import (
	"net/http"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"
)

// withCORS lets pages on the allowed origins call h with the headers that
// Connect, gRPC-Web and gRPC use. With no origins h is returned unchanged:
// the demo page is served same-origin and needs no CORS.
func withCORS(h http.Handler, allowedOrigins []string) http.Handler {
	if len(allowedOrigins) == 0 {
		return h
	}
	return cors.New(cors.Options{
		AllowedOrigins: allowedOrigins,
		AllowedMethods: connectcors.AllowedMethods(),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Idempotency-Key"),
		ExposedHeaders: append(connectcors.ExposedHeaders(), HopHeader),
		MaxAge:         7200,
	}).Handler(h)
}
