package backtest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/rules"
)

// Report is what a backtest found. It encodes as the `vigil backtest
// --json` document.
type Report struct {
	From            time.Time `json:"from"`
	To              time.Time `json:"to"`
	Days            float64   `json:"days"`
	Events          int       `json:"events"`
	Requests        int       `json:"requests"`
	Audit           int       `json:"audit"`
	ElapsedSeconds  float64   `json:"elapsed_seconds"`
	EventsPerSecond float64   `json:"events_per_second"`
	RuleFiles       []string  `json:"rule_files"`
	BaselineFiles   []string  `json:"baseline_files,omitempty"`
	// SeriesStep is the width of each bar of the rules' series: "1h" for
	// periods up to a week, "1d" beyond. Bar i starts at From + i·step.
	SeriesStep string       `json:"series_step"`
	Totals     Totals       `json:"totals"`
	Rules      []RuleReport `json:"rules"`

	step time.Duration
}

// Compared reports whether the run had a baseline.
func (r *Report) Compared() bool { return r.Totals.Diff != nil }

// Totals add up the rules.
type Totals struct {
	Alerts         int   `json:"alerts"`
	BaselineAlerts *int  `json:"baseline_alerts,omitempty"`
	Diff           *Diff `json:"diff,omitempty"`
}

// OnlyNew is the number of alerts only the candidate set raised; without a
// baseline every alert is new.
func (t Totals) OnlyNew() int {
	if t.Diff == nil {
		return t.Alerts
	}
	return t.Diff.OnlyNew
}

// RuleReport is one rule id's results.
type RuleReport struct {
	Rule        string `json:"rule"`
	Description string `json:"description,omitempty"`
	Kind        string `json:"kind"`
	Source      string `json:"source"`
	Severity    string `json:"severity"`
	Mode        string `json:"mode"` // enforce or shadow (in the candidate set when there)
	File        string `json:"file"`
	// Status compares with the baseline: added, removed, changed or
	// unchanged (same content); empty without a baseline.
	Status string `json:"status,omitempty"`
	// Candidate is nil for a rule only in the baseline.
	Candidate *SetResult `json:"candidate"`
	Baseline  *SetResult `json:"baseline,omitempty"`
	Diff      *Diff      `json:"diff,omitempty"`
	// Thresholds is set for the candidate set's threshold and anomaly rules
	// when suggestions were asked for.
	Thresholds *Thresholds `json:"thresholds,omitempty"`
}

// SetResult is what one rule did in one set.
type SetResult struct {
	Condition    string  `json:"condition"`
	Alerts       int     `json:"alerts"`
	Groups       int     `json:"groups"`
	AlertsPerDay float64 `json:"alerts_per_day"`
	// Series counts alerts per SeriesStep of event time.
	Series    []int         `json:"series"`
	TopGroups []GroupAlerts `json:"top_groups"`
}

// GroupAlerts is a group and how many alerts it raised.
type GroupAlerts struct {
	Group  Group `json:"group"`
	Alerts int   `json:"alerts"`
}

// Diff matches alerts by rule, group and window start (detector.Alert.Key);
// when a key has several alerts on both sides (cooldown 0), the smaller
// number counts as both and the rest as only on the larger side. OnlyNew +
// Both is the candidate set's alert count, OnlyOld + Both the baseline's.
type Diff struct {
	OnlyNew int `json:"only_new"`
	OnlyOld int `json:"only_old"`
	Both    int `json:"both"`
	// The first alerts (by time) on each side of the difference.
	OnlyNewExamples []AlertSummary `json:"only_new_examples,omitempty"`
	OnlyOldExamples []AlertSummary `json:"only_old_examples,omitempty"`
}

// maxExamples is how many alerts of each side of a diff are listed.
const maxExamples = 10

func (bt *backtest) report(elapsed time.Duration) *Report {
	o := bt.opts
	span := o.To.Sub(o.From)
	days := span.Hours() / 24
	rep := &Report{From: o.From.UTC(), To: o.To.UTC(), Days: days, Events: bt.events, Requests: bt.requests, Audit: bt.audit,
		ElapsedSeconds: elapsed.Seconds(), RuleFiles: o.Rules.Files, SeriesStep: shortDuration(bt.step), step: bt.step}
	if elapsed > 0 {
		rep.EventsPerSecond = float64(bt.events) / elapsed.Seconds()
	}
	compare := o.Baseline != nil
	var baseTotal int
	if compare {
		rep.BaselineFiles = o.Baseline.Files
		rep.Totals.BaselineAlerts = &baseTotal
		rep.Totals.Diff = &Diff{}
	}
	for _, ra := range bt.rules {
		r := ra.cand
		if r == nil {
			r = ra.old
		}
		rr := RuleReport{Rule: ra.id, Description: r.Description, Kind: r.Kind.String(), Source: r.Source.String(),
			Severity: r.Severity.Name(), Mode: "enforce", File: r.File, Status: ra.status}
		if r.Shadow {
			rr.Mode = "shadow"
		}
		if ra.cand != nil {
			rr.Candidate = setResult(ra.cand, ra.sets[candidate], days)
			rep.Totals.Alerts += rr.Candidate.Alerts
		}
		if compare {
			if ra.old != nil {
				rr.Baseline = setResult(ra.old, ra.sets[baseline], days)
				baseTotal += rr.Baseline.Alerts
			}
			rr.Diff = diff(ra)
			rep.Totals.Diff.OnlyNew += rr.Diff.OnlyNew
			rep.Totals.Diff.OnlyOld += rr.Diff.OnlyOld
			rep.Totals.Diff.Both += rr.Diff.Both
		}
		if ra.probe != nil {
			rr.Thresholds = ra.probe.report()
		}
		rep.Rules = append(rep.Rules, rr)
	}
	return rep
}

func setResult(r *rules.Rule, s *setAcc, days float64) *SetResult {
	res := &SetResult{Condition: Describe(r), Alerts: s.alerts, Groups: len(s.groups), Series: s.series}
	if days > 0 {
		res.AlertsPerDay = float64(s.alerts) / days
	}
	gs := make([]*groupCount, 0, len(s.groups))
	for _, g := range s.groups {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b *groupCount) int {
		if a.alerts != b.alerts {
			return b.alerts - a.alerts
		}
		return compareStrings(a.group.String(), b.group.String())
	})
	res.TopGroups = []GroupAlerts{}
	for _, g := range gs[:min(10, len(gs))] {
		res.TopGroups = append(res.TopGroups, GroupAlerts{Group: g.group, Alerts: g.alerts})
	}
	return res
}

func diff(ra *ruleAcc) *Diff {
	d := &Diff{}
	switch {
	case ra.status == "unchanged":
		d.Both = ra.sets[candidate].alerts
		return d
	case ra.cand == nil:
		d.OnlyOld = ra.sets[baseline].alerts
		d.OnlyOldExamples = examples(ra.sets[baseline].keys, nil)
		return d
	case ra.old == nil:
		d.OnlyNew = ra.sets[candidate].alerts
		d.OnlyNewExamples = examples(ra.sets[candidate].keys, nil)
		return d
	}
	nw, old := ra.sets[candidate].keys, ra.sets[baseline].keys
	for k, e := range nw {
		both := 0
		if o := old[k]; o != nil {
			both = min(e.n, o.n)
		}
		d.Both += both
		d.OnlyNew += e.n - both
	}
	d.OnlyOld = ra.sets[baseline].alerts - d.Both
	d.OnlyNewExamples = examples(nw, old)
	d.OnlyOldExamples = examples(old, nw)
	return d
}

// examples returns the first alerts of in whose key has more alerts in in
// than in out, by time.
func examples(in, out map[string]*keyed) []AlertSummary {
	var xs []AlertSummary
	for k, e := range in {
		if o := out[k]; o == nil || o.n < e.n {
			xs = append(xs, e.first)
		}
	}
	slices.SortFunc(xs, func(a, b AlertSummary) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return compareStrings(a.Group.String(), b.Group.String())
	})
	return xs[:min(maxExamples, len(xs))]
}

// Describe renders what a rule computes and when it fires, in one line:
// "count over 1m by ip > 50".
func Describe(r *rules.Rule) string {
	by := func(fs []string) string {
		if len(fs) == 0 {
			return ""
		}
		return " by " + strings.Join(fs, ", ")
	}
	names := func(r *rules.Rule) []string {
		var out []string
		for _, f := range r.GroupFields() {
			out = append(out, f.Name)
		}
		return out
	}
	agg := r.Aggregate.Text
	if agg == "" {
		agg = "count"
	}
	var b strings.Builder
	switch r.Kind {
	case rules.Threshold:
		fmt.Fprintf(&b, "%s over %s%s %s", agg, shortDuration(r.Window), by(names(r)), r.Threshold.Text)
	case rules.Anomaly:
		fmt.Fprintf(&b, "%s over %s%s above mean + %s·stddev of %s, min %s", agg, shortDuration(r.Window), by(names(r)),
			detector.FormatNumber(r.Anomaly.Z), shortDuration(r.Anomaly.Baseline), detector.FormatNumber(r.Anomaly.Min))
	case rules.NewValue:
		fmt.Fprintf(&b, "new %s%s (remember %s)", r.NewValue.Field.Name, by(names(r)[:len(r.NewValue.Per)]), shortDuration(r.NewValue.Remember))
	case rules.Dormant:
		fmt.Fprintf(&b, "%s back after %s idle", r.Dormant.Field.Name, shortDuration(r.Dormant.Idle))
	case rules.Sequence:
		fmt.Fprintf(&b, "%d steps%s within %s", len(r.Sequence.Steps), by(names(r)), shortDuration(r.Sequence.Within))
	}
	if r.MinEvents > 0 {
		fmt.Fprintf(&b, ", min_events %d", r.MinEvents)
	}
	if r.Cooldown > 0 {
		fmt.Fprintf(&b, ", cooldown %s", shortDuration(r.Cooldown))
	}
	return b.String()
}

// MarshalJSON writes the group as an object in the rule's field order.
func (g Group) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for i, f := range g {
		if i > 0 {
			b = append(b, ',')
		}
		k, err := json.Marshal(f.Field)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(f.Value)
		if err != nil {
			return nil, err
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}'), nil
}
