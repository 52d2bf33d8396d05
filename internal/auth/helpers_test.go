package auth_test

import (
	"encoding/base64"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/connectshop/connectshop/internal/auth"
	"github.com/golang-jwt/jwt/v5"
)

// t0 is when the tests' clocks start: a whole second, as token times are.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// clock is a settable clock for code under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: t0} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

func newKey(t testing.TB) auth.Key {
	t.Helper()
	k, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// signed returns claims signed with method and key, as an attacker or a
// misconfigured peer might.
func signed(t testing.TB, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// segment returns v as a JWT segment: JSON in unpadded base64url.
func segment(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// unsigned returns an "alg": "none" token carrying claims.
func unsigned(t testing.TB, claims any) string {
	t.Helper()
	return segment(t, map[string]string{"alg": "none", "typ": "JWT"}) + "." + segment(t, claims) + "."
}

// claims returns registered claims valid at t0 for 1h.
func claims(issuer, subject, audience string) *jwt.RegisteredClaims {
	return &jwt.RegisteredClaims{
		Issuer:    issuer,
		Subject:   subject,
		Audience:  jwt.ClaimStrings{audience},
		IssuedAt:  jwt.NewNumericDate(t0),
		ExpiresAt: jwt.NewNumericDate(t0.Add(time.Hour)),
	}
}
