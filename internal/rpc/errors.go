package rpc

import (
	"errors"
	"fmt"
	"strings"

	"connectrpc.com/connect"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/proto"
)

// errorDomain is the ErrorInfo domain of the shop's errors.
const errorDomain = "connectshop.dev"

// Violations collects what is wrong with a request, field by field, to send as
// one INVALID_ARGUMENT error with a google.rpc.BadRequest detail.
type Violations struct {
	list []*errdetails.BadRequest_FieldViolation
}

// Add records that field (a path such as "items[1].quantity") is invalid.
func (v *Violations) Add(field, format string, args ...any) {
	v.list = append(v.list, &errdetails.BadRequest_FieldViolation{
		Field:       field,
		Description: fmt.Sprintf(format, args...),
	})
}

// Err returns nil if nothing was added, else an INVALID_ARGUMENT error whose
// message lists the violations and whose detail carries them.
func (v *Violations) Err() error {
	if len(v.list) == 0 {
		return nil
	}
	msgs := make([]string, len(v.list))
	for i, fv := range v.list {
		msgs[i] = fv.GetField() + ": " + fv.GetDescription()
	}
	err := connect.NewError(connect.CodeInvalidArgument, errors.New("invalid request: "+strings.Join(msgs, "; ")))
	addDetail(err, &errdetails.BadRequest{FieldViolations: v.list})
	return err
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
