package main

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/metrics"
	"github.com/vigil-sec/vigil/pipeline"
	"github.com/vigil-sec/vigil/responders"
)

// stateCollector reports, at scrape time, what is read rather than
// counted: per-rule detector state, consumer lag from the brokers' real end
// offsets, committed offsets, and the responders' gauges. consumers are the
// daemon's consumer groups: in keyed mode the router's (input topics) and
// the detectors' (repartition topics); a partition both read is reported
// for the first. leading reports whether this replica leads the fleet
// (always true with one replica); lead returns the responder a keyed
// replica runs while it leads, nil otherwise.
func stateCollector(pl *pipeline.Pipeline, resp *responders.Responder, leading func() bool, lead func() *responders.Responder, consumers ...*ingest.Consumer) *metrics.Func {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	var (
		groups    = d("vigil_detector_groups", "Groups tracked, by rule.", "rule")
		evictions = d("vigil_detector_group_evictions_total", "Groups evicted by detector.max_groups, by rule (since the rule was loaded).", "rule")
		late      = d("vigil_detector_late_events_total", "Events skipped as later than the lateness bound, by rule (since the rule was loaded).", "rule")
		lag       = d("vigil_ingest_partition_lag_records", "End offset minus committed offset, by partition.", "topic", "partition")
		committed = d("vigil_ingest_committed_offset", "Last committed offset, by partition.", "topic", "partition")
		queue     = d("vigil_responders_queue_length", "Alerts waiting for triage.")
		open      = d("vigil_responders_incidents_open", "Open incidents this daemon holds.")
		breaker   = d("vigil_responders_breaker_open", "1 while the circuit breaker is open.")
		paused    = d("vigil_responders_paused", "1 while the kill switch is on.")
		blocks    = d("vigil_responders_blocks_active", "Blocks in force.")
		edge      = d("vigil_responders_edge_items", "Vigil's items at the edge (Cloudflare list or access rules) at the last reconcile.")
		leader    = d("vigil_responders_leader", "1 while this replica leads the fleet: it runs the responders and the long-window rules (always 1 with one replica).")
	)
	b01 := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	return &metrics.Func{
		Descs: []*prometheus.Desc{groups, evictions, late, lag, committed, queue, open, breaker, paused, blocks, edge, leader},
		Fn: func(ch chan<- prometheus.Metric) {
			for _, s := range pl.RuleStats() {
				ch <- prometheus.MustNewConstMetric(groups, prometheus.GaugeValue, float64(s.Groups), s.Rule)
				ch <- prometheus.MustNewConstMetric(evictions, prometheus.CounterValue, float64(s.Evictions), s.Rule)
				ch <- prometheus.MustNewConstMetric(late, prometheus.CounterValue, float64(s.Late), s.Rule)
			}
			type tp struct {
				topic string
				p     int
			}
			// perPartition reports each partition of values once.
			perPartition := func(desc *prometheus.Desc, seen map[tp]bool, values map[string]map[int]int64) {
				for topic, parts := range values {
					for p, v := range parts {
						if k := (tp{topic, p}); !seen[k] {
							seen[k] = true
							ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, float64(v), topic, strconv.Itoa(p))
						}
					}
				}
			}
			seenCommitted, seenLag := map[tp]bool{}, map[tp]bool{}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			for _, consumer := range consumers {
				perPartition(committed, seenCommitted, consumer.Committed())
				if l, err := consumer.Lag(ctx); err == nil {
					perPartition(lag, seenLag, l)
				}
			}
			ch <- prometheus.MustNewConstMetric(leader, prometheus.GaugeValue, b01(leading()))
			r := resp
			if r == nil {
				r = lead()
			}
			if r != nil {
				g := r.Gauges()
				ch <- prometheus.MustNewConstMetric(queue, prometheus.GaugeValue, float64(g.Queue))
				ch <- prometheus.MustNewConstMetric(open, prometheus.GaugeValue, float64(g.OpenIncidents))
				ch <- prometheus.MustNewConstMetric(breaker, prometheus.GaugeValue, b01(g.BreakerOpen))
				ch <- prometheus.MustNewConstMetric(paused, prometheus.GaugeValue, b01(g.Paused))
				ch <- prometheus.MustNewConstMetric(blocks, prometheus.GaugeValue, float64(g.ActiveBlocks))
				ch <- prometheus.MustNewConstMetric(edge, prometheus.GaugeValue, float64(max(g.EdgeItems, 0)))
			}
		},
	}
}
