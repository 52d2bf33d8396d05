package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/connectshop/connectshop/internal/auth"
	"github.com/golang-jwt/jwt/v5"
)

const sessionParty = "connectshop-orders"

func TestSessionsRoundTrip(t *testing.T) {
	t.Parallel()
	const ttl = time.Hour
	tests := []struct {
		name  string
		after time.Duration // from issue to verify
	}{
		{"at once", 0},
		{"just before expiry", ttl - time.Second},
		{"just expired, within leeway", ttl + 29*time.Second},
		// The signer's clock may run ahead of the checker's.
		{"issued in the future, within leeway", -29 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			s := auth.NewSessionsAt(newKey(t), ttl, clk.Now)
			token, expires, err := s.Issue("cus_42")
			if err != nil {
				t.Fatal(err)
			}
			if !expires.Equal(t0.Add(ttl)) {
				t.Errorf("got expiry %v, want %v", expires, t0.Add(ttl))
			}
			clk.Advance(tt.after)
			got, err := s.Verify(token)
			if err != nil || got != "cus_42" {
				t.Errorf("Verify: got %q, %v; want cus_42", got, err)
			}
			got, gotExpires, err := s.Check(token)
			if err != nil || got != "cus_42" || !gotExpires.Equal(expires) {
				t.Errorf("Check: got %q, %v, %v; want cus_42, %v", got, gotExpires, err, expires)
			}
		})
	}
}

func TestSessionsTTL(t *testing.T) {
	t.Parallel()
	if got := auth.NewSessions(newKey(t), 90*time.Minute).TTL(); got != 90*time.Minute {
		t.Errorf("got %v, want 1h30m", got)
	}
}

func TestSessionsIssueRejectsEmptyCustomer(t *testing.T) {
	t.Parallel()
	if token, _, err := auth.NewSessions(newKey(t), time.Hour).Issue(""); err == nil {
		t.Errorf("got token %q, want an error", token)
	}
}

func TestSessionsVerifyRejects(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	clk := newClock()
	s := auth.NewSessionsAt(key, time.Hour, clk.Now) // the clock stays at t0
	issue := func(s *auth.Sessions) string {
		token, _, err := s.Issue("cus_42")
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	good := issue(s)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")

	// A payload changed after signing, signature kept.
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	tampered := parts[0] + "." +
		base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "cus_42", "cus_43", 1))) +
		"." + parts[2]

	// Algorithm confusion: an RS256 header over an HMAC signature with our key.
	rsHeader := segment(t, map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + parts[1]
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(rsHeader))
	confused := rsHeader + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))

	noExp := claims(sessionParty, "cus_42", sessionParty)
	noExp.ExpiresAt = nil

	sigInvalid, malformed := jwt.ErrTokenSignatureInvalid, jwt.ErrTokenMalformed
	tests := []struct {
		name  string
		token string
		at    time.Time // when verified; zero for t0
		want  error     // why, besides ErrInvalidToken; nil for reasons of our own
	}{
		{"expired", good, t0.Add(time.Hour + 31*time.Second), jwt.ErrTokenExpired},
		{"issued in the future", issue(auth.NewSessionsAt(key, time.Hour, func() time.Time { return t0.Add(31 * time.Second) })), t0, jwt.ErrTokenUsedBeforeIssued},
		{"wrong key", issue(auth.NewSessionsAt(newKey(t), time.Hour, clk.Now)), t0, sigInvalid},
		{"alg none", unsigned(t, claims(sessionParty, "cus_42", sessionParty)), t0, sigInvalid},
		{"alg none, our key as signature", unsigned(t, claims(sessionParty, "cus_42", sessionParty)) + base64.RawURLEncoding.EncodeToString(key), t0, sigInvalid},
		{"HS512 with the right key", signed(t, jwt.SigningMethodHS512, []byte(key), claims(sessionParty, "cus_42", sessionParty)), t0, sigInvalid},
		{"HS384 with the right key", signed(t, jwt.SigningMethodHS384, []byte(key), claims(sessionParty, "cus_42", sessionParty)), t0, sigInvalid},
		{"ES256", signed(t, jwt.SigningMethodES256, ecKey, claims(sessionParty, "cus_42", sessionParty)), t0, sigInvalid},
		{"RS256 header, HMAC signature", confused, t0, sigInvalid},
		{"wrong issuer", signed(t, jwt.SigningMethodHS256, []byte(key), claims("orders", "cus_42", sessionParty)), t0, jwt.ErrTokenInvalidIssuer},
		{"wrong audience", signed(t, jwt.SigningMethodHS256, []byte(key), claims(sessionParty, "cus_42", "payments")), t0, jwt.ErrTokenInvalidAudience},
		{"no audience", signed(t, jwt.SigningMethodHS256, []byte(key), claims(sessionParty, "cus_42", "")), t0, jwt.ErrTokenRequiredClaimMissing},
		{"service token", signed(t, jwt.SigningMethodHS256, []byte(key), claims("orders", "orders", "payments")), t0, jwt.ErrTokenInvalidAudience},
		{"no expiry", signed(t, jwt.SigningMethodHS256, []byte(key), noExp), t0, jwt.ErrTokenRequiredClaimMissing},
		{"empty subject", signed(t, jwt.SigningMethodHS256, []byte(key), claims(sessionParty, "", sessionParty)), t0, nil},
		{"tampered payload", tampered, t0, sigInvalid},
		{"signature cut", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-2], t0, malformed},
		{"signature extended", good + "AA", t0, malformed},
		{"no signature", parts[0] + "." + parts[1] + ".", t0, sigInvalid},
		{"two segments", parts[0] + "." + parts[1], t0, malformed},
		{"four segments", good + ".AAAA", t0, malformed},
		{"empty", "", t0, malformed},
		{"dots", "..", t0, malformed},
		{"garbage", "not a token at all", t0, malformed},
		{"garbage segments", "a.b.c", t0, malformed},
		{"bearer prefix kept", "Bearer " + good, t0, malformed},
		{"huge", strings.Repeat("A", 5000) + "." + parts[1] + "." + parts[2], t0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			at := tt.at
			if at.IsZero() {
				at = t0
			}
			s := auth.NewSessionsAt(key, time.Hour, func() time.Time { return at })
			got, err := s.Verify(tt.token)
			if err == nil {
				t.Fatalf("got customer %q, want an error", got)
			}
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("got %v, want it to wrap ErrInvalidToken", err)
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("got %v, want it to wrap %v", err, tt.want)
			}
			if got != "" {
				t.Errorf("got customer %q with the error, want none", got)
			}
			if got, expires, err := s.Check(tt.token); !errors.Is(err, auth.ErrInvalidToken) || got != "" || !expires.IsZero() {
				t.Errorf("Check: got %q, %v, %v; want an invalid token", got, expires, err)
			}
		})
	}
	// The good token itself passes, so each case fails for its own reason.
	if got, err := s.Verify(good); err != nil || got != "cus_42" {
		t.Fatalf("good token: got %q, %v; want cus_42", got, err)
	}
}

func TestConstructorsPanic(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	short := key[:31]
	tests := []struct {
		name string
		f    func()
	}{
		{"sessions, short key", func() { auth.NewSessions(short, time.Hour) }},
		{"sessions, no lifetime", func() { auth.NewSessions(key, 0) }},
		{"credentials, short key", func() { auth.ServiceCredentials(short, "orders", "payments") }},
		{"credentials, no caller", func() { auth.ServiceCredentials(key, "", "payments") }},
		{"credentials, no audience", func() { auth.ServiceCredentials(key, "orders", "") }},
		{"require, short key", func() { auth.RequireService(short, "payments", "orders") }},
		{"require, no callers", func() { auth.RequireService(key, "payments") }},
		{"require, empty caller", func() { auth.RequireService(key, "payments", "") }},
		{"require, no audience", func() { auth.RequireService(key, "", "orders") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Error("got no panic, want one")
				}
			}()
			tt.f()
		})
	}
}

// The key is copied: changing the caller's slice later changes nothing.
func TestSessionsCopyKey(t *testing.T) {
	t.Parallel()
	key := newKey(t)
	s := auth.NewSessions(key, time.Hour)
	token, _, err := s.Issue("cus_42")
	if err != nil {
		t.Fatal(err)
	}
	clear(key)
	if _, err := s.Verify(token); err != nil {
		t.Errorf("got %v, want the token still valid", err)
	}
}

func BenchmarkSessionsVerify(b *testing.B) {
	s := auth.NewSessions(newKey(b), time.Hour)
	token, _, err := s.Issue("cus_42")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Verify(token); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSessionsIssue(b *testing.B) {
	s := auth.NewSessions(newKey(b), time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Issue("cus_42"); err != nil {
			b.Fatal(err)
		}
	}
}
