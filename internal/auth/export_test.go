package auth

import (
	"time"

	"connectrpc.com/connect"
)

// NewSessionsAt is NewSessions on the clock now.
var NewSessionsAt = newSessions

// ServiceCredentialsAt is ServiceCredentials on the clock now.
func ServiceCredentialsAt(key Key, caller, audience string, now func() time.Time) connect.Interceptor {
	return newCredentials(key, caller, audience, now)
}

// RequireServiceAt is RequireService on the clock now.
func RequireServiceAt(key Key, audience string, now func() time.Time, callers ...string) connect.Interceptor {
	return newRequirement(key, audience, now, callers...)
}

// Mints returns how many tokens i, made by ServiceCredentials, has signed.
func Mints(i connect.Interceptor) int {
	c := i.(*credentials)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mints
}

// VerifyService checks token as i, made by RequireService, does and returns
// the caller it names.
func VerifyService(i connect.Interceptor, token string) (string, error) {
	return i.(*requirement).verify(token)
}

// BearerHeader returns the Authorization header value i, made by
// ServiceCredentials, sets on a call now.
func BearerHeader(i connect.Interceptor) string {
	return i.(*credentials).header()
}

// AuthorizationHeader is a client interceptor that sends "Authorization:
// value", whatever value is.
func AuthorizationHeader(value string) connect.Interceptor { return bearerToken(value) }
