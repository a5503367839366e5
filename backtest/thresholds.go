package backtest

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/rules"
)

// Threshold suggestions come from probes: variants of each threshold and
// anomaly rule, run by a detector of their own over the same events, that
// report every evaluation instead of only the firing ones. The detector
// itself is unchanged; a variant is a shallow copy of the rule with other
// settings:
//
//   - the peak variant is a threshold rule with the same filter, grouping,
//     window, aggregate and min_events, threshold ">= -Inf" and cooldown 0,
//     so it "fires" at every matching event with the aggregate's value for
//     the event's group. Its values give each group's peak per window
//     (windows aligned to multiples of the rule's window) and, for
//     threshold rules, the full evaluation stream per group.
//   - for anomaly rules, the bound variant keeps z and baseline but drops
//     min and the cooldown, so it fires at every event whose window value
//     exceeds mean + z·stddev of the group's baseline.
//
// A rule fires at an evaluation that satisfies its condition when the
// group is out of cooldown. Events come in time order, so replaying a
// group's evaluation stream with another threshold (or anomaly min) and
// the rule's cooldown gives exactly the alerts that threshold would have
// produced — as long as the groups cap evicted nothing (an evicted group
// forgets its cooldown in the detector). The current threshold's row thus
// equals the rule's own alert count, which the tests check.

// probeSet evaluates the variants of a rule set.
type probeSet struct {
	det      *detector.Detector
	byRule   map[*rules.Rule]*probe // candidate rule → its probe
	variants map[*rules.Rule]variant
	key      []byte
}

type variant struct {
	p     *probe
	bound bool
}

// probe collects one rule's evaluations.
type probe struct {
	rule   *rules.Rule
	window int64
	low    bool // < and <= thresholds: a window's extreme is its minimum
	groups map[string]*probeGroup
	peaks  []float64           // one per (group, window) with an evaluation
	bounds map[string][]sample // anomaly rules: evaluations above the bound, per group
}

type probeGroup struct {
	group   Group
	slot    int64
	cur     float64
	best    float64
	bestAt  int64
	windows int
	evals   []sample // threshold rules: every evaluation
}

// sample is one evaluation: event time and the aggregate's value.
type sample struct {
	at int64
	v  float64
}

func newProbeSet(rs []*rules.Rule, cfg detector.Config) *probeSet {
	ps := &probeSet{byRule: map[*rules.Rule]*probe{}, variants: map[*rules.Rule]variant{}}
	var vs []*rules.Rule
	for _, r := range rs {
		if r.Kind != rules.Threshold && r.Kind != rules.Anomaly {
			continue
		}
		p := &probe{rule: r, window: int64(r.Window), groups: map[string]*probeGroup{},
			low: r.Kind == rules.Threshold && (r.Threshold.Op == rules.LT || r.Threshold.Op == rules.LE)}
		ps.byRule[r] = p
		peak := *r
		peak.Kind, peak.Anomaly, peak.Cooldown, peak.Actions = rules.Threshold, nil, 0, []string{}
		peak.Threshold = rules.Condition{Op: rules.GE, Value: math.Inf(-1), Text: ">= -Inf"}
		ps.variants[&peak] = variant{p: p}
		vs = append(vs, &peak)
		if r.Kind == rules.Anomaly {
			p.bounds = map[string][]sample{}
			bound := *r
			an := *r.Anomaly
			an.Min = math.Inf(-1)
			bound.Anomaly, bound.Cooldown, bound.Actions = &an, 0, []string{}
			ps.variants[&bound] = variant{p: p, bound: true}
			vs = append(vs, &bound)
		}
	}
	ps.det = detector.New(vs, cfg)
	return ps
}

// observe takes one variant alert, that is one evaluation.
func (ps *probeSet) observe(a *detector.Alert) {
	v := ps.variants[a.Rule]
	p := v.p
	ps.key = ps.key[:0]
	for _, g := range a.Group {
		ps.key = append(ps.key, g.Value...)
		ps.key = append(ps.key, 0)
	}
	if v.bound {
		p.bounds[string(ps.key)] = append(p.bounds[string(ps.key)], sample{a.At, a.Value})
		return
	}
	g := p.groups[string(ps.key)]
	slot := floorDiv(a.At, p.window)
	switch {
	case g == nil:
		g = &probeGroup{group: groupOf(a), slot: slot, cur: a.Value, best: a.Value, bestAt: a.At}
		p.groups[string(ps.key)] = g
	case slot != g.slot:
		p.closeWindow(g)
		g.slot, g.cur = slot, a.Value
	case p.beyond(a.Value, g.cur):
		g.cur = a.Value
	}
	if p.beyond(a.Value, g.best) {
		g.best, g.bestAt = a.Value, a.At
	}
	if p.rule.Kind == rules.Threshold {
		g.evals = append(g.evals, sample{a.At, a.Value})
	}
}

// beyond reports whether v is more extreme than w in the direction the
// rule's threshold looks.
func (p *probe) beyond(v, w float64) bool {
	if p.low {
		return v < w
	}
	return v > w
}

func (p *probe) closeWindow(g *probeGroup) {
	p.peaks = append(p.peaks, g.cur)
	g.windows++
}

// Thresholds is the threshold report of one threshold or anomaly rule.
type Thresholds struct {
	// Parameter is what the candidates vary: "threshold", or "anomaly.min"
	// for anomaly rules (z and baseline stay as written).
	Parameter string `json:"parameter"`
	Aggregate string `json:"aggregate"`
	Window    string `json:"window"`
	Current   string `json:"current"`
	// Windows is the number of (group, window) pairs with at least one
	// matching event; Peak summarizes their peaks (their minimum for < and
	// <= thresholds).
	Windows    int         `json:"windows"`
	Groups     int         `json:"groups"`
	Peak       Percentiles `json:"peak"`
	Histogram  []Bin       `json:"histogram"`
	TopGroups  []GroupPeak `json:"top_groups"`
	Candidates []Candidate `json:"candidates"`
	Low        bool        `json:"low,omitempty"`
	current    float64     // the current threshold's (or min's) value, for charts
	peaks      []float64   // sorted
}

// Percentiles of the peak distribution (nearest rank).
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Bin is one bar of the peak histogram: peaks in [Lo, Hi).
type Bin struct {
	Lo    float64 `json:"lo"`
	Hi    float64 `json:"hi"`
	Count int     `json:"count"`
}

// GroupPeak is a group's highest window.
type GroupPeak struct {
	Group   Group     `json:"group"`
	Peak    float64   `json:"peak"`
	At      time.Time `json:"at"`
	Windows int       `json:"windows"`
}

// Candidate is one threshold (or anomaly min) and what it would have done
// over the period with the rule's cooldown.
type Candidate struct {
	Label     string  `json:"label"` // current, p50, p90, p99, max (joined when equal)
	Threshold string  `json:"threshold"`
	Value     float64 `json:"value"`
	Alerts    int     `json:"alerts"`
	Groups    int     `json:"groups"`
	Windows   int     `json:"windows"`
}

// histogramBins is the number of bars of the peak histogram.
const histogramBins = 40

// report closes the open windows and summarizes the probe.
func (p *probe) report() *Thresholds {
	for _, g := range p.groups {
		p.closeWindow(g)
	}
	r := p.rule
	t := &Thresholds{Parameter: "threshold", Aggregate: r.Aggregate.Text, Window: shortDuration(r.Window),
		Windows: len(p.peaks), Groups: len(p.groups), Low: p.low}
	if t.Aggregate == "" {
		t.Aggregate = "count"
	}
	slices.Sort(p.peaks)
	t.peaks = p.peaks
	if n := len(p.peaks); n > 0 {
		if p.low {
			// The extreme that matters is the lowest: read the percentiles from the bottom.
			t.Peak = Percentiles{P50: rank(p.peaks, 50, true), P90: rank(p.peaks, 90, true), P99: rank(p.peaks, 99, true), Max: p.peaks[0]}
		} else {
			t.Peak = Percentiles{P50: rank(p.peaks, 50, false), P90: rank(p.peaks, 90, false), P99: rank(p.peaks, 99, false), Max: p.peaks[n-1]}
		}
	}
	if r.Kind == rules.Anomaly {
		t.Parameter = "anomaly.min"
		t.current = r.Anomaly.Min
		t.Current = "min " + detector.FormatNumber(r.Anomaly.Min) + " (z " + detector.FormatNumber(r.Anomaly.Z) +
			" over " + shortDuration(r.Anomaly.Baseline) + ")"
	} else {
		t.current = r.Threshold.Value
		t.Current = r.Threshold.Text
	}
	t.Histogram = histogram(p.peaks, t.current)
	t.TopGroups = p.topGroups(10)
	t.Candidates = p.candidates(t)
	return t
}

// rank is the nearest-rank percentile of sorted values, from the top (or
// from the bottom when low).
func rank(sorted []float64, pct float64, low bool) float64 {
	n := len(sorted)
	i := int(math.Ceil(pct/100*float64(n))) - 1
	i = min(max(i, 0), n-1)
	if low {
		return sorted[n-1-i]
	}
	return sorted[i]
}

func histogram(sorted []float64, threshold float64) []Bin {
	if len(sorted) == 0 {
		return nil
	}
	lo, hi := math.Min(0, sorted[0]), math.Max(sorted[len(sorted)-1], threshold)
	if !(hi > lo) {
		hi = lo + 1
	}
	w := (hi - lo) / histogramBins
	bins := make([]Bin, histogramBins)
	for i := range bins {
		bins[i] = Bin{Lo: lo + float64(i)*w, Hi: lo + float64(i+1)*w}
	}
	for _, v := range sorted {
		i := min(int((v-lo)/w), histogramBins-1)
		bins[max(i, 0)].Count++
	}
	return bins
}

func (p *probe) topGroups(n int) []GroupPeak {
	gs := make([]*probeGroup, 0, len(p.groups))
	for _, g := range p.groups {
		gs = append(gs, g)
	}
	slices.SortFunc(gs, func(a, b *probeGroup) int {
		switch {
		case p.beyond(a.best, b.best):
			return -1
		case p.beyond(b.best, a.best):
			return 1
		}
		return compareStrings(a.group.String(), b.group.String())
	})
	out := make([]GroupPeak, 0, min(n, len(gs)))
	for _, g := range gs[:min(n, len(gs))] {
		out = append(out, GroupPeak{Group: g.group, Peak: g.best, At: time.Unix(0, g.bestAt).UTC(), Windows: g.windows})
	}
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// candidates are the current setting and the peak percentiles, each with
// the alerts, groups and windows it gives, by increasing value.
func (p *probe) candidates(t *Thresholds) []Candidate {
	type cand struct {
		label string
		v     float64
	}
	cs := []cand{{"current", t.current}}
	if len(p.peaks) > 0 {
		cs = append(cs, cand{"p50", t.Peak.P50}, cand{"p90", t.Peak.P90}, cand{"p99", t.Peak.P99}, cand{"max", t.Peak.Max})
	}
	slices.SortStableFunc(cs, func(a, b cand) int {
		switch {
		case a.v < b.v:
			return -1
		case a.v > b.v:
			return 1
		}
		return 0
	})
	var out []Candidate
	for _, c := range cs {
		if n := len(out); n > 0 && out[n-1].Value == c.v {
			out[n-1].Label += " = " + c.label
			continue
		}
		out = append(out, p.evaluate(c.label, c.v))
	}
	return out
}

// evaluate replays the recorded evaluations with threshold (or min) v.
func (p *probe) evaluate(label string, v float64) Candidate {
	r := p.rule
	c := Candidate{Label: label, Value: v}
	var holds func(float64) bool
	if r.Kind == rules.Anomaly {
		c.Threshold = "min: " + detector.FormatNumber(v)
		holds = func(x float64) bool { return x >= v }
		for _, evals := range p.bounds {
			p.replayGroup(evals, holds, &c)
		}
		return c
	}
	cond := rules.Condition{Op: r.Threshold.Op, Value: v}
	c.Threshold = opText[r.Threshold.Op] + " " + detector.FormatNumber(v)
	holds = cond.Holds
	for _, g := range p.groups {
		p.replayGroup(g.evals, holds, &c)
	}
	return c
}

var opText = map[rules.CmpOp]string{rules.GT: ">", rules.GE: ">=", rules.LT: "<", rules.LE: "<=", rules.EQ: "=="}

// replayGroup applies the condition and the rule's cooldown to one group's
// evaluations, as the detector does.
func (p *probe) replayGroup(evals []sample, holds func(float64) bool, c *Candidate) {
	cooldown := int64(p.rule.Cooldown)
	fired, hit := false, false
	var last int64
	lastSlot := int64(math.MinInt64)
	for _, e := range evals {
		if !holds(e.v) {
			continue
		}
		if s := floorDiv(e.at, p.window); s != lastSlot {
			c.Windows++
			lastSlot = s
		}
		if !fired || e.at-last >= cooldown {
			c.Alerts++
			fired, last, hit = true, e.at, true
		}
	}
	if hit {
		c.Groups++
	}
}

// floorDiv divides rounding toward minus infinity (times before 1970).
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// shortDuration is rules.FormatDuration without Go's trailing zero units:
// 10m, 1h, 1h30m, 7d.
func shortDuration(d time.Duration) string {
	s := rules.FormatDuration(d)
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// formatValue renders a number for tables and charts.
func formatValue(v float64) string {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	a := math.Abs(v)
	switch {
	case a >= 1e6 && v == math.Trunc(v):
		return strconv.FormatFloat(v, 'g', 4, 64)
	case a >= 100 || v == math.Trunc(v):
		return strconv.FormatFloat(math.Round(v), 'f', -1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}
