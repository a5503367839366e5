package backtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/traffic"
)

// history is generated traffic with every attack that fits: two quiet
// days (about 400,000 events), or the busy third of one under the race
// detector, which slows the detector down about thirtyfold.
func history(t testing.TB) *generated {
	if raceEnabled {
		return generate(t, "race", traffic.Config{Seed: 5, Start: traffic.DefaultStart.Add(8 * time.Hour), Duration: 8 * time.Hour,
			Rate: 0.3, Attacks: traffic.AttackNames()})
	}
	return generate(t, "full", traffic.Config{Seed: 5, Duration: 48 * time.Hour, Rate: 0.5, Attacks: traffic.AttackNames()})
}

func run(t testing.TB, g *generated, opts Options) *Report {
	t.Helper()
	if opts.From.IsZero() {
		opts.From, opts.To = g.from, g.to
	}
	rep, err := Run(context.Background(), &memSource{g.events}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func ruleReport(t testing.TB, rep *Report, id string) RuleReport {
	t.Helper()
	for _, r := range rep.Rules {
		if r.Rule == id {
			return r
		}
	}
	t.Fatalf("no rule %s in the report", id)
	return RuleReport{}
}

// The threshold suggestions predict alerts exactly: a rule set rebuilt with
// a candidate's threshold (or anomaly min) raises as many alerts in as many
// groups as the candidate row said — and the "current" row is the rule's
// own count.
func TestThresholdCandidatesPredictTheAlertsExactly(t *testing.T) {
	g := history(t)
	set := loadRules(t, "../configs/rules")
	rep := run(t, g, Options{Rules: set, Thresholds: true})

	checked := 0
	for _, pick := range []string{"p90", "p99"} {
		var rebuilt []*rules.Rule
		want := map[string]Candidate{}
		for _, r := range set.Rules {
			rr := ruleReport(t, rep, r.ID)
			th := rr.Thresholds
			if r.Kind != rules.Threshold && r.Kind != rules.Anomaly {
				if th != nil {
					t.Errorf("%s (%s) has threshold suggestions", r.ID, r.Kind)
				}
				continue
			}
			if th == nil {
				t.Fatalf("%s has no threshold suggestions", r.ID)
			}
			checkDistribution(t, r.ID, th)
			for _, c := range th.Candidates {
				if strings.Contains(c.Label, "current") && (c.Alerts != rr.Candidate.Alerts || c.Groups != rr.Candidate.Groups) {
					t.Errorf("%s: current setting predicts %d alerts in %d groups; the rule raised %d in %d",
						r.ID, c.Alerts, c.Groups, rr.Candidate.Alerts, rr.Candidate.Groups)
				}
				if !strings.Contains(c.Label, pick) {
					continue
				}
				v := *r
				v.Hash += "-" + pick
				if r.Kind == rules.Anomaly {
					an := *r.Anomaly
					an.Min = c.Value
					v.Anomaly = &an
				} else {
					cond, err := rules.ParseCondition(c.Threshold)
					if err != nil {
						t.Fatal(err)
					}
					v.Threshold = cond
				}
				rebuilt = append(rebuilt, &v)
				want[r.ID] = c
			}
		}
		got := run(t, g, Options{Rules: &rules.Set{Rules: rebuilt}})
		for id, c := range want {
			rr := ruleReport(t, got, id)
			if rr.Candidate.Alerts != c.Alerts || rr.Candidate.Groups != c.Groups {
				t.Errorf("%s with %s (%s): %d alerts in %d groups, predicted %d in %d",
					id, c.Threshold, pick, rr.Candidate.Alerts, rr.Candidate.Groups, c.Alerts, c.Groups)
			}
			if c.Alerts > 0 {
				checked++
			}
		}
	}
	t.Logf("%d candidate predictions with alerts checked", checked)
	if checked < 5 {
		t.Errorf("only %d candidate predictions with alerts were checked", checked)
	}
}

func checkDistribution(t *testing.T, id string, th *Thresholds) {
	t.Helper()
	p := th.Peak
	if th.Windows > 0 && !(p.P50 <= p.P90 && p.P90 <= p.P99 && p.P99 <= p.Max) {
		t.Errorf("%s: percentiles out of order: %+v", id, p)
	}
	n := 0
	for _, b := range th.Histogram {
		n += b.Count
	}
	if n != th.Windows {
		t.Errorf("%s: histogram holds %d windows, want %d", id, n, th.Windows)
	}
	if th.Windows > 0 && (len(th.TopGroups) == 0 || th.TopGroups[0].Peak != p.Max) {
		t.Errorf("%s: top group %+v does not hold the max peak %v", id, th.TopGroups, p.Max)
	}
	for i := 1; i < len(th.Candidates); i++ {
		a, b := th.Candidates[i-1], th.Candidates[i]
		if !(a.Value < b.Value) || b.Alerts > a.Alerts || b.Windows > a.Windows {
			t.Errorf("%s: candidates %+v then %+v: want increasing values, fewer alerts", id, a, b)
		}
	}
}

const diffRules = `rules:
  - id: guessing
    source: requests
    where: 'status == 401'
    group_by: [ip]
    window: 10m
    threshold: '%s'
    cooldown: 0
  - id: guessing-cooled
    source: requests
    where: 'status == 401'
    group_by: [ip]
    window: 10m
    threshold: '%s'
  - id: same-in-both
    source: audit
    where: 'status != "success"'
    group_by: [actor_id]
    window: 15m
    threshold: '>= 10'
  - id: %s
    source: requests
    where: 'status == 429'
    group_by: [api_key_id]
    window: 1m
    threshold: '> 20'
`

func parseRules(t testing.TB, text string) *rules.Set {
	t.Helper()
	rs, errs := rules.Parse("rules.yaml", []byte(text))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return &rules.Set{Rules: rs, Files: []string{"rules.yaml"}}
}

// Lowering a threshold of a rule without cooldown only adds alerts: every
// alert of the old rule is raised again for the same group and window.
func TestDiffOfALoweredThreshold(t *testing.T) {
	g := history(t)
	old := parseRules(t, fmt.Sprintf(diffRules, "> 60", "> 60", "errors-old"))
	cand := parseRules(t, fmt.Sprintf(diffRules, "> 20", "> 20", "errors-new"))
	rep := run(t, g, Options{Rules: cand, Baseline: old})
	base := run(t, g, Options{Rules: old})

	lowered := ruleReport(t, rep, "guessing")
	was := ruleReport(t, base, "guessing").Candidate.Alerts
	d := lowered.Diff
	if lowered.Status != "changed" || was == 0 || lowered.Candidate.Alerts <= was {
		t.Fatalf("guessing: status %s, %d alerts, %d before: want changed and more alerts", lowered.Status, lowered.Candidate.Alerts, was)
	}
	if d.OnlyOld != 0 || d.Both != was || d.OnlyNew != lowered.Candidate.Alerts-was || lowered.Baseline.Alerts != was {
		t.Errorf("guessing: diff %+v (baseline %d alerts), want only new %d, only old 0, both %d",
			d, lowered.Baseline.Alerts, lowered.Candidate.Alerts-was, was)
	}
	if len(d.OnlyNewExamples) == 0 || len(d.OnlyOldExamples) != 0 || d.OnlyNewExamples[0].Value <= 20 || d.OnlyNewExamples[0].Value > 60 {
		t.Errorf("guessing: examples %+v / %+v", d.OnlyNewExamples, d.OnlyOldExamples)
	}

	// With a cooldown, a lower threshold fires earlier in the same burst:
	// the old alert's window moves, so it shows on both sides.
	cooled := ruleReport(t, rep, "guessing-cooled")
	if cd := cooled.Diff; cd.OnlyNew+cd.Both != cooled.Candidate.Alerts || cd.OnlyOld+cd.Both != cooled.Baseline.Alerts {
		t.Errorf("guessing-cooled: diff %+v does not add up to %d and %d alerts", cd, cooled.Candidate.Alerts, cooled.Baseline.Alerts)
	}

	same := ruleReport(t, rep, "same-in-both")
	if same.Status != "unchanged" || same.Diff.Both != same.Candidate.Alerts || same.Diff.OnlyNew+same.Diff.OnlyOld != 0 ||
		same.Candidate.Alerts != ruleReport(t, base, "same-in-both").Candidate.Alerts {
		t.Errorf("same-in-both: %s, %d alerts, diff %+v", same.Status, same.Candidate.Alerts, same.Diff)
	}
	added, removed := ruleReport(t, rep, "errors-new"), ruleReport(t, rep, "errors-old")
	if added.Status != "added" || added.Baseline != nil || added.Diff.OnlyNew != added.Candidate.Alerts || added.Diff.Both != 0 {
		t.Errorf("errors-new: %s, diff %+v", added.Status, added.Diff)
	}
	if removed.Status != "removed" || removed.Candidate != nil || removed.Diff.OnlyOld != ruleReport(t, base, "errors-old").Candidate.Alerts {
		t.Errorf("errors-old: %s, diff %+v", removed.Status, removed.Diff)
	}
	if added.Candidate.Alerts == 0 {
		t.Error("the added rule raised nothing: the test checks nothing")
	}
	tot := rep.Totals
	if tot.Diff.OnlyNew+tot.Diff.Both != tot.Alerts || tot.Diff.OnlyOld+tot.Diff.Both != *tot.BaselineAlerts || tot.OnlyNew() != tot.Diff.OnlyNew {
		t.Errorf("totals do not add up: %+v, diff %+v", tot, *tot.Diff)
	}
}

func TestProgressReachesTheEnd(t *testing.T) {
	g := history(t)
	var last Progress
	calls := 0
	rep := run(t, g, Options{Rules: parseRules(t, fmt.Sprintf(diffRules, "> 60", "> 60", "x")), Progress: func(p Progress) {
		if p.Done < last.Done || p.Events <= last.Events {
			t.Errorf("progress went back: %+v after %+v", p, last)
		}
		last = p
		calls++
	}})
	if calls < 2 || last.Events != rep.Events || last.Done < 0.99 {
		t.Errorf("%d progress calls, last %+v, %d events", calls, last, rep.Events)
	}
	if (Progress{Done: 0.25, Elapsed: time.Minute}).ETA() != 3*time.Minute {
		t.Error("ETA of a quarter done after a minute is not three minutes")
	}
}

type failingSource struct{ err error }

func (f failingSource) History(context.Context, time.Time, time.Time, func([]event.Event) error) (int, error) {
	return 0, f.err
}

func TestRunReportsTheSourcesError(t *testing.T) {
	boom := errors.New("connection refused")
	set := parseRules(t, fmt.Sprintf(diffRules, "> 60", "> 60", "x"))
	if _, err := Run(context.Background(), failingSource{boom}, Options{Rules: set, From: time.Unix(0, 0), To: time.Unix(60, 0)}); !errors.Is(err, boom) {
		t.Errorf("Run = %v, want %v", err, boom)
	}
	if _, err := Run(context.Background(), failingSource{boom}, Options{Rules: set, From: time.Unix(60, 0), To: time.Unix(60, 0)}); err == nil {
		t.Error("an empty range is not an error")
	}
}

// The JSON document has the documented shape.
func TestJSONShape(t *testing.T) {
	g := history(t)
	old := parseRules(t, fmt.Sprintf(diffRules, "> 60", "> 60", "errors-old"))
	cand := parseRules(t, fmt.Sprintf(diffRules, "> 20", "> 20", "errors-new"))
	rep := run(t, g, Options{Rules: cand, Baseline: old, Thresholds: true, Detector: detector.Config{Shards: 2}})
	var buf bytes.Buffer
	if err := WriteJSON(&buf, rep); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"from", "to", "days", "events", "requests", "audit", "events_per_second", "rule_files",
		"baseline_files", "series_step", "totals", "rules"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("no %q in the document", k)
		}
	}
	rs := doc["rules"].([]any)
	if len(rs) != 5 {
		t.Fatalf("%d rules, want 5 (4 candidate, 1 removed)", len(rs))
	}
	first := rs[0].(map[string]any)
	for _, k := range []string{"rule", "kind", "source", "severity", "mode", "status", "candidate", "baseline", "diff", "thresholds"} {
		if _, ok := first[k]; !ok {
			t.Errorf("no %q in a rule", k)
		}
	}
	th := first["thresholds"].(map[string]any)
	for _, k := range []string{"parameter", "aggregate", "window", "current", "windows", "peak", "histogram", "top_groups", "candidates"} {
		if _, ok := th[k]; !ok {
			t.Errorf("no %q in thresholds", k)
		}
	}
	top := th["top_groups"].([]any)[0].(map[string]any)
	if grp, ok := top["group"].(map[string]any); !ok || grp["ip"] == nil {
		t.Errorf("top group %v: want a group object with ip", top)
	}
	series := first["candidate"].(map[string]any)["series"].([]any)
	if want := int(math.Ceil(rep.To.Sub(rep.From).Hours())); len(series) != want {
		t.Errorf("%d hourly bars, want %d", len(series), want)
	}
}

func TestTextTable(t *testing.T) {
	g := history(t)
	old := parseRules(t, fmt.Sprintf(diffRules, "> 60", "> 60", "errors-old"))
	cand := parseRules(t, fmt.Sprintf(diffRules, "> 20", "> 20", "errors-new"))
	rep := run(t, g, Options{Rules: cand, Baseline: old, Thresholds: true})
	var buf bytes.Buffer
	if err := WriteText(&buf, rep, true); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"RULE", "ONLY NEW", "guessing ", "changed", "errors-old", "removed", "TOTAL",
		"alerts only in the candidate set", "Threshold suggestions", "THRESHOLD", "current", "p99"} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
}
