package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrInvalidToken is wrapped by every error of Sessions.Verify and Check.
var ErrInvalidToken = errors.New("invalid token")

const (
	// leeway is the clock skew tolerated between the signer and the checker,
	// on expiry, issued-at and not-before.
	leeway = 30 * time.Second
	// maxTokenLen bounds the tokens parsed: ours are about 250 bytes, and a
	// longer one would only cost decoding before its signature fails.
	maxTokenLen = 4096
	// sessionParty is the issuer and audience of session tokens: orders
	// issues them, for itself.
	sessionParty = "connectshop-orders"
)

// newParser returns a parser that checks the HS256 signature (no other
// algorithm, so neither "none" nor a public-key algorithm confused with the
// HMAC key), the audience, a required expiry, issued-at not in the future
// (each time with leeway), and whatever more is given.
func newParser(audience string, now func() time.Time, more ...jwt.ParserOption) *jwt.Parser {
	return jwt.NewParser(append([]jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithStrictDecoding(), // one encoding per signature
		jwt.WithAudience(audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(leeway),
		jwt.WithTimeFunc(now),
	}, more...)...)
}

// parse verifies raw with p and key and returns its claims.
func parse(p *jwt.Parser, key []byte, raw string) (*jwt.RegisteredClaims, error) {
	if len(raw) > maxTokenLen {
		return nil, fmt.Errorf("token is %d bytes, over %d", len(raw), maxTokenLen)
	}
	var claims jwt.RegisteredClaims
	// key is a []byte, not a Key: the HMAC method accepts nothing else.
	if _, err := p.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
		return nil, err
	}
	if claims.Subject == "" {
		return nil, errors.New("token has no subject")
	}
	return &claims, nil
}

// sign returns claims as a token signed with HS256 and key.
func sign(key []byte, claims *jwt.RegisteredClaims) (string, error) {
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(key)
}

// Sessions issues and checks customer session tokens: JWTs signed with HS256
// whose subject is the customer id, with issuer and audience
// "connectshop-orders", an issued-at time and an expiry.
type Sessions struct {
	key    []byte
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser
}

// NewSessions returns Sessions that sign with key and issue tokens valid for
// ttl. It panics if key is shorter than 32 bytes or ttl is not positive.
func NewSessions(key Key, ttl time.Duration) *Sessions {
	return newSessions(key, ttl, time.Now)
}

func newSessions(key Key, ttl time.Duration, now func() time.Time) *Sessions {
	key.mustBeValid()
	if ttl <= 0 {
		panic(fmt.Sprintf("auth: session lifetime %v, want more than 0", ttl))
	}
	return &Sessions{
		key:    append([]byte(nil), key...), // the caller's slice may change
		ttl:    ttl,
		now:    now,
		parser: newParser(sessionParty, now, jwt.WithIssuer(sessionParty)),
	}
}

// Issue returns a session token for customerID and when it expires.
func (s *Sessions) Issue(customerID string) (token string, expires time.Time, err error) {
	if customerID == "" {
		return "", time.Time{}, errors.New("issue session: empty customer id")
	}
	now := s.now()
	claims := &jwt.RegisteredClaims{
		Issuer:    sessionParty,
		Subject:   customerID,
		Audience:  jwt.ClaimStrings{sessionParty},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(s.ttl)),
	}
	token, err = sign(s.key, claims)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("issue session: %w", err)
	}
	return token, claims.ExpiresAt.Time, nil
}

// Verify returns the customer id of a valid session token. Every error wraps
// ErrInvalidToken; its text, meant for logs, says why the token failed.
func (s *Sessions) Verify(token string) (customerID string, err error) {
	customerID, _, err = s.Check(token)
	return customerID, err
}

// Check is Verify that also says when the token expires, so a caller can
// renew a session before it lapses.
func (s *Sessions) Check(token string) (customerID string, expires time.Time, err error) {
	claims, err := parse(s.parser, s.key, token)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return claims.Subject, claims.ExpiresAt.Time, nil // parse required exp
}

// TTL returns how long the tokens Issue makes are valid.
func (s *Sessions) TTL() time.Duration { return s.ttl }
