// Package bench measures what each protocol costs on the same handler, the
// whole CreateOrder flow, and a grpc-go baseline, side by side in one run.
// It is its own module so that the shop does not depend on grpc-go.
//
//	cd bench && go test -run '^$' -bench . -benchmem
//
// scripts/bench runs it with the load generator and writes the table that
// the README shows.
package bench
