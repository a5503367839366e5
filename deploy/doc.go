// Package deploy holds the deployment assets of Vigil's own observability:
// the Grafana dashboard (grafana/vigil.json), the Prometheus alerting rules
// with their promtool unit tests and runbook (prometheus/), and MetricNames,
// which lists the metrics those assets use so that a test can compare them
// with what a running daemon exports.
package deploy
