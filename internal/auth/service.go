package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
)

// The shop's service names, as caller and audience of service tokens.
const (
	OrdersCaller     = "orders"
	PaymentsAudience = "payments"
)

// serviceTokenLifetime is how long a service token is valid. Short, because
// it is sent on every call and nothing can revoke it; the caller mints a new
// one once less than half of it remains.
const serviceTokenLifetime = 60 * time.Second

// ServiceCredentials returns a client interceptor with which caller (such as
// "orders") proves to audience (such as "payments") that it holds the shared
// service key: every unary call and stream carries "Authorization: Bearer
// <token>", a service token (HS256, issuer and subject caller, audience
// audience, valid for 60 s). A token is reused until half its life is gone,
// so a call costs a header, not a signature. It panics if key is shorter
// than 32 bytes or a name is empty.
func ServiceCredentials(key Key, caller, audience string) connect.Interceptor {
	return newCredentials(key, caller, audience, time.Now)
}

// ServiceAuthorization returns what ServiceCredentials sends: a function
// that gives the "Authorization" header value of caller's calls to
// audience, the token reused until half its life is gone. It is for clients
// that are not Connect clients, such as grpc-go's per-RPC credentials.
func ServiceAuthorization(key Key, caller, audience string) func() string {
	return newCredentials(key, caller, audience, time.Now).header
}

func newCredentials(key Key, caller, audience string, now func() time.Time) *credentials {
	key.mustBeValid()
	if caller == "" || audience == "" {
		panic("auth: service credentials need a caller and an audience")
	}
	return &credentials{key: append([]byte(nil), key...), caller: caller, audience: audience, now: now}
}

type credentials struct {
	key              []byte
	caller, audience string
	now              func() time.Time

	current atomic.Pointer[bearer] // nil until the first call
	mu      sync.Mutex             // held while minting, so concurrent calls mint once
	mints   int                    // guarded by mu; for tests
}

// bearer is a minted token as sent, and when to replace it.
type bearer struct {
	header  string // "Bearer <token>"
	renewAt time.Time
}

// header returns the Authorization header value, minting a token if there is
// none or the current one is past half its life.
func (c *credentials) header() string {
	now := c.now()
	if b := c.current.Load(); b != nil && now.Before(b.renewAt) {
		return b.header
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.current.Load(); b != nil && now.Before(b.renewAt) {
		return b.header // minted while we waited
	}
	token, err := sign(c.key, &jwt.RegisteredClaims{
		Issuer:    c.caller,
		Subject:   c.caller,
		Audience:  jwt.ClaimStrings{c.audience},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(serviceTokenLifetime)),
	})
	if err != nil {
		// HS256 with a []byte key fails only if SHA-256 is missing or the
		// claims do not marshal; neither can happen here.
		panic("auth: sign service token: " + err.Error())
	}
	b := &bearer{header: "Bearer " + token, renewAt: now.Add(serviceTokenLifetime / 2)}
	c.current.Store(b)
	c.mints++
	return b.header
}

func (c *credentials) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		// Only on outgoing calls: on a handler it would vouch for whoever called.
		if req.Spec().IsClient {
			req.Header().Set("Authorization", c.header())
		}
		return next(ctx, req)
	}
}

func (c *credentials) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", c.header()) // sent with the first message
		return conn
	}
}

func (c *credentials) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// RequireService returns a handler interceptor that lets through only unary
// calls and streams carrying a valid service token (see ServiceCredentials)
// for audience from one of callers; others fail with CodeUnauthenticated and a
// message that says whether the token was missing or invalid, never why. The
// handler finds the caller's name with ServiceFrom. It panics if key is
// shorter than 32 bytes, audience is empty or callers is.
func RequireService(key Key, audience string, callers ...string) connect.Interceptor {
	return newRequirement(key, audience, time.Now, callers...)
}

func newRequirement(key Key, audience string, now func() time.Time, callers ...string) *requirement {
	key.mustBeValid()
	if audience == "" || len(callers) == 0 || slices.Contains(callers, "") {
		panic("auth: RequireService needs an audience and callers")
	}
	prefix := audience + " serves " + strings.Join(callers, ", ") + " only: "
	r := &requirement{
		key:     append([]byte(nil), key...),
		callers: slices.Clone(callers),
		parser:  newParser(audience, now),
		now:     now,
		missing: prefix + "missing service token",
		invalid: prefix + "invalid service token",
	}
	r.verified.Store(&verifiedTokens{})
	return r
}

type requirement struct {
	key              []byte
	callers          []string
	parser           *jwt.Parser
	now              func() time.Time
	missing, invalid string // error messages

	// verified remembers the last tokens that passed, until they expire: a
	// caller sends the same token for 30 s (see ServiceCredentials), and
	// checking its signature and claims again costs ~10 µs a call, about
	// a tenth of a whole Charge in memory.
	verified atomic.Pointer[verifiedTokens]
}

// maxVerified bounds the tokens remembered: one or two per orders instance
// (each mints a new one every 30 s).
const maxVerified = 16

// verifiedTokens is an immutable set of tokens that passed, with the caller
// each names and when it expires.
type verifiedTokens struct {
	tokens []verifiedToken
}

type verifiedToken struct {
	token, caller string
	expires       time.Time
}

// verify returns the caller named by a valid service token.
func (r *requirement) verify(token string) (string, error) {
	now := r.now()
	known := r.verified.Load()
	for _, v := range known.tokens {
		if v.token == token && now.Before(v.expires) {
			return v.caller, nil
		}
	}
	claims, err := parse(r.parser, r.key, token)
	if err != nil {
		return "", err
	}
	if claims.Issuer != claims.Subject || !slices.Contains(r.callers, claims.Issuer) {
		return "", fmt.Errorf("caller %q (subject %q) is not allowed", claims.Issuer, claims.Subject)
	}
	if claims.ExpiresAt != nil {
		r.remember(known, verifiedToken{token: token, caller: claims.Issuer, expires: claims.ExpiresAt.Time}, now)
	}
	return claims.Issuer, nil
}

// remember adds v to the tokens known, dropping expired ones and the
// oldest beyond maxVerified. If another call changed the set meanwhile, v is
// simply not remembered: the next call verifies it again.
func (r *requirement) remember(known *verifiedTokens, v verifiedToken, now time.Time) {
	next := &verifiedTokens{tokens: []verifiedToken{v}}
	for _, old := range known.tokens {
		if len(next.tokens) < maxVerified && now.Before(old.expires) {
			next.tokens = append(next.tokens, old)
		}
	}
	r.verified.CompareAndSwap(known, next)
}

// check returns ctx with the caller of a call with header h, or the error to
// answer with.
func (r *requirement) check(ctx context.Context, h http.Header) (context.Context, error) {
	token, ok := BearerToken(h)
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New(r.missing))
	}
	caller, err := r.verify(token)
	if err != nil {
		return nil, connect.NewError(connect.CodeUnauthenticated, errors.New(r.invalid))
	}
	return context.WithValue(ctx, serviceKey{}, caller), nil
}

func (r *requirement) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := r.check(ctx, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (r *requirement) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := r.check(ctx, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

func (r *requirement) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

type serviceKey struct{}

// ServiceFrom returns the name of the service that made the call being
// handled, as verified by RequireService.
func ServiceFrom(ctx context.Context) (string, bool) {
	name, ok := ctx.Value(serviceKey{}).(string)
	return name, ok
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header:
// the scheme in any case, then one or more spaces, then a token without
// spaces. A request with several Authorization headers has none.
func BearerToken(h http.Header) (string, bool) {
	values := h.Values("Authorization")
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimLeft(token, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// Bearer returns a client interceptor that sends token as "Authorization:
// Bearer TOKEN" with every call, unary or streaming: how a client of orders
// sends its session token.
func Bearer(token string) connect.Interceptor { return bearerToken("Bearer " + token) }

// bearerToken is the whole Authorization header value a client sends.
type bearerToken string

func (b bearerToken) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if req.Spec().IsClient {
			req.Header().Set("Authorization", string(b))
		}
		return next(ctx, req)
	}
}

func (b bearerToken) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", string(b))
		return conn
	}
}

func (bearerToken) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}
