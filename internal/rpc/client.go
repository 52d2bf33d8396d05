package rpc

import (
	"context"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
)

// NewH2CClient returns an HTTP client that speaks HTTP/2 cleartext with prior
// knowledge, as gRPC clients do: one long-lived, multiplexed connection per
// server, pinged when idle so a dead peer is noticed.
func NewH2CClient() *http.Client {
	dialer := &net.Dialer{Timeout: 3 * time.Second, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		DialContext:           dialer.DialContext,
		ResponseHeaderTimeout: 0, // unary calls carry deadlines; streams may wait
		IdleConnTimeout:       90 * time.Second,
		Protocols:             new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 10 * time.Second,
			PingTimeout:     5 * time.Second,
		},
	}
	t.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: t}
}

// TimeoutInterceptor gives every unary call a deadline of at most d: one that
// arrives without a deadline, or with a later one, gets d. On a client it
// bounds outgoing calls; on a handler, incoming ones.
func TimeoutInterceptor(d time.Duration) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if deadline, ok := ctx.Deadline(); !ok || time.Until(deadline) > d {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			return next(ctx, req)
		}
	}
}
