// Package contract runs contract suites: the tests that every implementation
// of an interface must pass (orders/storetest, payments/storetest), each
// against fresh instances from the implementation's own factory.
package contract

import (
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// Test is one test of a suite whose implementations come from an F.
type Test[F any] struct {
	Name string
	Run  func(t *testing.T, newImpl F)
}

// Run runs each test as a parallel subtest of t, giving it newImpl.
func Run[F any](t *testing.T, newImpl F, tests ...Test[F]) {
	for _, tt := range tests {
		t.Run(tt.Name, func(t *testing.T) {
			t.Parallel()
			tt.Run(t, newImpl)
		})
	}
}

// Reopenable calls open and returns what it opened, and a function that
// opens the same again (as another process or a restart would). Each one is
// closed when the test ends; open must fail the test rather than return a
// broken value, so any error fails it here.
func Reopenable[S io.Closer](t *testing.T, open func() (S, error)) (S, func() S) {
	t.Helper()
	reopen := func() S {
		s, err := open()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	return reopen(), reopen
}

// Factory returns an implementation on a new, empty database, and a function
// that opens the same database again, as another process or a restarted one
// would. Everything it opens must be closed when the test ends, and Close
// may be called more than once.
type Factory[S any] func(t *testing.T) (impl S, reopen func() S)

// Equal fails t, showing the difference, if got is not the message want.
func Equal(t *testing.T, want, got proto.Message) {
	t.Helper()
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Errorf("%s (-want +got):\n%s", want.ProtoReflect().Descriptor().Name(), diff)
	}
}
