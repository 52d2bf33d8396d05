package balance

import (
	"context"
	"net/http"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"github.com/bufbuild/httplb/conn"
	"github.com/bufbuild/httplb/health"
)

// newGRPCHealthProber returns an httplb prober that asks a replica for its
// health with the standard gRPC health protocol (grpc.health.v1.Health/Check)
// on the replica's own connection. service "" asks about the whole server.
// httplb ships only a plain-HTTP prober.
func newGRPCHealthProber(service string) health.Prober {
	return grpcProber{service: service}
}

type grpcProber struct{ service string }

func (p grpcProber) Probe(ctx context.Context, c conn.Conn) health.State {
	ctx = context.WithValue(ctx, probeKey{}, true)
	baseURL := c.Scheme() + "://" + c.Address().HostPort
	client := grpchealth.NewClient(connDoer{c}, baseURL, connect.WithGRPC())
	resp, err := client.Check(ctx, &grpchealth.CheckRequest{Service: p.service})
	if err != nil {
		return health.StateUnhealthy
	}
	switch resp.Status {
	case grpchealth.StatusServing:
		return health.StateHealthy
	case grpchealth.StatusNotServing:
		return health.StateUnhealthy
	default:
		return health.StateUnknown
	}
}

// connDoer sends requests on one httplb connection, bypassing the picker.
type connDoer struct{ c conn.Conn }

func (d connDoer) Do(req *http.Request) (*http.Response, error) {
	return d.c.RoundTrip(req, nil)
}

type probeKey struct{}

// isProbe reports whether a request is a health check's. The ejector leaves
// those out: a replica that fails its checks is unhealthy already, and
// counting them would eject it too, keeping it out for the rest of the
// ejection after its checks pass again, and count ejections that no call
// caused.
func isProbe(ctx context.Context) bool {
	probe, _ := ctx.Value(probeKey{}).(bool)
	return probe
}
