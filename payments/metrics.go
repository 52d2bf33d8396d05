package payments

import (
	paymentsv1 "github.com/connectshop/connectshop/gen/payments/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are what an operator of payments watches beyond the RPC
// histograms: how many charges each replica (the registerer's server label)
// makes, and of what outcome.
type metrics struct {
	captured, declined, replayed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	charges := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "payments_charges_total",
		Help: "Charge calls answered with a payment, by outcome: captured or declined (a new payment), replayed (the payment of an earlier call with the same idempotency key).",
	}, []string{"outcome"})
	if err := reg.Register(charges); err != nil {
		return nil, err
	}
	// Resolved once: the hot path only adds.
	return &metrics{
		captured: charges.WithLabelValues("captured"),
		declined: charges.WithLabelValues("declined"),
		replayed: charges.WithLabelValues("replayed"),
	}, nil
}

// charged counts a Charge answered with p; replayed if p was stored by an
// earlier call.
func (m *metrics) charged(p *paymentsv1.Payment, replayed bool) {
	switch {
	case replayed:
		m.replayed.Inc()
	case p.GetStatus() == paymentsv1.PaymentStatus_PAYMENT_STATUS_DECLINED:
		m.declined.Inc()
	default:
		m.captured.Inc()
	}
}
