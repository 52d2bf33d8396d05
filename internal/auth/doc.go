// Package auth signs and checks the shop's tokens: customer sessions, and the
// service tokens with which orders proves itself to payments.
//
// Both are JWTs signed with HMAC-SHA256 under a shared secret [Key]. Verifying
// accepts HS256 only, requires an expiry, allows 30 s of clock skew and checks
// issuer and audience, so a session is never accepted as a service token nor
// the other way round. Use one key for sessions and another for services: a
// service key is held by every service, a session key only by orders.
package auth
