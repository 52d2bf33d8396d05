package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/connectshop/connectshop/gen/payments/v1/paymentsv1connect"
	"github.com/connectshop/connectshop/internal/memhttp/memhttptest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// observations returns how many observations the histogram name has with
// exactly labels, or fails the test if it has no such series.
func observations(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) uint64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if sameLabels(m.GetLabel(), labels) {
				return m.GetHistogram().GetSampleCount()
			}
		}
		t.Fatalf("%s has no series %v; it has %v", name, labels, f.GetMetric())
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func sameLabels(pairs []*dto.LabelPair, want map[string]string) bool {
	if len(pairs) != len(want) {
		return false
	}
	for _, p := range pairs {
		if v, ok := want[p.GetName()]; !ok || v != p.GetValue() {
			return false
		}
	}
	return true
}

func rpcLabels(procedure, protocol, code string) map[string]string {
	return map[string]string{"procedure": procedure, "protocol": protocol, "code": code}
}

func TestRPCMetricsObserveUnaryCalls(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := memhttptest.NewServer(t, newPaymentsMux(connect.WithInterceptors(m)))
	grpcClient := paymentsv1connect.NewPaymentServiceClient(srv.Client(), srv.URL(), connect.WithGRPC(), connect.WithInterceptors(m))
	connectClient := paymentsv1connect.NewPaymentServiceClient(srv.HTTP1Client(), srv.URL(), connect.WithProtoJSON(), connect.WithInterceptors(m))
	for range 2 {
		if _, err := grpcClient.GetPayment(t.Context(), connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: "pay_1"})); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := connectClient.GetPayment(t.Context(), connect.NewRequest(&paymentsv1.GetPaymentRequest{Id: "missing"})); connect.CodeOf(err) != connect.CodeNotFound {
		t.Fatalf("got %v, want not_found", err)
	}
	proc := paymentsv1connect.PaymentServiceGetPaymentProcedure
	for _, name := range []string{"rpc_server_duration_seconds", "rpc_client_duration_seconds"} {
		if n := observations(t, reg, name, rpcLabels(proc, "grpc", "ok")); n != 2 {
			t.Errorf("%s of ok gRPC calls: %d, want 2", name, n)
		}
		if n := observations(t, reg, name, rpcLabels(proc, "connect", "not_found")); n != 1 {
			t.Errorf("%s of not_found Connect calls: %d, want 1", name, n)
		}
	}
}

const streamProcedure = "/test.v1.TestService/Count"

// countHandler streams the numbers 1 to 3, or fails with PERMISSION_DENIED
// after the first if asked "fail".
func countHandler(opts ...connect.HandlerOption) http.Handler {
	return connect.NewServerStreamHandler(streamProcedure,
		func(_ context.Context, req *connect.Request[wrapperspb.StringValue], stream *connect.ServerStream[wrapperspb.StringValue]) error {
			for i := range 3 {
				if i == 1 && req.Msg.GetValue() == "fail" {
					return connect.NewError(connect.CodePermissionDenied, errors.New("no more"))
				}
				if err := stream.Send(wrapperspb.String(fmt.Sprint(i + 1))); err != nil {
					return err
				}
			}
			return nil
		}, opts...)
}

func TestRPCMetricsObserveStreams(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewRPCMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv := memhttptest.NewServer(t, countHandler(connect.WithInterceptors(m)))
	client := connect.NewClient[wrapperspb.StringValue, wrapperspb.StringValue](srv.Client(), srv.URL()+streamProcedure,
		connect.WithGRPC(), connect.WithInterceptors(m))
	for _, ask := range []string{"all", "fail"} {
		stream, err := client.CallServerStream(t.Context(), connect.NewRequest(wrapperspb.String(ask)))
		if err != nil {
			t.Fatal(err)
		}
		for stream.Receive() {
		}
		if err := stream.Close(); err != nil {
			t.Fatal(err)
		}
		if ask == "fail" && connect.CodeOf(stream.Err()) != connect.CodePermissionDenied {
			t.Fatalf("stream ended with %v, want permission_denied", stream.Err())
		}
	}
	for _, name := range []string{"rpc_server_duration_seconds", "rpc_client_duration_seconds"} {
		for _, code := range []string{"ok", "permission_denied"} {
			if n := observations(t, reg, name, rpcLabels(streamProcedure, "grpc", code)); n != 1 {
				t.Errorf("%s of %s streams: %d, want 1", name, code, n)
			}
		}
	}
}

func TestCodeOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, "ok"},
		{connect.NewError(connect.CodeNotFound, errors.New("x")), "not_found"},
		{fmt.Errorf("wrapped: %w", connect.NewError(connect.CodeAborted, errors.New("x"))), "aborted"},
		{fmt.Errorf("store: %w", context.Canceled), "canceled"},
		{fmt.Errorf("store: %w", context.DeadlineExceeded), "deadline_exceeded"},
		{errors.New("boom"), "unknown"},
	} {
		if got := codeOf(c.err); got != c.want {
			t.Errorf("codeOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}
