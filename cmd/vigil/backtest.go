package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-sec/vigil/backtest"
	"github.com/vigil-sec/vigil/rules"
)

// cmdBacktest is `vigil backtest`: candidate rules (and the baseline) over
// the events stored in ClickHouse. Exit status 0, 1 when
// --fail-on-new-alerts is exceeded, 2 for usage and I/O errors.
func cmdBacktest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil backtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "daemon configuration file: the ClickHouse database and detector settings (required)")
	var ruleFiles, baseFiles stringList
	fs.Var(&ruleFiles, "rules", "candidate rule files or directories (required; repeatable, and the non-flag arguments after it are taken too)")
	fs.Var(&baseFiles, "baseline", "baseline rule files or directories, usually the rules in force, to compare with (same forms as --rules)")
	fromFlag := fs.String("from", "", "start of the period: RFC 3339, YYYY-MM-DD (UTC) or a duration back from now such as 7d (required)")
	toFlag := fs.String("to", "now", "end of the period, excluded: same forms as --from, or now")
	jsonOut := fs.Bool("json", false, "print the report as one JSON document instead of tables")
	htmlFile := fs.String("html", "", "also write a self-contained HTML report to this file")
	failOn := fs.Int("fail-on-new-alerts", -1, "exit 1 when more than N alerts are only in the candidate set (without --baseline: all its alerts); -1 never")
	thresholds := fs.Bool("thresholds", false, "print threshold suggestions for threshold and anomaly rules (always in --json and --html)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: vigil backtest --config FILE --rules PATH... [--baseline PATH...] --from T [--to T]\n"+
			"                      [--json] [--html FILE] [--fail-on-new-alerts N] [--thresholds]\n\n"+
			"Runs the candidate rules, and the baseline rules, over the events stored in ClickHouse in\n"+
			"[--from, --to) with the daemon's detector, and reports per rule the alerts, groups, alerts per\n"+
			"day, the difference from the baseline and threshold suggestions. See docs/tuning.md.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(spreadLists(args, "rules", "baseline")); err != nil {
		return 2
	}
	if *cfgPath == "" || len(ruleFiles) == 0 || *fromFlag == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	now := time.Now().UTC()
	from, err := parseWhen(*fromFlag, now)
	if err != nil {
		fmt.Fprintf(stderr, "vigil backtest: --from: %v\n", err)
		return 2
	}
	to, err := parseWhen(*toFlag, now)
	if err != nil {
		fmt.Fprintf(stderr, "vigil backtest: --to: %v\n", err)
		return 2
	}
	if !from.Before(to) {
		fmt.Fprintf(stderr, "vigil backtest: --from %s is not before --to %s\n", from.Format(time.RFC3339), to.Format(time.RFC3339))
		return 2
	}
	cand, err := rules.LoadFiles(ruleFiles...)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 2
	}
	var base *rules.Set
	if len(baseFiles) > 0 {
		if base, err = rules.LoadFiles(baseFiles...); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			return 2
		}
	}
	cfg, store, err := openConfigStore(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "vigil backtest: %v\n", err)
		return 2
	}
	defer store.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := backtest.Options{Rules: cand, Baseline: base, From: from, To: to,
		Thresholds: *thresholds || *jsonOut || *htmlFile != "",
		Detector:   detectorConfig(cfg)}
	var progress *progressLine
	if isTerminal(stderr) {
		progress = &progressLine{w: stderr}
		opts.Progress = progress.update
	}
	rep, err := backtest.Run(ctx, store, opts)
	progress.clear()
	if err != nil {
		fmt.Fprintf(stderr, "vigil backtest: %v\n", err)
		return 2
	}
	if *jsonOut {
		err = backtest.WriteJSON(stdout, rep)
	} else {
		err = backtest.WriteText(stdout, rep, *thresholds)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vigil backtest: %v\n", err)
		return 2
	}
	if *htmlFile != "" {
		if err := writeHTMLReport(*htmlFile, rep); err != nil {
			fmt.Fprintf(stderr, "vigil backtest: %v\n", err)
			return 2
		}
		fmt.Fprintf(stderr, "vigil backtest: HTML report in %s\n", *htmlFile)
	}
	if n := rep.Totals.OnlyNew(); *failOn >= 0 && n > *failOn {
		fmt.Fprintf(stderr, "vigil backtest: %d alerts only in the candidate set, more than --fail-on-new-alerts %d\n", n, *failOn)
		return 1
	}
	return 0
}

func writeHTMLReport(path string, rep *backtest.Report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := backtest.WriteHTML(f, rep); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// spreadLists lets a list flag take several values: "--rules a b --x"
// becomes "--rules a --rules b --x", so shell globs work.
func spreadLists(args []string, names ...string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			return append(out, args[i+1:]...)
		}
		if !strings.HasPrefix(a, "-") || strings.Contains(a, "=") || !slices.Contains(names, strings.TrimLeft(a, "-")) || i+1 == len(args) {
			continue
		}
		i++
		out = append(out, args[i])
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			out = append(out, a, args[i])
		}
	}
	return out
}

// parseWhen reads a point in time: now, RFC 3339, a date (midnight UTC) or
// a duration back from now ("7d", "36h", also written "-7d").
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if d, err := rules.ParseDuration(strings.TrimPrefix(s, "-")); err == nil {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q: use RFC 3339 (2026-11-22T18:00:00Z), a date (2026-11-22), a duration back from now (7d, 36h) or now", s)
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressLine redraws one status line on a terminal, at most a few times
// a second.
type progressLine struct {
	w     io.Writer
	last  time.Time
	drawn bool
}

func (p *progressLine) update(pr backtest.Progress) {
	if time.Since(p.last) < 200*time.Millisecond {
		return
	}
	p.last = time.Now()
	rate := float64(pr.Events) / max(pr.Elapsed.Seconds(), 1e-9)
	eta := "…"
	if pr.Done > 0.01 {
		eta = pr.ETA().Round(time.Second).String()
	}
	fmt.Fprintf(p.w, "\r\033[Kbacktest: %s  %3.0f%%  %d events  %.0f events/s  ETA %s",
		pr.At.Format("2006-01-02T15:04Z"), pr.Done*100, pr.Events, rate, eta)
	p.drawn = true
}

func (p *progressLine) clear() {
	if p != nil && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
