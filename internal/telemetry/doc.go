// Package telemetry is what the shop's servers report about themselves:
// logs with the trace of the call they were written in, OpenTelemetry traces
// that follow a call from service to service (W3C trace context), exported
// over OTLP when the environment names a collector, Prometheus metrics, and
// an admin listener with /metrics, /healthz, /readyz and pprof. [Readiness]
// also drives the gRPC health service, so that balancers and probes stop
// sending calls to a server that is not ready or is shutting down.
//
// A command calls [Setup] once, takes a [Scope] for each server it runs,
// puts [Scope.Interceptors] first on its handlers and clients, serves
// [Telemetry.Admin] on its admin address, and calls [Telemetry.Shutdown]
// last.
package telemetry
