// Package metrics defines Vigil's Prometheus metrics, named
// vigil_<subsystem>_<name>_<unit>, on a registry the caller passes in:
// nothing registers itself globally. Label values are bounded — sources,
// reason codes, tables, rule ids, severities, action kinds, outcomes and
// guards — never an address, key, org or group value, with one exception:
// vigil_responders_watch_active names each watched key or namespace,
// because telling the platform what to log verbosely is its purpose (the
// response contract exports watch as a metric); the responders' watch caps
// bound how many exist. docs/operations.md lists them; a test checks that
// list against a running daemon.
package metrics

import (
	"runtime"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every collector the data path and the responders update.
// Values read at scrape time (lag, per-rule state) are registered with
// RegisterFunc-style collectors by the daemon's wiring.
type Metrics struct {
	Consumed        *prometheus.CounterVec // source
	Invalid         *prometheus.CounterVec // source, reason
	BatchSize       prometheus.Histogram
	Buffered        prometheus.Gauge
	BufferCapacity  prometheus.Gauge
	ReorderWaiting  prometheus.Gauge
	ReorderForced   prometheus.Counter
	AlertLatency    prometheus.Histogram
	InsertDuration  *prometheus.HistogramVec // table
	InsertErrors    *prometheus.CounterVec   // table, kind
	ClickHouseUp    prometheus.Gauge
	DetectorEvents  *prometheus.CounterVec // source
	EvalDuration    prometheus.Histogram
	Alerts          *prometheus.CounterVec // rule, severity
	ShadowAlerts    *prometheus.CounterVec // rule, severity
	QueueDropped    prometheus.Counter
	IncidentsOpened *prometheus.CounterVec // severity
	Actions         *prometheus.CounterVec // kind, outcome
	GuardSkips      *prometheus.CounterVec // guard
	EdgeDrift       prometheus.Counter
	WatchActive     *prometheus.GaugeVec // kind (key or namespace), target
	RulesLoaded     prometheus.Gauge
	Reloads         *prometheus.CounterVec // result
	LastReloadOK    prometheus.Gauge
	LastReloadTime  prometheus.Gauge
}

// New creates the collectors and registers them, with vigil_build_info,
// on reg. A nil reg registers nothing (tests, one-shot commands).
func New(reg prometheus.Registerer, version string) *Metrics {
	latency := []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Metrics{
		Consumed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ingest_records_consumed_total",
			Help: "Kafka records fetched, by source."}, []string{"source"}),
		Invalid: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_ingest_records_invalid_total",
			Help: "Records dead-lettered, by source and reason code."}, []string{"source", "reason"}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vigil_pipeline_batch_size_records",
			Help: "Records per batch.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)}),
		Buffered: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_pipeline_buffered_records",
			Help: "Records held between Kafka and ClickHouse."}),
		BufferCapacity: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_pipeline_buffer_capacity_records",
			Help: "The cap on buffered records (clickhouse.max_buffered_events); consumption pauses at it."}),
		ReorderWaiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_pipeline_reorder_waiting_events",
			Help: "Events stored but waiting for the other partitions to pass their event time before evaluation."}),
		ReorderForced: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_pipeline_reorder_forced_total",
			Help: "Events evaluated before a lagging partition passed their event time, because the reorder buffer was full."}),
		AlertLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vigil_pipeline_alert_latency_seconds",
			Help: "From the Kafka timestamp of the earliest record evaluated in a batch to the batch's alerts being stored (an upper bound of event→alert latency); observed for batches with alerts.", Buckets: latency}),
		InsertDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vigil_clickhouse_insert_duration_seconds",
			Help: "Duration of one ClickHouse insert, retries excluded.", Buckets: latency}, []string{"table"}),
		InsertErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_clickhouse_insert_errors_total",
			Help: "Failed ClickHouse inserts, by table and kind (retryable or bad_data)."}, []string{"table", "kind"}),
		ClickHouseUp: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_clickhouse_up",
			Help: "1 when the last ClickHouse insert succeeded, 0 while inserts fail."}),
		DetectorEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_detector_events_total",
			Help: "Events evaluated by the detector, by source."}, []string{"source"}),
		EvalDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vigil_detector_evaluation_duration_seconds",
			Help: "Time to decode and evaluate one batch.", Buckets: latency}),
		Alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_detector_alerts_total",
			Help: "Alerts fired, by rule and severity."}, []string{"rule", "severity"}),
		ShadowAlerts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_detector_shadow_alerts_total",
			Help: "Alerts fired by shadow rules (stored, never acted on), by rule and severity."}, []string{"rule", "severity"}),
		QueueDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_responders_queue_dropped_total",
			Help: "Alerts not queued for triage because the queue was full; the catch-up pass triages them from ClickHouse."}),
		IncidentsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_responders_incidents_opened_total",
			Help: "Incidents opened, by severity."}, []string{"severity"}),
		Actions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_responders_actions_total",
			Help: "Action log rows, by action kind and outcome."}, []string{"kind", "outcome"}),
		GuardSkips: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_responders_guard_skips_total",
			Help: "Actions skipped, by the guard that skipped them."}, []string{"guard"}),
		EdgeDrift: prometheus.NewCounter(prometheus.CounterOpts{Name: "vigil_responders_edge_drift_total",
			Help: "Edge items repaired by reconciliation (re-added or removed)."}),
		WatchActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "vigil_responders_watch_active",
			Help: "1 for each key or namespace (org/namespace) under a watch in force: log it verbosely. The series goes when the watch lapses."},
			[]string{"kind", "target"}),
		RulesLoaded: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_rules_loaded",
			Help: "Rules running."}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vigil_rules_reloads_total",
			Help: "Rule reload attempts, by result (success or failure)."}, []string{"result"}),
		LastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_rules_last_reload_successful",
			Help: "1 if the last rule load succeeded, 0 if it failed (the previous rules keep running)."}),
		LastReloadTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_rules_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful rule load."}),
	}
	m.zero()
	if reg != nil {
		info := prometheus.NewGauge(prometheus.GaugeOpts{Name: "vigil_build_info", Help: "Vigil's version; always 1.",
			ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()}})
		info.Set(1)
		reg.MustRegister(info, m.Consumed, m.Invalid, m.BatchSize, m.Buffered, m.BufferCapacity, m.ReorderWaiting, m.ReorderForced, m.AlertLatency, m.InsertDuration,
			m.InsertErrors, m.ClickHouseUp, m.DetectorEvents, m.EvalDuration, m.Alerts, m.ShadowAlerts, m.QueueDropped, m.IncidentsOpened,
			m.Actions, m.GuardSkips, m.EdgeDrift, m.WatchActive, m.RulesLoaded, m.Reloads, m.LastReloadOK, m.LastReloadTime)
	}
	return m
}

// Label values known in advance. Their series are created at zero, so
// that rate() and absent() work before the first event of each kind, and a
// dashboard shows 0 rather than no data.
var (
	Sources     = []string{"requests", "audit"}
	ReasonCodes = []string{"malformed_json", "missing_field", "duplicate_field", "bad_value", "too_large", "future", "clickhouse_rejected"}
	Tables      = []string{"events", "dead_letters", "alerts"}
	Severities  = []string{"critical", "high", "medium", "low"}
	ActionKinds = []string{"open_incident", "revoke_key", "block_ip", "watch", "isolate_namespace", "unblock_ip", "restore_key", "lift_isolation", "guard_alert"}
	Outcomes    = []string{"planned", "dry_run", "skipped", "succeeded", "retried", "failed", "raised"}
	Guards      = []string{"paused", "not_configured", "invalid_target", "unknown_org", "allowlist", "admin_key", "in_force", "incident_cap", "rate_cap", "breaker", "no_target"}
)

func (m *Metrics) zero() {
	for _, s := range Sources {
		m.Consumed.WithLabelValues(s)
		m.DetectorEvents.WithLabelValues(s)
		for _, r := range ReasonCodes {
			m.Invalid.WithLabelValues(s, r)
		}
	}
	for _, t := range Tables {
		m.InsertDuration.WithLabelValues(t)
		m.InsertErrors.WithLabelValues(t, "retryable")
		m.InsertErrors.WithLabelValues(t, "bad_data")
	}
	for _, s := range Severities {
		m.IncidentsOpened.WithLabelValues(s)
	}
	for _, k := range ActionKinds {
		for _, o := range Outcomes {
			m.Actions.WithLabelValues(k, o)
		}
	}
	for _, g := range Guards {
		m.GuardSkips.WithLabelValues(g)
	}
	m.Reloads.WithLabelValues("success")
	m.Reloads.WithLabelValues("failure")
	m.ClickHouseUp.Set(1)
}

// ReasonCode maps a dead-letter reason to the bounded code used as a
// label; the full reason is kept in the dead-letter row and headers.
func ReasonCode(reason string) string {
	switch {
	case strings.Contains(reason, "over the limit"):
		return "too_large"
	case strings.HasPrefix(reason, "missing required field"):
		return "missing_field"
	case strings.HasPrefix(reason, "duplicate field"):
		return "duplicate_field"
	case strings.Contains(reason, "ahead of the clock"):
		return "future"
	case strings.HasPrefix(reason, "rejected by ClickHouse"):
		return "clickhouse_rejected"
	case strings.Contains(reason, "invalid JSON"), strings.Contains(reason, "not a JSON object"),
		strings.Contains(reason, "empty record"), strings.Contains(reason, "nesting deeper"):
		return "malformed_json"
	}
	return "bad_value"
}

// Func is a collector whose samples are computed at scrape time: per-rule
// detector state, consumer lag, responder gauges.
type Func struct {
	Descs []*prometheus.Desc
	Fn    func(ch chan<- prometheus.Metric)
}

// Describe implements prometheus.Collector.
func (f *Func) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range f.Descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (f *Func) Collect(ch chan<- prometheus.Metric) { f.Fn(ch) }
