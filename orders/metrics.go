package orders

import (
	"context"

	"connectrpc.com/connect"
	ordersv1 "github.com/connectshop/connectshop/gen/orders/v1"
	"github.com/connectshop/connectshop/internal/rpc"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are what an operator of orders watches beyond the RPC histograms:
// orders by outcome, the spread of payment calls over replicas, retries and
// ejections of replicas, replicas by health, and watchers connected. Counts
// kept anyway (replica stats, watchers, replica health) are read when
// scraped, costing the calls nothing.
type metrics struct {
	created            *prometheus.CounterVec
	outcomes           map[string]prometheus.Counter // of CreateOrder, by outcome
	retries, ejections prometheus.Counter
}

// CreateOrder outcomes, a closed set: label values must not grow with use.
const (
	outcomePaid        = "paid"
	outcomeDeclined    = "declined"
	outcomeUnavailable = "payments_unavailable"
	outcomeInvalid     = "invalid"
	outcomeRefused     = "refused" // unauthenticated, rate limited, key reused...
	outcomeClientGone  = "client_gone"
	outcomeFailed      = "failed"
)

// newMetrics makes the metrics of an orders service; [metrics.register]
// registers them once the service is built.
func newMetrics() *metrics {
	m := &metrics{
		created: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orders_created_total",
			Help: "CreateOrder calls by outcome: paid, declined, payments_unavailable (left PENDING for recovery), invalid, refused, client_gone, failed.",
		}, []string{"outcome"}),
		outcomes: make(map[string]prometheus.Counter),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_payment_retries_total",
			Help: "Calls to payments sent again after a failed attempt.",
		}),
		ejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orders_payment_ejections_total",
			Help: "Payments replicas taken out of the balancer for a while because their calls failed at the transport.",
		}),
	}
	for _, o := range []string{outcomePaid, outcomeDeclined, outcomeUnavailable, outcomeInvalid, outcomeRefused, outcomeClientGone, outcomeFailed} {
		m.outcomes[o] = m.created.WithLabelValues(o) // resolved once: the hot path only adds
	}
	return m
}

// register registers m with reg, with the counts of svc and the states of
// the payments replicas read when scraped.
func (m *metrics) register(reg prometheus.Registerer, svc *Service, replicas func() map[string]string) error {
	watchers := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "orders_watchers",
		Help: "WatchOrders streams open now.",
	}, func() float64 { return float64(svc.hub.count()) })
	collectors := []prometheus.Collector{m.created, m.retries, m.ejections, watchers,
		&replicaCalls{stats: svc.stats}, &replicaHealth{states: replicas}}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// countCreate counts the outcome of one CreateOrder call.
func (m *metrics) countCreate(ctx context.Context, err error) {
	if m == nil {
		return // a Service built without New, in tests
	}
	m.outcomes[outcomeOf(ctx, err)].Inc()
}

func outcomeOf(ctx context.Context, err error) string {
	switch {
	case err == nil:
		return outcomePaid
	case ctx.Err() != nil:
		return outcomeClientGone
	case rpc.Reason(err) == ordersv1.ErrorReason_CARD_DECLINED.String():
		return outcomeDeclined
	case rpc.Reason(err) == ordersv1.ErrorReason_PAYMENTS_UNAVAILABLE.String():
		return outcomeUnavailable
	}
	switch connect.CodeOf(err) {
	case connect.CodeInvalidArgument:
		return outcomeInvalid
	case connect.CodeUnauthenticated, connect.CodeResourceExhausted, connect.CodeAlreadyExists, connect.CodePermissionDenied:
		return outcomeRefused
	case connect.CodeCanceled, connect.CodeDeadlineExceeded:
		return outcomeClientGone
	}
	return outcomeFailed
}

// replicaCalls exports the calls each payments replica answered (what
// GetStats reports) as orders_payment_calls_total{replica}. Replica names
// are the deployment's: a bounded set.
type replicaCalls struct{ stats *replicaStats }

var replicaCallsDesc = prometheus.NewDesc("orders_payment_calls_total",
	"Calls to payments answered, by the replica that answered.", []string{"replica"}, nil)

func (c *replicaCalls) Describe(ch chan<- *prometheus.Desc) { ch <- replicaCallsDesc }

func (c *replicaCalls) Collect(ch chan<- prometheus.Metric) {
	for _, r := range c.stats.snapshot().GetReplicas() {
		ch <- prometheus.MustNewConstMetric(replicaCallsDesc, prometheus.CounterValue, float64(r.GetCalls()), r.GetName())
	}
}

// replicaHealth exports how many payments replicas the balancer has in each
// state (healthy, unhealthy, ejected...) as orders_payment_replicas{state}.
type replicaHealth struct{ states func() map[string]string }

var replicaHealthDesc = prometheus.NewDesc("orders_payment_replicas",
	"Payments replicas known to the balancer, by state.", []string{"state"}, nil)

func (c *replicaHealth) Describe(ch chan<- *prometheus.Desc) { ch <- replicaHealthDesc }

func (c *replicaHealth) Collect(ch chan<- prometheus.Metric) {
	counts := make(map[string]int)
	for _, state := range c.states() {
		counts[state]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(replicaHealthDesc, prometheus.GaugeValue, float64(n), state)
	}
}
