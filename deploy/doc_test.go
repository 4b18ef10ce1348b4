// Package deploy holds what operators install besides the binary: the
// systemd unit (systemd/), the container image's definition (the
// Dockerfile at the top of the repository), the Prometheus alert rules
// (prometheus/) and the Grafana dashboard (grafana/). It holds no Go code
// but its tests, which check them with the tools that read them, so
// nothing here is compiled into anything shipped. The metrics and labels
// that the rules and the dashboard use are checked by tools/metricuses (its
// own module, so that Prometheus's PromQL parser is no requirement of the
// gateway's): against the gateway's metrics by its own tests, and against a
// running gateway's /metrics by the end-to-end test TestOperations.
package deploy
