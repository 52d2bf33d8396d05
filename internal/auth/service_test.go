package auth_test

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"github.com/connectshop/connectshop/internal/memhttp"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	serverStreamProcedure = "/auth.test.v1.Test/ServerStream"
	clientStreamProcedure = "/auth.test.v1.Test/ClientStream"
	missingMsg            = "payments serves orders only: missing service token"
	invalidMsg            = "payments serves orders only: invalid service token"
)

// payments answers Charge and two test streams with the caller that
// RequireService put in the context, and records the tokens it was sent.
type payments struct {
	paymentsv1connect.UnimplementedPaymentServiceHandler
	mu     sync.Mutex
	tokens []string
}

func (p *payments) caller(ctx context.Context, h http.Header) (string, error) {
	caller, ok := auth.ServiceFrom(ctx)
	if !ok {
		return "", connect.NewError(connect.CodeInternal, errors.New("no caller in the context"))
	}
	token, _ := auth.BearerToken(h)
	p.mu.Lock()
	p.tokens = append(p.tokens, token)
	p.mu.Unlock()
	return caller, nil
}

func (p *payments) Charge(ctx context.Context, req *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	caller, err := p.caller(ctx, req.Header())
	if err != nil {
		return nil, err
	}
	resp := connect.NewResponse(&paymentsv1.ChargeResponse{})
	resp.Header().Set("Test-Caller", caller)
	return resp, nil
}

func (p *payments) serverStream(ctx context.Context, req *connect.Request[emptypb.Empty], stream *connect.ServerStream[wrapperspb.StringValue]) error {
	caller, err := p.caller(ctx, req.Header())
	if err != nil {
		return err
	}
	return stream.Send(wrapperspb.String(caller))
}

func (p *payments) clientStream(ctx context.Context, stream *connect.ClientStream[emptypb.Empty]) (*connect.Response[wrapperspb.StringValue], error) {
	caller, err := p.caller(ctx, stream.RequestHeader())
	if err != nil {
		return nil, err
	}
	for stream.Receive() {
	}
	if err := stream.Err(); err != nil {
		return nil, err
	}
	return connect.NewResponse(wrapperspb.String(caller)), nil
}

func (p *payments) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.tokens)
}

// servePayments serves p in memory, with interceptors on every handler.
func servePayments(t testing.TB, p *payments, interceptors ...connect.Interceptor) *memhttp.Server {
	t.Helper()
	opts := connect.WithInterceptors(interceptors...)
	mux := http.NewServeMux()
	mux.Handle(paymentsv1connect.NewPaymentServiceHandler(p, opts))
	mux.Handle(serverStreamProcedure, connect.NewServerStreamHandler(serverStreamProcedure, p.serverStream, opts))
	mux.Handle(clientStreamProcedure, connect.NewClientStreamHandler(clientStreamProcedure, p.clientStream, opts))
	return memhttptest.NewServer(t, mux)
}

var protocols = []struct {
	name string
	opt  connect.ClientOption
}{
	{"grpc", connect.WithGRPC()},
	{"connect", connect.WithProtoJSON()}, // the Connect protocol, in JSON for variety
	{"grpcweb", connect.WithGRPCWeb()},
}

// callAll makes a unary call, a server stream and a client stream to srv and
// returns the caller each saw, or its error.
func callAll(ctx context.Context, srv *memhttp.Server, opts ...connect.ClientOption) map[string]result {
	results := make(map[string]result)
	httpClient := srv.Client()

	resp, err := paymentsv1connect.NewPaymentServiceClient(httpClient, srv.URL(), opts...).
		Charge(ctx, connect.NewRequest(&paymentsv1.ChargeRequest{}))
	if err == nil {
		results["unary"] = result{caller: resp.Header().Get("Test-Caller")}
	} else {
		results["unary"] = result{err: err}
	}

	ss, err := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](httpClient, srv.URL()+serverStreamProcedure, opts...).
		CallServerStream(ctx, connect.NewRequest(&emptypb.Empty{}))
	var r result
	if err == nil {
		for ss.Receive() {
			r.caller = ss.Msg().GetValue()
		}
		r.err = ss.Err()
		ss.Close()
	} else {
		r.err = err
	}
	results["server stream"] = r

	cs := connect.NewClient[emptypb.Empty, wrapperspb.StringValue](httpClient, srv.URL()+clientStreamProcedure, opts...).
		CallClientStream(ctx)
	cs.Send(&emptypb.Empty{}) // an error here is the server's answer, read below
	if resp, err := cs.CloseAndReceive(); err == nil {
		results["client stream"] = result{caller: resp.Msg.GetValue()}
	} else {
		results["client stream"] = result{err: err}
	}
	return results
}

type result struct {
	caller string
	err    error
}

// setHeader is a client interceptor that sends Authorization: value.
var setHeader = auth.AuthorizationHeader

func TestServiceAuthEndToEnd(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	session, _, err := auth.NewSessions(key, time.Hour).Issue("cus_42")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		credentials connect.Interceptor // nil for none
		wantMsg     string              // "" for success
	}{
		{"right key", auth.ServiceCredentials(key, auth.OrdersCaller, auth.PaymentsAudience), ""},
		{"no credentials", nil, missingMsg},
		{"wrong key", auth.ServiceCredentials(newKey(t), "orders", "payments"), invalidMsg},
		{"caller not allowed", auth.ServiceCredentials(key, "shop", "payments"), invalidMsg},
		{"wrong audience", auth.ServiceCredentials(key, "orders", "refunds"), invalidMsg},
		{"session token", setHeader("Bearer " + session), invalidMsg},
		{"basic auth", setHeader("Basic b3JkZXJzOnBheW1lbnRz"), missingMsg},
		{"empty bearer", setHeader("Bearer "), missingMsg},
	}
	p := &payments{}
	srv := servePayments(t, p, auth.RequireService(key, "payments", "orders"))
	for _, tt := range tests {
		for _, proto := range protocols {
			t.Run(tt.name+"/"+proto.name, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				opts := []connect.ClientOption{proto.opt}
				if tt.credentials != nil {
					opts = append(opts, connect.WithInterceptors(tt.credentials))
				}
				for kind, r := range callAll(ctx, srv, opts...) {
					if tt.wantMsg == "" {
						if r.err != nil || r.caller != "orders" {
							t.Errorf("%s: got caller %q, error %v; want orders", kind, r.caller, r.err)
						}
						continue
					}
					var cerr *connect.Error
					if !errors.As(r.err, &cerr) || cerr.Code() != connect.CodeUnauthenticated || cerr.Message() != tt.wantMsg {
						t.Errorf("%s: got caller %q, error %v; want unauthenticated: %s", kind, r.caller, r.err, tt.wantMsg)
					}
				}
			})
		}
	}
}

// One token serves every call until half its life is gone, on every protocol.
func TestServiceCredentialsReuseToken(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	p := &payments{}
	srv := servePayments(t, p, auth.RequireService(key, "payments", "orders"))
	creds := auth.ServiceCredentials(key, "orders", "payments")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 5 {
		for _, proto := range protocols {
			for kind, r := range callAll(ctx, srv, proto.opt, connect.WithInterceptors(creds)) {
				if r.err != nil {
					t.Fatalf("%s %s: %v", proto.name, kind, r.err)
				}
			}
		}
	}
	if got := auth.Mints(creds); got != 1 {
		t.Errorf("got %d tokens minted, want 1", got)
	}
	tokens := p.seen()
	if len(tokens) != 5*3*3 {
		t.Fatalf("handler saw %d calls, want %d", len(tokens), 5*3*3)
	}
	for i, tok := range tokens {
		if tok != tokens[0] {
			t.Fatalf("call %d carried another token than call 0, want the same", i)
		}
	}
	// A service token is no session, even with the session key.
	if got, err := auth.NewSessions(key, time.Hour).Verify(tokens[0]); err == nil {
		t.Errorf("service token as session: got customer %q, want an error", got)
	}
}

func TestServiceCredentialsRenew(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	clk := newClock()
	creds := auth.ServiceCredentialsAt(key, "orders", "payments", clk.Now)
	check := auth.RequireServiceAt(key, "payments", clk.Now, "orders")

	first := auth.BearerHeader(creds)
	clk.Advance(29 * time.Second)
	if got := auth.BearerHeader(creds); got != first {
		t.Errorf("at 29s: got a new token, want the first reused")
	}
	clk.Advance(2 * time.Second) // under half the lifetime left
	second := auth.BearerHeader(creds)
	if second == first {
		t.Errorf("at 31s: got the first token, want a new one")
	}
	if got := auth.Mints(creds); got != 2 {
		t.Errorf("got %d tokens minted, want 2", got)
	}
	for name, h := range map[string]string{"first": first, "second": second} {
		token, _ := auth.BearerToken(http.Header{"Authorization": {h}})
		if caller, err := auth.VerifyService(check, token); err != nil || caller != "orders" {
			t.Errorf("%s token at 31s: got %q, %v; want orders", name, caller, err)
		}
	}
}

// Calls that start together mint one token between them.
func TestServiceCredentialsConcurrent(t *testing.T) {
	t.Parallel()
	creds := auth.ServiceCredentials(newKey(t), "orders", "payments")
	headers := make([]string, 50)
	var wg sync.WaitGroup
	for i := range headers {
		wg.Go(func() { headers[i] = auth.BearerHeader(creds) })
	}
	wg.Wait()
	if got := auth.Mints(creds); got != 1 {
		t.Errorf("got %d tokens minted, want 1", got)
	}
	for i, h := range headers {
		if h != headers[0] {
			t.Fatalf("call %d got another token than call 0, want the same", i)
		}
	}
}

// ServiceCredentials installed on a handler by mistake does not vouch for
// the callers of that handler.
func TestServiceCredentialsOnHandlerDoNotVouch(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	srv := servePayments(t, &payments{},
		auth.ServiceCredentials(key, "orders", "payments"), // outermost: runs first
		auth.RequireService(key, "payments", "orders"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for kind, r := range callAll(ctx, srv, connect.WithGRPC()) {
		if connect.CodeOf(r.err) != connect.CodeUnauthenticated {
			t.Errorf("%s: got caller %q, error %v; want unauthenticated", kind, r.caller, r.err)
		}
	}
}

func TestRequireServiceVerify(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	hs256 := func(k auth.Key, c *jwt.RegisteredClaims) string {
		return signed(t, jwt.SigningMethodHS256, []byte(k), c)
	}
	service := func(caller, audience string, life time.Duration) *jwt.RegisteredClaims {
		c := claims(caller, caller, audience)
		c.ExpiresAt = jwt.NewNumericDate(t0.Add(life))
		return c
	}
	minted := auth.BearerHeader(auth.ServiceCredentialsAt(key, "orders", "payments", func() time.Time { return t0 }))[len("Bearer "):]
	noExp := service("orders", "payments", time.Minute)
	noExp.ExpiresAt = nil
	otherSubject := service("orders", "payments", time.Minute)
	otherSubject.Subject = "shop"
	session, _, err := auth.NewSessionsAt(key, time.Hour, func() time.Time { return t0 }).Issue("orders")
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token string
		at    time.Duration // after t0
		want  string        // the caller; "" for an error
	}{
		{"minted", minted, 0, "orders"},
		{"minted, other allowed caller", hs256(key, service("admin", "payments", time.Minute)), 0, "admin"},
		{"minted, expired within leeway", minted, 89 * time.Second, "orders"},
		{"minted, expired", minted, 91 * time.Second, ""},
		{"minted, from the future", minted, -31 * time.Second, ""},
		{"wrong key", hs256(newKey(t), service("orders", "payments", time.Minute)), 0, ""},
		{"caller not allowed", hs256(key, service("shop", "payments", time.Minute)), 0, ""},
		{"issuer is not subject", hs256(key, otherSubject), 0, ""},
		{"wrong audience", hs256(key, service("orders", "orders", time.Minute)), 0, ""},
		{"no expiry", hs256(key, noExp), 0, ""},
		{"session token", session, 0, ""},
		{"HS512", signed(t, jwt.SigningMethodHS512, []byte(key), service("orders", "payments", time.Minute)), 0, ""},
		{"alg none", unsigned(t, service("orders", "payments", time.Minute)), 0, ""},
		{"garbage", "orders", 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			check := auth.RequireServiceAt(key, "payments", func() time.Time { return t0.Add(tt.at) }, "orders", "admin")
			got, err := auth.VerifyService(check, tt.token)
			if got != tt.want || (err == nil) != (tt.want != "") {
				t.Errorf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		values []string // Authorization headers
		want   string
		wantOK bool
	}{
		{"bearer", []string{"Bearer abc.def.ghi"}, "abc.def.ghi", true},
		{"lower case", []string{"bearer abc"}, "abc", true},
		{"upper case", []string{"BEARER abc"}, "abc", true},
		{"spaces", []string{"Bearer    abc"}, "abc", true},
		{"none", nil, "", false},
		{"empty", []string{""}, "", false},
		{"scheme only", []string{"Bearer"}, "", false},
		{"scheme and space", []string{"Bearer "}, "", false},
		{"scheme and spaces", []string{"Bearer    "}, "", false},
		{"basic", []string{"Basic abc"}, "", false},
		{"no space", []string{"Bearerabc"}, "", false},
		{"tab", []string{"Bearer\tabc"}, "", false},
		{"two tokens", []string{"Bearer abc def"}, "", false},
		{"trailing space", []string{"Bearer abc "}, "", false},
		{"two headers", []string{"Bearer abc", "Bearer def"}, "", false},
		{"leading space", []string{" Bearer abc"}, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := http.Header{}
			for _, v := range tt.values {
				h.Add("Authorization", v)
			}
			got, ok := auth.BearerToken(h)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("got %q, %v; want %q, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestServiceFromEmptyContext(t *testing.T) {
	t.Parallel()
	if got, ok := auth.ServiceFrom(context.Background()); ok || got != "" {
		t.Errorf("got %q, %v; want nothing", got, ok)
	}
}

// BenchmarkRequireService measures the handler-side check of one unary call:
// header parse, HS256 verification, claims, context.
func BenchmarkRequireService(b *testing.B) {
	key := newKey(b)
	header := auth.BearerHeader(auth.ServiceCredentials(key, "orders", "payments"))
	next := connect.UnaryFunc(func(ctx context.Context, _ connect.AnyRequest) (connect.AnyResponse, error) {
		if _, ok := auth.ServiceFrom(ctx); !ok {
			return nil, errors.New("no caller")
		}
		return nil, nil
	})
	call := auth.RequireService(key, "payments", "orders").WrapUnary(next)
	req := connect.NewRequest(&paymentsv1.ChargeRequest{})
	req.Header().Set("Authorization", header)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := call(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServiceCredentials measures the client side of one call: the
// Authorization value of a reused token.
func BenchmarkServiceCredentials(b *testing.B) {
	creds := auth.ServiceCredentials(newKey(b), "orders", "payments")
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		h.Set("Authorization", auth.BearerHeader(creds))
	}
}

// BenchmarkCharge puts the check in proportion: a whole Charge call in
// memory, gRPC over h2c, without and with service auth.
func BenchmarkCharge(b *testing.B) {
	key := newKey(b)
	for _, bb := range []struct {
		name   string
		server []connect.Interceptor
		client []connect.Interceptor
	}{
		{"no auth", nil, nil},
		{"service auth", []connect.Interceptor{auth.RequireService(key, "payments", "orders")}, []connect.Interceptor{auth.ServiceCredentials(key, "orders", "payments")}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			p := &noRecord{}
			opts := connect.WithInterceptors(bb.server...)
			mux := http.NewServeMux()
			mux.Handle(paymentsv1connect.NewPaymentServiceHandler(p, opts))
			srv := memhttptest.NewServer(b, mux)
			client := paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(), connect.WithGRPC(), connect.WithInterceptors(bb.client...))
			ctx := context.Background()
			req := connect.NewRequest(&paymentsv1.ChargeRequest{})
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Charge(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

type noRecord struct {
	paymentsv1connect.UnimplementedPaymentServiceHandler
}

func (noRecord) Charge(context.Context, *connect.Request[paymentsv1.ChargeRequest]) (*connect.Response[paymentsv1.ChargeResponse], error) {
	return connect.NewResponse(&paymentsv1.ChargeResponse{}), nil
}

// A token verified once is remembered until it expires, and refused after,
// as if checked again.
func TestRequireServiceRemembersUntilExpiry(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	var at atomic.Int64 // seconds after t0
	check := auth.RequireServiceAt(key, "payments", func() time.Time { return t0.Add(time.Duration(at.Load()) * time.Second) }, "orders")
	token := auth.BearerHeader(auth.ServiceCredentialsAt(key, "orders", "payments", func() time.Time { return t0 }))[len("Bearer "):]
	for _, step := range []struct {
		at   int64
		want string
	}{{0, "orders"}, {10, "orders"}, {59, "orders"}, {91, ""}} { // 91: past expiry and leeway
		at.Store(step.at)
		if got, err := auth.VerifyService(check, token); got != step.want || (err == nil) != (step.want != "") {
			t.Errorf("at t0+%ds: got %q, %v; want %q", step.at, got, err, step.want)
		}
	}
	if got, err := auth.VerifyService(check, token+"x"); err == nil {
		t.Errorf("tampered token after the real one was remembered: got %q, want an error", got)
	}
}
