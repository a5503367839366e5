package backtest

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteJSON writes the report as one JSON document.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report as tables for a terminal; thresholds adds
// the threshold suggestions.
func WriteText(w io.Writer, rep *Report, thresholds bool) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "backtest %s .. %s (%s days): %d events (%d requests, %d audit) in %s, %.0f events/s\n",
		rep.From.Format(time.RFC3339), rep.To.Format(time.RFC3339), strconv.FormatFloat(rep.Days, 'f', -1, 64),
		rep.Events, rep.Requests, rep.Audit, (time.Duration(rep.ElapsedSeconds * float64(time.Second))).Round(time.Millisecond),
		rep.EventsPerSecond)
	fmt.Fprintf(ew, "rules: %s\n", strings.Join(rep.RuleFiles, " "))
	if rep.Compared() {
		fmt.Fprintf(ew, "baseline: %s\n", strings.Join(rep.BaselineFiles, " "))
	}
	fmt.Fprintln(ew)

	wide := len("TOTAL")
	for _, r := range rep.Rules {
		wide = max(wide, len(r.Rule))
	}
	if rep.Compared() {
		fmt.Fprintf(ew, "%-*s  %-9s %8s %7s %8s %9s %9s %9s %8s\n", wide, "RULE", "STATUS", "ALERTS", "GROUPS", "PER DAY",
			"BASELINE", "ONLY NEW", "ONLY OLD", "BOTH")
	} else {
		fmt.Fprintf(ew, "%-*s  %-7s %8s %7s %8s\n", wide, "RULE", "MODE", "ALERTS", "GROUPS", "PER DAY")
	}
	for _, r := range rep.Rules {
		alerts, groups, perDay := "-", "-", "-"
		if c := r.Candidate; c != nil {
			alerts, groups, perDay = strconv.Itoa(c.Alerts), strconv.Itoa(c.Groups), strconv.FormatFloat(c.AlertsPerDay, 'f', 2, 64)
		}
		if !rep.Compared() {
			fmt.Fprintf(ew, "%-*s  %-7s %8s %7s %8s\n", wide, r.Rule, r.Mode, alerts, groups, perDay)
			continue
		}
		base := "-"
		if r.Baseline != nil {
			base = strconv.Itoa(r.Baseline.Alerts)
		}
		fmt.Fprintf(ew, "%-*s  %-9s %8s %7s %8s %9s %9d %9d %8d\n", wide, r.Rule, r.Status, alerts, groups, perDay, base,
			r.Diff.OnlyNew, r.Diff.OnlyOld, r.Diff.Both)
	}
	t := rep.Totals
	if rep.Compared() {
		fmt.Fprintf(ew, "%-*s  %-9s %8d %7s %8.2f %9d %9d %9d %8d\n", wide, "TOTAL", "", t.Alerts, "", perDay(t.Alerts, rep.Days),
			*t.BaselineAlerts, t.Diff.OnlyNew, t.Diff.OnlyOld, t.Diff.Both)
	} else {
		fmt.Fprintf(ew, "%-*s  %-7s %8d %7s %8.2f\n", wide, "TOTAL", "", t.Alerts, "", perDay(t.Alerts, rep.Days))
	}

	if rep.Compared() {
		for _, r := range rep.Rules {
			writeExamples(ew, r.Rule, "only in the candidate set", r.Diff.OnlyNew, r.Diff.OnlyNewExamples)
			writeExamples(ew, r.Rule, "only in the baseline", r.Diff.OnlyOld, r.Diff.OnlyOldExamples)
		}
	}
	if thresholds {
		writeThresholds(ew, rep)
	}
	return ew.err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

func perDay(n int, days float64) float64 {
	if days <= 0 {
		return 0
	}
	return float64(n) / days
}

func writeExamples(w io.Writer, rule, what string, n int, xs []AlertSummary) {
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s: %s %s", rule, plural(n, "alert"), what)
	if n > len(xs) {
		fmt.Fprintf(w, ", the first %d", len(xs))
	}
	fmt.Fprintln(w, ":")
	for _, a := range xs {
		fmt.Fprintf(w, "  %s  %s  value %s (%s)\n", a.At.Format(time.RFC3339), a.Group, formatValue(a.Value), a.Threshold)
	}
}

func writeThresholds(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "\nThreshold suggestions: each group's peak of the aggregate per window, and what other settings would have raised\n")
	found := false
	for _, r := range rep.Rules {
		t := r.Thresholds
		if t == nil {
			continue
		}
		found = true
		fmt.Fprintf(w, "\n%s — %s\n", r.Rule, r.Candidate.Condition)
		if t.Windows == 0 {
			fmt.Fprintln(w, "  no matching events in the period")
			continue
		}
		extreme := "peak"
		if t.Low {
			extreme = "low point (the threshold looks down)"
		}
		fmt.Fprintf(w, "  %d windows in %d groups; %s p50 %s, p90 %s, p99 %s, max %s\n", t.Windows, t.Groups, extreme,
			formatValue(t.Peak.P50), formatValue(t.Peak.P90), formatValue(t.Peak.P99), formatValue(t.Peak.Max))
		if len(t.TopGroups) > 0 {
			fmt.Fprintln(w, "  top groups:")
			for _, g := range t.TopGroups {
				fmt.Fprintf(w, "    %-12s %s at %s (%s)\n", formatValue(g.Peak), g.Group, g.At.Format(time.RFC3339), plural(g.Windows, "window"))
			}
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "  %s\t\tALERTS\tGROUPS\tWINDOWS\t\n", strings.ToUpper(t.Parameter))
		for _, c := range t.Candidates {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%d\t\n", c.Threshold, c.Label, c.Alerts, c.Groups, c.Windows)
		}
		tw.Flush()
	}
	if !found {
		fmt.Fprintln(w, "  (no threshold or anomaly rules)")
	}
}

// errWriter keeps the first write error so the formatting code stays flat.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
