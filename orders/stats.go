package orders

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/rpc"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// replicaStats counts, per payments replica, the calls it answered for this
// orders instance: the proof, visible through the API, that calls are spread
// per request and not pinned to one connection.
type replicaStats struct {
	mu    sync.Mutex
	since time.Time
	calls map[string]int64
}

func newReplicaStats() *replicaStats {
	return &replicaStats{since: time.Now(), calls: make(map[string]int64)}
}

// record counts the answer of the payments replica that sent header (see
// [rpc.HopHeader]); an answer without one is not counted.
func (r *replicaStats) record(header http.Header) {
	hop, ok := rpc.ParseHop(header)
	if !ok {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[hop.Server]++
}

func (r *replicaStats) snapshot() *ordersv1.GetStatsResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	resp := &ordersv1.GetStatsResponse{Since: timestamppb.New(r.since)}
	for _, n := range r.calls {
		resp.TotalCalls += n
	}
	for name, n := range r.calls {
		resp.Replicas = append(resp.Replicas, &ordersv1.ReplicaStats{
			Name:  name,
			Calls: n,
			Share: float64(n) / float64(resp.TotalCalls),
		})
	}
	slices.SortFunc(resp.Replicas, func(a, b *ordersv1.ReplicaStats) int {
		return strings.Compare(a.GetName(), b.GetName())
	})
	return resp
}

// GetStats implements [ordersv1connect.OrderServiceHandler].
func (s *Service) GetStats(context.Context, *connect.Request[ordersv1.GetStatsRequest]) (*connect.Response[ordersv1.GetStatsResponse], error) {
	return connect.NewResponse(s.stats.snapshot()), nil
}
