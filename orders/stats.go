package orders

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
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

func (r *replicaStats) record(replica string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls[replica]++
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
