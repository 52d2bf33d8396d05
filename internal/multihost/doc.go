// Package multihost runs the shop as it runs on several machines, on one:
// two orders hosts and three (later four) payments hosts, each a network
// namespace of its own joined to a bridge, sharing one PostgreSQL, and
// orders finding payments through a real DNS server (dnsmasq) that answers
// with every payments host, as a Kubernetes headless Service does.
//
// It holds only its test, which needs root, iproute2, dnsmasq and
// $TEST_DATABASE_URL; it skips without them, except under CI=true, where it
// fails (.ci/run provides them).
//
//	TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test?sslmode=disable go test -v ./internal/multihost/
package multihost
