package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/backtest"
	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/replay"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
	"github.com/vigil-sec/vigil/traffic"
)

// raceBuild reports whether the test binary has the race detector, which
// slows the detector down about thirtyfold.
func raceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// storedHistory is generated traffic stored in a test database, and the
// same valid records as JSON lines in event-time order.
type storedHistory struct {
	addr, db   string
	store      *storage.Store
	from, to   time.Time
	events     int
	reqs, auds string // time-sorted JSON-lines files of the records in [from, to)
	manifest   *traffic.Manifest
}

// storeHistory generates several days of traffic with every attack and a
// few invalid lines, and stores the valid records as the daemon would.
// The span starts four days ago, so no record is past its TTL.
func storeHistory(t *testing.T) *storedHistory {
	t.Helper()
	addr, db := chtest.NewDatabase(t)
	ctx := context.Background()
	store, err := storage.Open(ctx, storage.Config{Addr: []string{addr}, Database: db, Username: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	cfg := traffic.Config{Seed: 21, Start: time.Now().UTC().Add(-4 * 24 * time.Hour).Truncate(24 * time.Hour),
		Duration: 3 * 24 * time.Hour, Rate: 1, Attacks: traffic.AttackNames(), InvalidPerMille: 2}
	if raceBuild() {
		// About a fifth of the events: the race detector slows the detector
		// and the inserts down tenfold or more.
		cfg.Duration, cfg.Rate = 26*time.Hour, 0.1
	}
	var reqBuf, audBuf bytes.Buffer
	m, err := traffic.Generate(cfg, &reqBuf, &audBuf)
	if err != nil {
		t.Fatal(err)
	}
	h := &storedHistory{addr: addr, db: db, store: store, from: m.Start, to: m.End, manifest: m}
	dir := t.TempDir()
	h.reqs = filepath.Join(dir, "requests.jsonl")
	h.auds = filepath.Join(dir, "audit.jsonl")
	began := time.Now()
	invalid := 0
	for _, f := range []struct {
		src  event.Source
		data []byte
		path string
	}{{event.Requests, reqBuf.Bytes(), h.reqs}, {event.Audit, audBuf.Bytes(), h.auds}} {
		type line struct {
			ts   int64
			id   string
			text []byte
		}
		var lines []line
		var recs []storage.Record
		var dec event.Decoder
		sc := bufio.NewScanner(bytes.NewReader(f.data))
		sc.Buffer(make([]byte, 1<<20), 2<<20)
		for sc.Scan() {
			var e event.Event
			if err := dec.Decode(f.src, sc.Bytes(), &e); err != nil {
				invalid++ // never reaches ClickHouse
				continue
			}
			e = e.Clone()
			recs = append(recs, storage.Record{Event: &e})
			if e.TS >= h.from.UnixNano() && e.TS < h.to.UnixNano() {
				lines = append(lines, line{e.TS, e.ID, slices.Clone(sc.Bytes())})
			}
		}
		for i := 0; i < len(recs); i += 100000 {
			if err := store.InsertEvents(ctx, recs[i:min(i+100000, len(recs))], storage.Token(f.src.String(), fmt.Sprint(i))); err != nil {
				t.Fatal(err)
			}
		}
		slices.SortFunc(lines, func(a, b line) int {
			if a.ts != b.ts {
				return int(a.ts - b.ts)
			}
			return strings.Compare(a.id, b.id)
		})
		var out bytes.Buffer
		for _, l := range lines {
			out.Write(l.text)
			out.WriteByte('\n')
		}
		if err := os.WriteFile(f.path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		h.events += len(lines)
	}
	if invalid == 0 {
		t.Fatal("the generator wrote no invalid line")
	}
	t.Logf("stored %s of traffic: %d events in the span, %d invalid lines left out, in %s",
		cfg.Duration, h.events, invalid, time.Since(began).Round(time.Millisecond))
	return h
}

// config writes a daemon configuration pointing at the history's database.
func (h *storedHistory) config(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vigil.yaml")
	body := fmt.Sprintf("clickhouse:\n  addr: [%q]\n  database: %s\nrules:\n  paths: [../../configs/rules]\n", h.addr, h.db)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBacktest(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse")
	}
	h := storeHistory(t)
	t.Run("alerts are replay's alerts over the same events", func(t *testing.T) { testBacktestEqualsReplay(t, h) })
	t.Run("command", func(t *testing.T) { testBacktestCommand(t, h) })
}

// Over the whole span, the backtest of the rule pack raises exactly the
// alerts `vigil replay` raises on the same records in event-time order.
func testBacktestEqualsReplay(t *testing.T, h *storedHistory) {
	set, err := rules.LoadFiles("../../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	cfg := detector.Config{}
	det := detector.New(set.Rules, cfg)
	defer det.Close()
	var want []string
	sum, err := replay.Run(replay.Options{Requests: []string{h.reqs}, Audit: []string{h.auds}}, det, func(a *detector.Alert) {
		want = append(want, string(a.AppendJSON(nil)))
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Invalid != 0 || int(sum.Events()) != h.events {
		t.Fatalf("replay read %d events and %d invalid lines, want %d and 0", sum.Events(), sum.Invalid, h.events)
	}

	var got []string
	rep, err := backtest.Run(context.Background(), h.store, backtest.Options{Rules: set, From: h.from, To: h.to, Detector: cfg,
		OnAlert: func(a *detector.Alert) { got = append(got, string(a.AppendJSON(nil))) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("same %d events: replay %.0f events/s (%s), backtest from ClickHouse %.0f events/s (%.1fs); %d alerts",
		h.events, float64(sum.Events())/sum.Elapsed.Seconds(), sum.Elapsed.Round(time.Millisecond),
		rep.EventsPerSecond, rep.ElapsedSeconds, len(got))
	if rep.Events != h.events {
		t.Errorf("backtest read %d events, want %d", rep.Events, h.events)
	}
	slices.Sort(want)
	slices.Sort(got)
	if len(want) < 10 {
		t.Fatalf("replay raised only %d alerts: the comparison proves little", len(want))
	}
	if !slices.Equal(got, want) {
		t.Errorf("backtest raised %d alerts, replay %d", len(got), len(want))
		for _, a := range got {
			if !slices.Contains(want, a) {
				t.Errorf("only in the backtest: %s", a)
			}
		}
		for _, a := range want {
			if !slices.Contains(got, a) {
				t.Errorf("only in replay: %s", a)
			}
		}
	}
	if rep.Totals.Alerts != len(got) {
		t.Errorf("report counts %d alerts, the callback saw %d", rep.Totals.Alerts, len(got))
	}
}

// runVigil runs the command line and returns the exit status and outputs.
func runVigil(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func testBacktestCommand(t *testing.T, h *storedHistory) {
	cfg := h.config(t)
	// The candidate halves auth-key-guessing's threshold; the baseline is the shipped file.
	orig, err := os.ReadFile("../../configs/rules/authentication.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cand := filepath.Join(t.TempDir(), "authentication.yaml")
	if err := os.WriteFile(cand, []byte(strings.Replace(string(orig), "threshold: '> 60'", "threshold: '> 20'", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	base := "../../configs/rules/authentication.yaml"
	// Half a day around the key-guessing attack keeps the runs short.
	var attack time.Time
	for _, a := range h.manifest.Attacks {
		if a.Name == "key-guessing" {
			attack = a.Start
		}
	}
	if attack.IsZero() {
		t.Fatal("the generator placed no key-guessing attack")
	}
	fromT := attack.Truncate(time.Hour).Add(-6 * time.Hour)
	from, to := fromT.Format(time.RFC3339), fromT.Add(12*time.Hour).Format(time.RFC3339)
	common := []string{"backtest", "--config", cfg, "--rules", cand, "--baseline", base, "--from", from, "--to", to}

	code, stdout, stderr := runVigil(append(common, "--json")...)
	if code != 0 {
		t.Fatalf("--json: exit %d\n%s", code, stderr)
	}
	var doc struct {
		Events int            `json:"events"`
		Totals backtestTotals `json:"totals"`
		Rules  []struct {
			Rule       string          `json:"rule"`
			Status     string          `json:"status"`
			Candidate  json.RawMessage `json:"candidate"`
			Baseline   json.RawMessage `json:"baseline"`
			Diff       json.RawMessage `json:"diff"`
			Thresholds *struct {
				Peak       map[string]float64 `json:"peak"`
				Candidates []map[string]any   `json:"candidates"`
				TopGroups  []map[string]any   `json:"top_groups"`
			} `json:"thresholds"`
		} `json:"rules"`
	}
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("--json output is not one JSON document: %v\n%.500s", err, stdout)
	}
	if doc.Events == 0 || len(doc.Rules) != 4 || doc.Rules[0].Rule != "auth-key-guessing" || doc.Rules[0].Status != "changed" {
		t.Errorf("--json: %d events, rules %+v", doc.Events, doc.Rules)
	}
	d := doc.Totals.Diff
	newAlerts := d.OnlyNew
	if newAlerts == 0 || d.OnlyNew+d.Both != doc.Totals.Alerts || d.OnlyOld+d.Both != doc.Totals.BaselineAlerts {
		t.Errorf("--json totals do not add up: %+v", doc.Totals)
	}
	for _, r := range doc.Rules {
		if r.Thresholds == nil || len(r.Thresholds.Candidates) == 0 || r.Thresholds.Peak["max"] == 0 || len(r.Candidate) == 0 || len(r.Diff) == 0 {
			t.Errorf("--json: rule %s lacks candidate, diff or thresholds", r.Rule)
		}
	}

	for _, tt := range []struct {
		limit string
		code  int
	}{{"", 0}, {"0", 1}, {fmt.Sprint(newAlerts - 1), 1}, {fmt.Sprint(newAlerts), 0}} {
		args := append([]string{}, common...)
		if tt.limit != "" {
			args = append(args, "--fail-on-new-alerts", tt.limit)
		}
		if code, _, stderr := runVigil(args...); code != tt.code {
			t.Errorf("--fail-on-new-alerts %q with %d new alerts: exit %d, want %d\n%s", tt.limit, newAlerts, code, tt.code, stderr)
		} else if tt.code == 1 && !strings.Contains(stderr, "only in the candidate set") {
			t.Errorf("exit 1 without saying why: %s", stderr)
		}
	}

	html := filepath.Join(t.TempDir(), "report.html")
	// Both files after one --rules belong to the candidate set, and define the same ids.
	if code, _, stderr := runVigil("backtest", "--config", cfg, "--rules", cand, base, "--from", from, "--to", to); code != 2 ||
		!strings.Contains(stderr, "auth-key-guessing") {
		t.Errorf("two sets under --rules: exit %d, want 2 with the duplicate id\n%s", code, stderr)
	}
	code, stdout, stderr = runVigil(append(common, "--thresholds", "--html", html)...)
	if code != 0 {
		t.Fatalf("--html: exit %d\n%s", code, stderr)
	}
	page, err := os.ReadFile(html)
	if err != nil || !bytes.Contains(page, []byte("<svg")) || !bytes.Contains(page, []byte(`id="rule-auth-key-guessing"`)) {
		t.Errorf("--html: %v, %d bytes without the charts", err, len(page))
	}
	for _, want := range []string{"RULE", "auth-key-guessing", "changed", "ONLY NEW", "Threshold suggestions", "> 20"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("text report lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stderr, "\r") {
		t.Error("a progress line went to a stderr that is not a terminal")
	}

	// Lowering the threshold of a rule without cooldown only adds alerts:
	// every old alert comes again for the same group and window.
	lowered := func(threshold string) string {
		p := filepath.Join(t.TempDir(), "guessing.yaml")
		body := "rules:\n  - id: guessing\n    source: requests\n    where: 'status == 401'\n    group_by: [ip]\n" +
			"    window: 10m\n    threshold: '" + threshold + "'\n    cooldown: 0\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	code, stdout, stderr = runVigil("backtest", "--config", cfg, "--rules", lowered("> 25"), "--baseline", lowered("> 50"),
		"--from", from, "--to", to, "--json")
	if code != 0 {
		t.Fatalf("lowered threshold: exit %d\n%s", code, stderr)
	}
	var low struct {
		Totals backtestTotals `json:"totals"`
	}
	if err := json.Unmarshal([]byte(stdout), &low); err != nil {
		t.Fatal(err)
	}
	lt := low.Totals
	if lt.BaselineAlerts == 0 || lt.Alerts <= lt.BaselineAlerts || lt.Diff.OnlyOld != 0 || lt.Diff.Both != lt.BaselineAlerts ||
		lt.Diff.OnlyNew != lt.Alerts-lt.BaselineAlerts {
		t.Errorf("lowered threshold without cooldown: %+v, want every baseline alert in both and the rest only new", lt)
	}

	for _, args := range [][]string{
		{"backtest"},
		{"backtest", "--config", cfg, "--rules", cand},
		{"backtest", "--config", cfg, "--rules", cand, "--from", "yesterday"},
		{"backtest", "--config", cfg, "--rules", cand, "--from", to, "--to", from},
		{"backtest", "--config", cfg, "--rules", "no-such-rules.yaml", "--from", "7d"},
		{"backtest", "--config", "no-such-config.yaml", "--rules", cand, "--from", "7d"},
		{"backtest", "--config", cfg, "--rules", cand, "--baseline", "no-such-dir", "--from", "7d"},
	} {
		if code, _, _ := runVigil(args...); code != 2 {
			t.Errorf("vigil %s: exit %d, want 2", strings.Join(args, " "), code)
		}
	}
}

func TestSpreadLists(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"--rules a b c --from 7d", "--rules a --rules b --rules c --from 7d"},
		{"--rules=a b --json", "--rules=a b --json"},
		{"--baseline x --rules a -json", "--baseline x --rules a -json"},
		{"-rules a b --baseline c d", "-rules a -rules b --baseline c --baseline d"},
		{"--rules", "--rules"},
		{"--rules a -- b", "--rules a -- b"},
	} {
		if got := strings.Join(spreadLists(strings.Fields(tt.in), "rules", "baseline"), " "); got != tt.want {
			t.Errorf("spreadLists(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseWhen(t *testing.T) {
	now := time.Date(2026, 11, 22, 18, 30, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
	}{
		{"now", now},
		{"2026-11-20T06:00:00Z", time.Date(2026, 11, 20, 6, 0, 0, 0, time.UTC)},
		{"2026-11-20T07:00:00.5+01:00", time.Date(2026, 11, 20, 6, 0, 0, 5e8, time.UTC)},
		{"2026-11-20", time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)},
		{"7d", now.Add(-7 * 24 * time.Hour)},
		{"-36h", now.Add(-36 * time.Hour)},
		{"1d12h", now.Add(-36 * time.Hour)},
	} {
		got, err := parseWhen(tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-13-01", "7x"} {
		if _, err := parseWhen(bad, now); err == nil {
			t.Errorf("parseWhen(%q) is not an error", bad)
		}
	}
}

func TestProgressLine(t *testing.T) {
	var buf bytes.Buffer
	p := &progressLine{w: &buf}
	p.update(backtest.Progress{Events: 50000, At: time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC), Done: 0.25, Elapsed: 10 * time.Second})
	p.update(backtest.Progress{Events: 50001, Done: 0.26, Elapsed: 10 * time.Second}) // too soon: not drawn
	p.clear()
	want := "\r\x1b[Kbacktest: 2026-11-21T12:00Z   25%  50000 events  5000 events/s  ETA 30s\r\x1b[K"
	if buf.String() != want {
		t.Errorf("progress output %q, want %q", buf.String(), want)
	}
	if isTerminal(&buf) {
		t.Error("a buffer is a terminal")
	}
	var none *progressLine
	none.clear() // no progress line: nothing to clear
}

// backtestTotals is the totals object of `vigil backtest --json`.
type backtestTotals struct {
	Alerts         int `json:"alerts"`
	BaselineAlerts int `json:"baseline_alerts"`
	Diff           struct {
		OnlyNew int `json:"only_new"`
		OnlyOld int `json:"only_old"`
		Both    int `json:"both"`
	} `json:"diff"`
}
