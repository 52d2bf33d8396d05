package rpc

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
)

// errorDomain is the ErrorInfo domain of the shop's errors.
const errorDomain = "connectshop.dev"

// MaxViolations is how many field violations an error carries: a request
// with more problems (a 10,000-line order) gets the first ones and a count of
// the rest, so that the error, which gRPC sends in headers, stays small.
const MaxViolations = 10

// Limits on text that a client sent and an error message or a log line
// repeats: [EchoBytes] for a value quoted in a message (a product id), and
// maxDescriptionBytes for a whole violation description.
const (
	EchoBytes           = 64
	maxDescriptionBytes = 512
)

// Violations collects what is wrong with a request, field by field, to send as
// one INVALID_ARGUMENT error with a google.rpc.BadRequest detail. It keeps the
// first [MaxViolations] and counts the others.
type Violations struct {
	list []*errdetails.BadRequest_FieldViolation
	more int // violations past MaxViolations, counted but not kept
}

// Add records that field (a path such as "items[1].quantity") is invalid.
// Past [MaxViolations] it only counts. Quote client-supplied values through
// [Truncate]; a description longer than 512 bytes is cut anyway.
func (v *Violations) Add(field, format string, args ...any) {
	if len(v.list) >= MaxViolations {
		v.more++
		return
	}
	v.list = append(v.list, &errdetails.BadRequest_FieldViolation{
		Field:       Truncate(field, maxDescriptionBytes),
		Description: Truncate(fmt.Sprintf(format, args...), maxDescriptionBytes),
	})
}

// Err returns nil if nothing was added, else an INVALID_ARGUMENT error whose
// message lists the violations and whose detail carries them. If more than
// [MaxViolations] were added, the message ends with how many more there are.
func (v *Violations) Err() error {
	if len(v.list) == 0 {
		return nil
	}
	msgs := make([]string, len(v.list), len(v.list)+1)
	for i, fv := range v.list {
		msgs[i] = fv.GetField() + ": " + fv.GetDescription()
	}
	if v.more > 0 {
		msgs = append(msgs, fmt.Sprintf("and %d more not listed", v.more))
	}
	err := connect.NewError(connect.CodeInvalidArgument, errors.New("invalid request: "+strings.Join(msgs, "; ")))
	addDetail(err, &errdetails.BadRequest{FieldViolations: v.list})
	return err
}

// Truncate returns s cut to its first n bytes, without splitting a
// character, followed by an ellipsis if it was longer, for repeating
// client-supplied text in messages and logs: an unknown product id of 900 KB
// is quoted by its first 64 bytes. The result is valid UTF-8: each run of
// invalid bytes in what is kept becomes U+FFFD.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "\uFFFD")
	}
	cut := max(n, 0)
	for i := 1; i < utf8.UTFMax && cut > 0 && !utf8.RuneStart(s[cut]); i++ {
		cut-- // do not split a character
	}
	return strings.ToValidUTF8(s[:cut], "\uFFFD") + "…"
}

// NewErrorWithReason returns an error with code and msg, and an ErrorInfo
// detail that tells machines why: reason is the name of a value of the
// service's ErrorReason proto enum, such as
// ordersv1.ErrorReason_CARD_DECLINED.String(), metadata optional context such
// as ids.
func NewErrorWithReason(code connect.Code, reason, msg string, metadata map[string]string) *connect.Error {
	err := connect.NewError(code, errors.New(msg))
	addDetail(err, &errdetails.ErrorInfo{Reason: reason, Domain: errorDomain, Metadata: metadata})
	return err
}

// Reason returns the ErrorInfo reason of err, or "" if it has none.
func Reason(err error) string {
	if info := ErrorInfo(err); info != nil {
		return info.GetReason()
	}
	return ""
}

// ErrorInfo returns the ErrorInfo detail of err, or nil.
func ErrorInfo(err error) *errdetails.ErrorInfo {
	var cerr *connect.Error
	if !errors.As(err, &cerr) {
		return nil
	}
	for _, d := range cerr.Details() {
		if v, err := d.Value(); err == nil {
			if info, ok := v.(*errdetails.ErrorInfo); ok {
				return info
			}
		}
	}
	return nil
}

func addDetail(err *connect.Error, msg proto.Message) {
	detail, derr := connect.NewErrorDetail(msg)
	if derr != nil {
		// Only a nil or broken message fails to marshal; ours are neither.
		panic(fmt.Sprintf("rpc: error detail: %v", derr))
	}
	err.AddDetail(detail)
}
