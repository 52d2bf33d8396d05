package rpc

import (
	"crypto/sha256"
	"regexp"

	"google.golang.org/protobuf/proto"
)

// IdempotencyKeyRule says what [ValidIdempotencyKey] accepts, for field
// violations.
const IdempotencyKeyRule = "must be 1 to 128 letters, digits or -_.:"

var idempotencyKeyPattern = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,128}$`)

// ValidIdempotencyKey reports whether key is 1 to 128 letters, digits or
// -_.: — enough for UUIDs and "order:123"-style keys, and safe in logs.
func ValidIdempotencyKey(key string) bool {
	return idempotencyKeyPattern.MatchString(key)
}

// Fingerprint returns the SHA-256 of msg's deterministic binary encoding.
// Stored beside an idempotency key (computed with the key field cleared), it
// tells a retry (same fingerprint) from a different request that reuses the
// key.
func Fingerprint(msg proto.Message) []byte {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		panic(err) // only invalid UTF-8 in a string field fails, and Connect rejects that on decode
	}
	sum := sha256.Sum256(b)
	return sum[:]
}
