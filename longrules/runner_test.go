package longrules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

// collector gathers emitted alerts and, with store set, stores them as the
// daemon does.
type collector struct {
	mu     sync.Mutex
	store  *storage.Store
	alerts []*detector.Alert
}

func (c *collector) emit(a *detector.Alert) {
	if c.store != nil {
		if err := c.store.InsertAlerts(context.Background(), []*detector.Alert{a}); err != nil {
			panic(err)
		}
	}
	c.mu.Lock()
	c.alerts = append(c.alerts, a)
	c.mu.Unlock()
}

// take returns the alerts emitted since the last call as group=value.
func (c *collector) take() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, a := range c.alerts {
		out = append(out, groupJSON(a)+"="+detector.FormatNumber(a.Value))
	}
	c.alerts = nil
	return out
}

func newRunner(t *testing.T, s *storage.Store, db string, rs []*rules.Rule, c *collector, namespaces map[string]string) *Runner {
	t.Helper()
	rn := NewRunner(RunnerConfig{Store: s, Database: db, Rules: rs, Emit: c.emit, Namespaces: namespaces})
	if rn.initErr != nil {
		t.Fatal(rn.initErr)
	}
	return rn
}

func evaluate(t *testing.T, rn *Runner) {
	t.Helper()
	if err := rn.Evaluate(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// spread returns n request lines at t0-span ... t0 with ids prefix0...
func spread(n int, span time.Duration, prefix string, kv ...any) []string {
	out := make([]string, n)
	for i := range out {
		at := t0.Add(-span + time.Duration(i)*span/time.Duration(max(1, n-1)))
		out[i] = req(at, fmt.Sprintf("%s%02d", prefix, i), kv...)
	}
	return out
}

func TestThresholdRulesFireForTheGroupsOverTheirThreshold(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rule  string
		src   event.Source
		lines [][]string
		want  []string
	}{
		{
			name: "a 7-day count by ip fires once for the address above the threshold",
			rule: `
    where: 'status in [401, 403]'
    group_by: [ip]
    window: 7d
    threshold: '> 10'`,
			lines: [][]string{
				spread(12, 6*day, "a", "ip", "203.0.113.1", "status", 401),
				spread(8, 6*day, "b", "ip", "203.0.113.2", "status", 403),
				spread(5, 6*day, "c", "ip", "203.0.113.2", "status", 200),
				// Older than the window: not counted.
				spread(15, day, "d", "ip", "203.0.113.3", "status", 401, "ts", t0.Add(-8*day).Format(time.RFC3339)),
				{req(t0, "d99", "ip", "203.0.113.3", "status", 401)},
			},
			want: []string{`{"ip":"203.0.113.1"}=12`},
		},
		{
			name: "sum of bytes_out by org",
			rule: `
    group_by: [org_id]
    window: 14d
    aggregate: sum(bytes_out)
    threshold: '>= 6000'`,
			lines: [][]string{
				spread(6, 10*day, "a", "org_id", "org_1", "bytes_out", 1000),
				spread(5, 10*day, "b", "org_id", "org_2", "bytes_out", 1000),
			},
			want: []string{`{"org_id":"org_1"}=6000`},
		},
		{
			name: "distinct namespaces by key and status",
			rule: `
    group_by: [api_key_id, status]
    window: 30d
    aggregate: distinct(namespace)
    threshold: '>= 3'`,
			lines: [][]string{
				spread(1, day, "a", "api_key_id", "key_1", "namespace", "ns_a"),
				spread(2, 2*day, "b", "api_key_id", "key_1", "namespace", "ns_b"),
				spread(3, 3*day, "c", "api_key_id", "key_1", "namespace", "ns_c"),
				spread(3, 3*day, "d", "api_key_id", "key_1", "namespace", "ns_d", "status", 404),
				spread(4, 4*day, "e", "api_key_id", "key_2", "namespace", "ns_a"),
				spread(2, 4*day, "f", "api_key_id", "key_2", "namespace", "ns_b"),
			},
			want: []string{`{"api_key_id":"key_1","status":200}=3`},
		},
		{
			name: "ratio of server errors with min_events",
			rule: `
    group_by: [ip]
    window: 7d
    aggregate: ratio(status >= 500)
    min_events: 4
    threshold: '> 0.5'`,
			lines: [][]string{
				spread(3, 5*day, "a", "ip", "203.0.113.1", "status", 503), // 3/3, under min_events
				spread(4, 5*day, "b", "ip", "203.0.113.2", "status", 500),
				spread(1, 5*day, "c", "ip", "203.0.113.2", "status", 200), // 4/5
				spread(1, 5*day, "d", "ip", "203.0.113.3", "status", 500),
				spread(4, 5*day, "e", "ip", "203.0.113.3", "status", 200), // 1/5
			},
			want: []string{`{"ip":"203.0.113.2"}=0.8`},
		},
		{
			name: "where with in, startsWith, cidr, and, or, not",
			rule: `
    where: '(status in [401, 403] || route startsWith "/admin") && !cidr(ip, "10.0.0.0/8")'
    group_by: [ip]
    window: 7d
    threshold: '> 2'`,
			lines: [][]string{
				spread(2, 3*day, "a", "ip", "203.0.113.5", "status", 401),
				spread(1, 3*day, "b", "ip", "203.0.113.5", "route", "/admin/users"),
				spread(4, 3*day, "c", "ip", "203.0.113.5", "route", "/v1/x"),
				spread(5, 3*day, "d", "ip", "10.0.0.7", "status", 401),
				spread(2, 3*day, "e", "ip", "203.0.113.6", "status", 403),
			},
			want: []string{`{"ip":"203.0.113.5"}=3`},
		},
		{
			name: "no group_by is one group",
			rule: `
    where: 'operation == "upload"'
    window: 7d
    threshold: '>= 3'`,
			lines: [][]string{
				spread(3, 2*day, "a", "operation", "upload", "ip", "203.0.113.1"),
				spread(3, 2*day, "b", "operation", "search", "ip", "203.0.113.2"),
			},
			want: []string{`{}=3`},
		},
		{
			name: "audit deletions by actor",
			src:  event.Audit,
			rule: `
    where: 'action endsWith ".delete" && status == "success"'
    group_by: [actor_id]
    window: 30d
    threshold: '>= 3'`,
			lines: [][]string{
				{audit(t0.Add(-20*day), "a1", "actor_id", "u1", "action", "namespace.delete"),
					audit(t0.Add(-10*day), "a2", "actor_id", "u1", "action", "api_key.delete"),
					audit(t0, "a3", "actor_id", "u1", "action", "document.delete"),
					audit(t0, "a4", "actor_id", "u2", "action", "document.delete"),
					audit(t0, "a5", "actor_id", "u2", "action", "document.delete", "status", "denied"),
					audit(t0, "a6", "actor_id", "u2", "action", "document.delete")},
			},
			want: []string{`{"actor_id":"u1"}=3`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if src == 0 {
				src = event.Requests
			}
			s, db := openStore(t)
			for _, ls := range tc.lines {
				insert(t, s, src, ls...)
			}
			rs := parseRules(t, "rules:\n  - id: r\n    source: "+src.String()+tc.rule+"\n")
			var c collector
			rn := newRunner(t, s, db, rs, &c, nil)
			evaluate(t, rn)
			if got := c.take(); !slices.Equal(got, tc.want) {
				t.Errorf("alerts %v, want %v", got, tc.want)
			}
		})
	}
}

// An alert from ClickHouse is the alert the in-memory detector gives for
// the same events when it fires at the newest one: same group, value,
// threshold, window, time, PHI escalation, samples and actions.
func TestAlertsMatchTheDetectorsFormat(t *testing.T) {
	s, db := openStore(t)
	rs := parseRules(t, `rules:
  - id: key-reads
    source: requests
    where: 'operation == "data"'
    group_by: [api_key_id, status]
    window: 7d
    threshold: '>= 12'
    labels: {team: data}
`)
	namespaces := map[string]string{"ns_patients": "PHI"}
	policy := detector.Policy{rules.High: {"open_incident", "revoke_key"}, rules.Medium: {"watch"}}
	var lines []string
	for i := range 12 {
		at := t0.Add(-6*day + time.Duration(i)*12*time.Hour)
		if i == 11 {
			at = t0.Add(300 * time.Millisecond)
		}
		kv := []any{"api_key_id", "key_1"}
		if i == 4 {
			kv = append(kv, "namespace", "ns_patients") // PHI through the namespace table
		}
		lines = append(lines, req(at, fmt.Sprintf("k1_%02d", i), kv...))
		if i == 11 {
			at = t0.Add(700 * time.Millisecond) // the same second: the same aligned window
		}
		lines = append(lines, req(at.Add(time.Millisecond), fmt.Sprintf("k2_%02d", i), "api_key_id", "key_2"))
	}
	lines = append(lines, req(t0.Add(-time.Hour), "other", "api_key_id", "key_1", "operation", "search"))
	evs := insert(t, s, event.Requests, lines...)

	d := detector.New(rs, detector.Config{Policy: policy, Namespaces: namespaces})
	defer d.Close()
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].TS < evs[j].TS })
	var want []string
	d.ProcessBatch(evs, func(a *detector.Alert) { want = append(want, string(a.AppendJSON(nil))+" key="+a.Key()) })

	var got []string
	rn := NewRunner(RunnerConfig{Store: s, Database: db, Rules: rs, Policy: policy, Namespaces: namespaces,
		Emit: func(a *detector.Alert) { got = append(got, string(a.AppendJSON(nil))+" key="+a.Key()) }})
	evaluate(t, rn)
	if len(want) != 2 || !slices.Equal(got, want) {
		t.Errorf("ClickHouse alerts\n %s\nthe detector's\n %s", strings.Join(got, "\n "), strings.Join(want, "\n "))
	}
}

func TestCooldownHoldsAcrossEvaluationsAndRestarts(t *testing.T) {
	s, db := openStore(t)
	const ruleYAML = `rules:
  - id: slow-burn
    source: requests
    group_by: [ip]
    window: 7d
    threshold: '> 3'
    cooldown: 2d
`
	rs := parseRules(t, ruleYAML)
	c := collector{store: s}
	rn := newRunner(t, s, db, rs, &c, nil)
	ip := func(i int) []any { return []any{"ip", fmt.Sprintf("203.0.113.%d", i)} }

	insert(t, s, event.Requests, spread(4, 3*day, "a", ip(1)...)...)
	evaluate(t, rn)
	if got := c.take(); !slices.Equal(got, []string{`{"ip":"203.0.113.1"}=4`}) {
		t.Fatalf("first evaluation: alerts %v", got)
	}
	evaluate(t, rn)
	if got := c.take(); len(got) > 0 {
		t.Errorf("evaluated again without new events: alerts %v", got)
	}

	insert(t, s, event.Requests, req(t0.Add(day), "b1", ip(1)...), req(t0.Add(day+time.Hour), "b2", ip(1)...))
	evaluate(t, rn)
	if got := c.take(); len(got) > 0 {
		t.Errorf("more events inside the cooldown: alerts %v", got)
	}

	// A restarted runner reads the last firing back from the alerts table.
	restarted := newRunner(t, s, db, parseRules(t, ruleYAML), &c, nil)
	evaluate(t, restarted)
	if got := c.take(); len(got) > 0 {
		t.Errorf("after a restart, inside the cooldown: alerts %v", got)
	}

	// A reload keeps it too; a bad set changes nothing.
	bad := parseRules(t, strings.Replace(ruleYAML, "group_by: [ip]", "where: 'lower(route) == \"x\"'", 1))
	if err := rn.Replace(bad); err == nil {
		t.Error("Replace accepted a rule that cannot run in ClickHouse")
	}
	if err := rn.Replace(parseRules(t, ruleYAML)); err != nil {
		t.Fatal(err)
	}
	evaluate(t, rn)
	if got := c.take(); len(got) > 0 {
		t.Errorf("after a reload, inside the cooldown: alerts %v", got)
	}

	// Once the cooldown has passed in event time the group fires again.
	insert(t, s, event.Requests, req(t0.Add(2*day+time.Minute), "c1", ip(1)...))
	evaluate(t, rn)
	if got := c.take(); !slices.Equal(got, []string{`{"ip":"203.0.113.1"}=7`}) {
		t.Errorf("after the cooldown: alerts %v", got)
	}
	evaluate(t, restarted)
	if got := c.take(); !slices.Equal(got, []string{`{"ip":"203.0.113.1"}=7`}) {
		t.Errorf("after the cooldown, restarted runner: alerts %v", got)
	}
}

func TestAnomalyRuleWithAWeekOfBaselineFiresOnASpike(t *testing.T) {
	s, db := openStore(t)
	rs := parseRules(t, `rules:
  - id: org-spike
    source: requests
    group_by: [org_id]
    window: 1h
    aggregate: count
    anomaly: {baseline: 7d, z: 3, min: 20}
  - id: org-d-spike
    source: requests
    where: 'org_id == "org_d"'
    window: 1h
    aggregate: count
    anomaly: {baseline: 7d, z: 3, min: 20}
  - id: org-e-spike
    source: requests
    where: 'org_id == "org_e"'
    window: 1h
    aggregate: count
    anomaly: {baseline: 7d, z: 3, min: 20}
`)
	var lines []string
	n := 0
	add := func(org string, at time.Time) {
		n++
		lines = append(lines, req(at, fmt.Sprintf("e%05d", n), "org_id", org))
	}
	// Two or four requests an hour (mean 3, stddev 1) for 170 hours:
	// org_d skips the baseline's first ten hours but was seen long before;
	// org_e starts ten hours into the baseline and was never seen before.
	for h := 170; h >= 2; h-- {
		hour := t0.Add(-time.Duration(h) * time.Hour)
		per := 2 + 2*(h%2)
		for i := range per {
			at := hour.Add(time.Duration(i) * time.Minute)
			add("org_a", at)
			add("org_b", at)
			if h < 160 {
				add("org_d", at)
				add("org_e", at)
			}
		}
	}
	add("org_d", t0.Add(-200*time.Hour))
	// The spike, in the current hour: org_a and org_d (and org_c, which has
	// no history) rise to 25; org_b stays at 5.
	for i := range 25 {
		add("org_a", t0.Add(time.Duration(i)*time.Minute))
		add("org_c", t0.Add(time.Duration(i)*time.Minute))
		add("org_d", t0.Add(time.Duration(i)*time.Minute+30*time.Second))
		add("org_e", t0.Add(time.Duration(i)*time.Minute+30*time.Second))
		if i < 5 {
			add("org_b", t0.Add(time.Duration(i)*time.Minute))
		}
	}
	evs := insert(t, s, event.Requests, lines...)

	var c collector
	rn := newRunner(t, s, db, rs, &c, nil)
	evaluate(t, rn)
	var got []string
	for _, a := range c.alerts {
		got = append(got, a.Rule.ID+" "+groupJSON(a)+"="+detector.FormatNumber(a.Value))
	}
	want := []string{`org-spike {"org_id":"org_a"}=25`, `org-spike {"org_id":"org_d"}=25`, `org-d-spike {}=25`}
	if !slices.Equal(got, want) {
		t.Errorf("alerts %v, want %v", got, want)
	}
	if len(c.alerts) > 0 && c.alerts[0].Threshold != "> 6" {
		t.Errorf("org_a's bound %s, want > 6 (mean 3, stddev 1, z 3)", c.alerts[0].Threshold)
	}

	// The in-memory detector fires for the same groups, against the same
	// bound (it fires as soon as the value passes it, so its value is lower).
	d := detector.New(rs, detector.Config{})
	defer d.Close()
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].TS < evs[j].TS })
	var mem []string
	d.ProcessBatch(evs, func(a *detector.Alert) { mem = append(mem, a.Rule.ID+" "+groupJSON(a)+" "+a.Threshold) })
	sort.Strings(mem)
	var ours []string
	for _, a := range c.alerts {
		ours = append(ours, a.Rule.ID+" "+groupJSON(a)+" "+a.Threshold)
	}
	sort.Strings(ours)
	if !slices.Equal(ours, mem) {
		t.Errorf("groups and bounds %v, the detector's %v", ours, mem)
	}
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// failing fails its first queries that contain match, as an unreachable
// server would.
type failing struct {
	Querier
	match string
	mu    sync.Mutex
	fails int
}

func (f *failing) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	f.mu.Lock()
	fail := f.fails > 0 && strings.Contains(query, f.match)
	if fail {
		f.fails--
	}
	f.mu.Unlock()
	if fail {
		return nil, errors.New("dial tcp: connection refused")
	}
	return f.Querier.Query(ctx, query, args...)
}

func TestRunRetriesAFailedQueryAtTheNextInterval(t *testing.T) {
	s, db := openStore(t)
	ruleYAML := "rules:\n  - id: r\n    source: requests\n    group_by: [ip]\n    window: 7d\n    threshold: '> 2'\n"
	insert(t, s, event.Requests, spread(3, day, "a")...)
	var logs lockedBuffer
	alerts := make(chan *detector.Alert, 10)
	// The samples are read last, once the groups that fire are known: a
	// failure there must leave nothing recorded, so that they fire next time.
	rn := NewRunner(RunnerConfig{Store: &failing{Querier: s, match: "groupArraySorted", fails: 2}, Database: db,
		Rules:    parseRules(t, ruleYAML),
		Interval: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Emit: func(a *detector.Alert) { alerts <- a }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rn.Run(ctx) }()
	// Reloads may come while it runs.
	for range 3 {
		if err := rn.Replace(parseRules(t, ruleYAML)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case a := <-alerts:
		if a.Rule.ID != "r" || a.Value != 3 || len(a.SampleIDs) != 3 {
			t.Errorf("alert %s", a.AppendJSON(nil))
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no alert after the failed queries")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after its context ended", err)
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the failure was not logged:\n%s", logs.String())
	}
	select {
	case a := <-alerts:
		t.Errorf("fired again: %s", a.AppendJSON(nil))
	default:
	}
}

func TestRunRefusesRulesThatCannotRunInClickHouse(t *testing.T) {
	rs := parseRules(t, "rules:\n  - id: r\n    source: requests\n    where: 'lower(route) == \"x\"'\n    window: 7d\n    threshold: '> 2'\n")
	rn := NewRunner(RunnerConfig{Store: &failing{}, Database: "vigil", Rules: rs})
	err := rn.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), `rule "r": where: function lower()`) {
		t.Errorf("Run: %v", err)
	}
}
