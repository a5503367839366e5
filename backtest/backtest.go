// Package backtest runs a candidate rule set over stored history with the
// same detector as the daemon and `vigil replay`, and reports what it would
// have alerted on: per rule counts, the difference from a baseline set (the
// rules in force), and threshold suggestions drawn from the distribution of
// each aggregate. It reads events through Source and knows nothing of
// ClickHouse; it does not change the detector's behaviour, it only feeds it
// and listens.
package backtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

// Source streams stored events with from <= ts < to in event-time order
// (requests before audit events at the same time), in batches that are
// valid only during the call. storage.Store implements it.
type Source interface {
	History(ctx context.Context, from, to time.Time, fn func([]event.Event) error) (int, error)
}

// Options say what to backtest.
type Options struct {
	// Rules is the candidate set.
	Rules *rules.Set
	// Baseline is the set to compare with, usually the rules in force; nil
	// for no comparison.
	Baseline *rules.Set
	// From and To bound the event time read: From <= ts < To.
	From, To time.Time
	// Detector is the daemon's detector configuration (groups cap,
	// lateness, namespace table, severity policy, shards).
	Detector detector.Config
	// Thresholds computes threshold suggestions for threshold and anomaly
	// rules (more detector work: see docs/tuning.md).
	Thresholds bool
	// Progress, when set, is called after each batch.
	Progress func(Progress)
	// OnAlert, when set, receives every alert of the candidate set, in the
	// detector's order.
	OnAlert func(*detector.Alert)
}

// Progress says how far a backtest has come.
type Progress struct {
	Events  int       // events evaluated so far
	At      time.Time // event time of the last one
	Done    float64   // share of [From, To) covered, 0..1
	Elapsed time.Duration
}

// ETA estimates the time left from the share done so far.
func (p Progress) ETA() time.Duration {
	if p.Done <= 0 {
		return 0
	}
	return time.Duration(float64(p.Elapsed) * (1 - p.Done) / p.Done)
}

// Run reads [From, To) once from src, evaluates the candidate set (and the
// baseline, and the threshold probes) over every event, and reports.
func Run(ctx context.Context, src Source, opts Options) (*Report, error) {
	if opts.Rules == nil {
		return nil, errors.New("backtest: no rules")
	}
	if !opts.From.Before(opts.To) {
		return nil, fmt.Errorf("backtest: empty range %s .. %s", opts.From.UTC().Format(time.RFC3339), opts.To.UTC().Format(time.RFC3339))
	}
	started := time.Now()
	bt := newBacktest(opts)
	defer bt.close()
	_, err := src.History(ctx, opts.From, opts.To, func(batch []event.Event) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		bt.process(batch)
		if opts.Progress != nil && len(batch) > 0 {
			at := batch[len(batch)-1].TS
			done := float64(at-opts.From.UnixNano()) / float64(opts.To.Sub(opts.From))
			opts.Progress(Progress{Events: bt.events, At: time.Unix(0, at).UTC(), Done: min(max(done, 0), 1), Elapsed: time.Since(started)})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return bt.report(time.Since(started)), nil
}

// backtest is one run's detectors and what they said.
type backtest struct {
	opts  Options
	from  int64
	step  time.Duration // series bucket
	nstep int

	cand, base *detector.Detector // base runs only rules that differ from the candidate set
	probes     *probeSet          // nil without thresholds

	rules  []*ruleAcc // report order: candidate rules, then rules only in the baseline
	byRule map[*rules.Rule]*setAcc

	events, requests, audit int
}

// ruleAcc gathers one rule id's results in both sets.
type ruleAcc struct {
	id        string
	cand, old *rules.Rule // nil when the id is not in that set
	status    string      // added, removed, changed, unchanged; "" without a baseline
	sets      [2]*setAcc  // candidate, baseline
	probe     *probe
}

const (
	candidate = 0
	baseline  = 1
)

// setAcc counts one rule's alerts in one set.
type setAcc struct {
	alerts int
	groups map[string]*groupCount
	series []int
	keys   map[string]*keyed // by alert key, for the diff; nil when not comparing
}

// keyed is the alerts of one key: the first, and how many (a rule with
// cooldown 0 can fire more than once in the same window).
type keyed struct {
	first AlertSummary
	n     int
}

type groupCount struct {
	group  Group
	alerts int
}

// AlertSummary is what the report shows of one alert.
type AlertSummary struct {
	At          time.Time `json:"at"`
	WindowStart time.Time `json:"window_start"`
	Group       Group     `json:"group"`
	Value       float64   `json:"value"`
	Threshold   string    `json:"threshold"`
}

func newBacktest(opts Options) *backtest {
	span := opts.To.Sub(opts.From)
	bt := &backtest{opts: opts, from: opts.From.UnixNano(), step: seriesStep(span), byRule: map[*rules.Rule]*setAcc{}}
	bt.nstep = int((span + bt.step - 1) / bt.step)
	compare := opts.Baseline != nil
	newAcc := func() *setAcc {
		s := &setAcc{groups: map[string]*groupCount{}, series: make([]int, bt.nstep)}
		if compare {
			s.keys = map[string]*keyed{}
		}
		return s
	}
	byID := map[string]*ruleAcc{}
	for _, r := range opts.Rules.Rules {
		ra := &ruleAcc{id: r.ID, cand: r}
		ra.sets[candidate] = newAcc()
		bt.byRule[r] = ra.sets[candidate]
		bt.rules = append(bt.rules, ra)
		byID[r.ID] = ra
		if compare {
			ra.status = "added"
		}
	}
	var differing []*rules.Rule // baseline rules not in the candidate set as they are
	if compare {
		for _, r := range opts.Baseline.Rules {
			ra := byID[r.ID]
			switch {
			case ra == nil:
				ra = &ruleAcc{id: r.ID, status: "removed"}
				bt.rules = append(bt.rules, ra)
			case ra.cand.Hash == r.Hash:
				// Same content, same events, same alerts: evaluated once
				// and counted in both sets.
				ra.old, ra.status = r, "unchanged"
				ra.sets[baseline] = ra.sets[candidate]
				ra.sets[candidate].keys = nil // every alert is in both
				continue
			default:
				ra.status = "changed"
			}
			ra.old = r
			ra.sets[baseline] = newAcc()
			bt.byRule[r] = ra.sets[baseline]
			differing = append(differing, r)
		}
	}
	bt.cand = detector.New(opts.Rules.Rules, opts.Detector)
	if len(differing) > 0 {
		bt.base = detector.New(differing, opts.Detector)
	}
	if opts.Thresholds {
		bt.probes = newProbeSet(opts.Rules.Rules, opts.Detector)
		for _, ra := range bt.rules {
			if ra.cand != nil {
				ra.probe = bt.probes.byRule[ra.cand]
			}
		}
	}
	return bt
}

// seriesStep is the bar width of the alerts-over-time series: hours for
// up to a week, days beyond.
func seriesStep(span time.Duration) time.Duration {
	if span <= 7*24*time.Hour {
		return time.Hour
	}
	return 24 * time.Hour
}

func (bt *backtest) close() {
	bt.cand.Close()
	if bt.base != nil {
		bt.base.Close()
	}
	if bt.probes != nil {
		bt.probes.det.Close()
	}
}

// process evaluates one batch with every detector in turn. The detectors
// enrich events in place the same way, so they can share the batch.
func (bt *backtest) process(batch []event.Event) {
	bt.events += len(batch)
	for i := range batch {
		if batch[i].Source == event.Requests {
			bt.requests++
		} else {
			bt.audit++
		}
	}
	bt.cand.ProcessBatch(batch, bt.onCandidate)
	if bt.base != nil {
		bt.base.ProcessBatch(batch, bt.record)
	}
	if bt.probes != nil {
		bt.probes.det.ProcessBatch(batch, bt.probes.observe)
	}
}

func (bt *backtest) onCandidate(a *detector.Alert) {
	bt.record(a)
	if bt.opts.OnAlert != nil {
		bt.opts.OnAlert(a)
	}
}

func (bt *backtest) record(a *detector.Alert) {
	s := bt.byRule[a.Rule]
	s.alerts++
	g := groupOf(a)
	label := g.String()
	gc := s.groups[label]
	if gc == nil {
		gc = &groupCount{group: g}
		s.groups[label] = gc
	}
	gc.alerts++
	if i := int((a.At - bt.from) / int64(bt.step)); i >= 0 && i < len(s.series) {
		s.series[i]++
	}
	if s.keys != nil {
		k := a.Key()
		if e := s.keys[k]; e != nil {
			e.n++
		} else {
			s.keys[k] = &keyed{n: 1, first: AlertSummary{At: time.Unix(0, a.At).UTC(), WindowStart: time.Unix(0, a.WindowStart).UTC(),
				Group: g, Value: a.Value, Threshold: a.Threshold}}
		}
	}
}

// Group is an alert's group: field names and values in the rule's order.
// It encodes as a JSON object keeping that order.
type Group []GroupField

// GroupField is one field of a Group.
type GroupField struct {
	Field string
	Value string
}

func groupOf(a *detector.Alert) Group {
	g := make(Group, len(a.Group))
	for i, v := range a.Group {
		g[i] = GroupField{Field: v.Field.Name, Value: v.Value}
	}
	return g
}

// String is "field=value field=value", or "(all)" without grouping.
func (g Group) String() string {
	if len(g) == 0 {
		return "(all)"
	}
	var b strings.Builder
	for i, f := range g {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f.Field)
		b.WriteByte('=')
		b.WriteString(f.Value)
	}
	return b.String()
}
