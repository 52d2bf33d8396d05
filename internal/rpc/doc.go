// Package rpc is the plumbing the shop's Connect servers and clients share:
// HTTP server and h2c client setup, handler options (limits, compression,
// timeouts, logging), health and reflection, CORS, what a server observed of
// each call (its hop), and errors with standard details.
package rpc
