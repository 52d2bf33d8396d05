package orders

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/gen/orders/v1/ordersv1connect"
	"github.com/connectshop/connectshop/internal/auth"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// sessionCookie is the cookie in which the page keeps its session token. It
// is HttpOnly (scripts cannot read it) and SameSite=Strict (browsers send it
// only from the shop's own pages); cross-origin requests that could change
// something are refused whatever they carry (see [crossOriginProtection]).
const sessionCookie = "shop_session"

const defaultSessionTTL = 24 * time.Hour

// publicProcedures need no session: they show nothing of any customer.
var publicProcedures = map[string]bool{
	ordersv1connect.OrderServiceCreateSessionProcedure: true,
	ordersv1connect.OrderServiceListProductsProcedure:  true,
	ordersv1connect.OrderServiceGetStatsProcedure:      true,
}

// errNoSession is what a call without a valid session gets.
var errNoSession = connect.NewError(connect.CodeUnauthenticated,
	errors.New("no valid session: get a token with POST /v1/sessions (OrderService.CreateSession) and send it as Authorization: Bearer TOKEN"))

type customerKey struct{}

// customerFrom returns the customer whose session the call carries; the
// authenticate interceptor has refused any call without one.
func customerFrom(ctx context.Context) string {
	id, _ := ctx.Value(customerKey{}).(string)
	return id
}

// sessionToken returns the session token of a request: the bearer token, or
// else the page's cookie.
func sessionToken(h http.Header) (string, bool) {
	if token, ok := auth.BearerToken(h); ok {
		return token, true
	}
	c, err := (&http.Request{Header: h}).Cookie(sessionCookie)
	if err != nil || c.Value == "" {
		return "", false
	}
	return c.Value, true
}

// customer returns the customer of a valid session token in h.
func (s *Service) customer(h http.Header) (string, bool) {
	token, ok := sessionToken(h)
	if !ok {
		return "", false
	}
	id, err := s.sessions.Verify(token)
	return id, err == nil
}

// authenticate is the interceptor that puts the caller's customer id in the
// context of every call, and refuses calls to non-public procedures without
// a valid session on every protocol (REST routes arrive here transcoded).
func (s *Service) authenticate() connect.Interceptor { return authInterceptor{s} }

type authInterceptor struct{ s *Service }

func (a authInterceptor) check(ctx context.Context, procedure string, h http.Header) (context.Context, error) {
	id, ok := a.s.customer(h)
	if !ok {
		if publicProcedures[procedure] {
			return ctx, nil
		}
		return ctx, errNoSession
	}
	return context.WithValue(ctx, customerKey{}, id), nil
}

func (a authInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		ctx, err := a.check(ctx, req.Spec().Procedure, req.Header())
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (a authInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		ctx, err := a.check(ctx, conn.Spec().Procedure, conn.RequestHeader())
		if err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

func (authInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

// CreateSession implements [ordersv1connect.OrderServiceHandler].
//
// Only a bearer token renews a session. The page's cookie does not: a script
// on the page (say, through an injected script) must not be able to trade
// the HttpOnly cookie for a token it could read and use elsewhere.
func (s *Service) CreateSession(ctx context.Context, req *connect.Request[ordersv1.CreateSessionRequest]) (*connect.Response[ordersv1.CreateSessionResponse], error) {
	id := ""
	if token, ok := auth.BearerToken(req.Header()); ok {
		id, _ = s.sessions.Verify(token)
	}
	if id == "" {
		id = newCustomerID()
	}
	token, expires, err := s.sessions.Issue(id)
	if err != nil {
		return nil, s.toConnect(ctx, err)
	}
	return connect.NewResponse(&ordersv1.CreateSessionResponse{
		Token:      token,
		CustomerId: id,
		ExpiresAt:  timestamppb.New(expires),
	}), nil
}

func newCustomerID() string { return "cus_" + rand.Text() }

// withPageSession serves the page, giving the browser a session cookie when
// it has none that is valid for at least half its lifetime more, so that the
// page's calls are authenticated without any code of its own. A returning
// browser keeps its customer.
func (s *Service) withPageSession(page http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			s.refreshCookie(w, r)
		}
		page.ServeHTTP(w, r)
	})
}

func (s *Service) refreshCookie(w http.ResponseWriter, r *http.Request) {
	id := ""
	if c, err := r.Cookie(sessionCookie); err == nil {
		if cid, expires, err := s.sessions.Check(c.Value); err == nil {
			if time.Until(expires) > s.sessions.TTL()/2 {
				return
			}
			id = cid
		}
	}
	if id == "" {
		id = newCustomerID()
	}
	token, expires, err := s.sessions.Issue(id)
	if err != nil {
		s.logger.ErrorContext(r.Context(), "issue session", "err", err)
		return
	}
	http.SetCookie(w, &http.Cookie{
		Name:     sessionCookie,
		Value:    token,
		Path:     "/",
		Expires:  expires,
		HttpOnly: true,
		SameSite: http.SameSiteStrictMode,
		// Secure where the browser reached us over TLS (directly, or through
		// an ingress that terminates it); http://localhost stays usable.
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https",
	})
}

// crossOriginProtection refuses requests that could change something (not
// GET, HEAD or OPTIONS) when a browser says they come from another origin,
// by Sec-Fetch-Site or Origin: a form on another site cannot cancel an order
// with the page's cookie, whatever its content type. Clients that are not
// browsers send neither header and pass; trusted are the origins allowed by
// CORS, which authenticate with bearer tokens. Connect GET requests reach
// only NO_SIDE_EFFECTS procedures, and another origin cannot read their
// answers.
func crossOriginProtection(h http.Handler, trusted []string) (http.Handler, error) {
	p := http.NewCrossOriginProtection()
	for _, origin := range trusted {
		if err := p.AddTrustedOrigin(origin); err != nil {
			return nil, err
		}
	}
	return p.Handler(h), nil
}
