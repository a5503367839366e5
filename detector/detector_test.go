package detector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

var t0 = time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)

func loadRules(t testing.TB, body string) []*rules.Rule {
	t.Helper()
	rs, errs := rules.Parse("test.yaml", []byte("rules:\n"+body))
	if len(errs) > 0 {
		t.Fatalf("rules: %v", errs)
	}
	return rs
}

var idSeq int

// req is a request event at t0+at; mods adjust fields.
func req(at time.Duration, mods ...func(*event.Event)) event.Event {
	idSeq++
	e := event.Event{Source: event.Requests, TS: t0.Add(at).UnixNano(), ID: fmt.Sprintf("req_%04d", idSeq),
		OrgID: "org_1", IP: "198.51.100.23", Method: "GET", Route: "/v1/x", Operation: "data", Status: 401}
	for _, m := range mods {
		m(&e)
	}
	return e
}

func audit(at time.Duration, action string, mods ...func(*event.Event)) event.Event {
	idSeq++
	e := event.Event{Source: event.Audit, TS: t0.Add(at).UnixNano(), ID: fmt.Sprintf("evt_%04d", idSeq),
		OrgID: "org_1", ActorID: "user_1", ActorType: "user", Action: action, ResourceType: "x", Outcome: "success"}
	for _, m := range mods {
		m(&e)
	}
	return e
}

func ip(s string) func(*event.Event)      { return func(e *event.Event) { e.IP = s } }
func status(n int64) func(*event.Event)   { return func(e *event.Event) { e.Status = n } }
func phi(e *event.Event)                  { e.DataClassification = "PHI"; e.Namespace = "ns_phi" }
func actor(s string) func(*event.Event)   { return func(e *event.Event) { e.ActorID = s } }
func key(s string) func(*event.Event)     { return func(e *event.Event) { e.APIKeyID = s } }
func bytesOut(n int64) func(*event.Event) { return func(e *event.Event) { e.BytesOut = n } }
func ns(s string) func(*event.Event)      { return func(e *event.Event) { e.Namespace = s } }

// repeat makes n events spaced by every, starting at from.
func repeat(n int, from, every time.Duration, mk func(time.Duration) event.Event) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		out[i] = mk(from + time.Duration(i)*every)
	}
	return out
}

func runEngine(t testing.TB, rs []*rules.Rule, cfg Config, events []event.Event) ([]*Alert, *Engine) {
	t.Helper()
	en := NewEngine(rs, cfg)
	var out []*Alert
	for i := range events {
		cfg.Enrich(&events[i])
		en.Process(&events[i], func(a *Alert) { out = append(out, a) })
	}
	return out, en
}

func cat(parts ...[]event.Event) []event.Event {
	var out []event.Event
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// alertAt formats what a test asserts about an alert.
func describe(as []*Alert) []string {
	var out []string
	for _, a := range as {
		var g []string
		for _, v := range a.Group {
			g = append(g, v.Field.Name+"="+v.Value)
		}
		out = append(out, fmt.Sprintf("%s@%s %s v=%s sev=%d phi=%v", a.Rule.ID, time.Unix(0, a.At).UTC().Sub(t0),
			strings.Join(g, ","), FormatNumber(a.Value), a.Severity, a.PHI))
	}
	return out
}

func check(t *testing.T, got []*Alert, want ...string) {
	t.Helper()
	d := describe(got)
	if strings.Join(d, "\n") != strings.Join(want, "\n") {
		t.Errorf("alerts:\n got: %q\nwant: %q", d, want)
	}
}

const burst = `  - id: burst
    source: requests
    where: 'status in [401, 403]'
    group_by: [ip]
    window: 1m
    threshold: '%s'
    severity: medium
    cooldown: %s
`

func burstRule(t testing.TB, threshold, cooldown string) []*rules.Rule {
	return loadRules(t, fmt.Sprintf(burst, threshold, cooldown))
}

func TestThresholdEdges(t *testing.T) {
	fail := func(at time.Duration) event.Event { return req(at) }
	tests := []struct {
		name      string
		threshold string
		cooldown  string
		events    []event.Event
		want      []string
	}{
		{"exactly at a '>' threshold does not fire", "> 5", "10m",
			repeat(5, 0, time.Second, fail), nil},
		{"one past a '>' threshold fires at that event", "> 5", "10m",
			repeat(6, 0, time.Second, fail), []string{"burst@5s ip=198.51.100.23 v=6 sev=3 phi=false"}},
		{"exactly at a '>=' threshold fires", ">= 5", "10m",
			repeat(5, 0, time.Second, fail), []string{"burst@4s ip=198.51.100.23 v=5 sev=3 phi=false"}},
		{"events filtered out by where do not count", ">= 2", "10m",
			[]event.Event{req(0), req(time.Second, status(200))}, nil},
		{"the last bucket of the window still counts", ">= 2", "10m",
			[]event.Event{req(0), req(59*time.Second + 999*time.Millisecond)}, []string{"burst@59.999s ip=198.51.100.23 v=2 sev=3 phi=false"}},
		{"one window later the first event has left", ">= 2", "10m",
			[]event.Event{req(0), req(60 * time.Second)}, nil},
		{"groups count separately", ">= 2", "10m",
			[]event.Event{req(0), req(time.Second, ip("203.0.113.9"))}, nil},
		{"within the cooldown a group does not fire again", ">= 1", "10m",
			[]event.Event{req(0), req(5 * time.Minute), req(10*time.Minute - time.Millisecond)}, []string{"burst@0s ip=198.51.100.23 v=1 sev=3 phi=false"}},
		{"at cooldown expiry the group fires again", ">= 1", "10m",
			[]event.Event{req(0), req(5 * time.Minute), req(10 * time.Minute)},
			[]string{"burst@0s ip=198.51.100.23 v=1 sev=3 phi=false", "burst@10m0s ip=198.51.100.23 v=1 sev=3 phi=false"}},
		{"a late event inside the lateness bound is counted", ">= 3", "10m",
			[]event.Event{req(10 * time.Second), req(20 * time.Second), req(5 * time.Second)},
			[]string{"burst@5s ip=198.51.100.23 v=3 sev=3 phi=false"}},
		{"an event later than the lateness bound is skipped", ">= 2", "10m",
			[]event.Event{req(2 * time.Minute), req(30 * time.Second)}, nil},
		{"'<' thresholds are judged at each event", "< 2", "0",
			[]event.Event{req(0), req(time.Second)}, []string{"burst@0s ip=198.51.100.23 v=1 sev=3 phi=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := runEngine(t, burstRule(t, tt.threshold, tt.cooldown), Config{}, tt.events)
			check(t, got, tt.want...)
		})
	}
}

func TestLateEventsAreCounted(t *testing.T) {
	_, en := runEngine(t, burstRule(t, ">= 100", "1m"), Config{}, []event.Event{req(2 * time.Minute), req(30 * time.Second)})
	if s := en.Stats()[0]; s.Late != 1 || s.Matched != 2 {
		t.Errorf("stats = %+v, want 1 late of 2 matched", s)
	}
}

func TestWindowBoundsFollowBuckets(t *testing.T) {
	got, _ := runEngine(t, burstRule(t, ">= 1", "1m"), Config{}, []event.Event{req(59*time.Second + 100*time.Millisecond)})
	if len(got) != 1 {
		t.Fatal(describe(got))
	}
	a := got[0]
	if FormatTime(a.WindowStart) != "2026-11-22T18:00:00Z" || FormatTime(a.WindowEnd) != "2026-11-22T18:01:00Z" || FormatTime(a.At) != "2026-11-22T18:00:59.1Z" {
		t.Errorf("window %s..%s at %s", FormatTime(a.WindowStart), FormatTime(a.WindowEnd), FormatTime(a.At))
	}
}

func TestBucketSize(t *testing.T) {
	tests := []struct {
		window, want time.Duration
	}{
		{time.Minute, time.Second},
		{time.Hour, time.Second},
		{90 * time.Second, time.Second},
		{10 * time.Second, 100 * time.Millisecond},
		{30 * time.Second, 500 * time.Millisecond},
		{time.Second, 10 * time.Millisecond},
		{61500 * time.Millisecond, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := bucketSize(tt.window); got != tt.want {
			t.Errorf("bucketSize(%v) = %v, want %v", tt.window, got, tt.want)
		}
		if got := bucketSize(tt.window); got > tt.window/60 || got > time.Second || tt.window%got != 0 {
			t.Errorf("bucketSize(%v) = %v breaks the contract", tt.window, got)
		}
	}
}

func TestPHIEscalation(t *testing.T) {
	rule := func(sev, extra string) []*rules.Rule {
		return loadRules(t, fmt.Sprintf("  - id: r\n    source: requests\n    window: 1m\n    threshold: '>= 2'\n    severity: %s\n%s", sev, extra))
	}
	tests := []struct {
		name   string
		rs     []*rules.Rule
		events []event.Event
		want   string
	}{
		{"a PHI event raises medium to high", rule("medium", ""), []event.Event{req(0, phi), req(time.Second)}, "r@1s  v=2 sev=2 phi=true"},
		{"critical stays critical", rule("critical", ""), []event.Event{req(0, phi), req(time.Second)}, "r@1s  v=2 sev=1 phi=true"},
		{"phi_escalation false keeps the severity", rule("low", "    phi_escalation: false\n"), []event.Event{req(0), req(time.Second, phi)}, "r@1s  v=2 sev=4 phi=true"},
		{"a PHI event that left the window does not count", rule("medium", ""), []event.Event{req(0, phi), req(61 * time.Second), req(62 * time.Second)}, "r@1m2s  v=2 sev=3 phi=false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := runEngine(t, tt.rs, Config{}, tt.events)
			check(t, got, tt.want)
		})
	}
}

func TestNamespaceTableClassifiesEvents(t *testing.T) {
	rs := loadRules(t, "  - id: r\n    source: requests\n    where: 'data_classification == \"PHI\"'\n    window: 1m\n    threshold: '>= 1'\n")
	got, _ := runEngine(t, rs, Config{Namespaces: map[string]string{"ns_9": "PHI"}}, []event.Event{req(0, ns("ns_1")), req(time.Second, ns("ns_9"))})
	check(t, got, "r@1s  v=1 sev=2 phi=true")
}

func TestMissingOptionalFieldsCompareAsZeroValues(t *testing.T) {
	rs := loadRules(t, `  - id: anon
    source: requests
    where: 'api_key_id == "" && bytes_out == 0 && country != "US"'
    window: 1m
    threshold: '>= 2'
`)
	got, _ := runEngine(t, rs, Config{}, []event.Event{req(0), req(time.Second, key("k1")), req(2 * time.Second)})
	check(t, got, "anon@2s  v=2 sev=3 phi=false")
}

func TestEventsWithoutAGroupValueBelongToNoGroup(t *testing.T) {
	rs := loadRules(t, `  - id: per-key
    source: requests
    group_by: [api_key_id]
    window: 1m
    threshold: '>= 2'
  - id: seq
    source: requests
    sequence:
      by: [api_key_id]
      within: 1m
      steps:
        - where: 'status == 401'
        - where: 'status == 401'
  - id: new-ns
    source: requests
    new_value: {field: ip, per: [api_key_id], learn: 1ms}
`)
	// Keyless requests neither fill a "" group nor learn a "" key's addresses.
	got, _ := runEngine(t, rs, Config{}, []event.Event{req(0), req(time.Second), req(2 * time.Second), req(3*time.Second, key("k1"))})
	check(t, got, "new-ns@3s api_key_id=k1,ip=198.51.100.23 v=1 sev=3 phi=false")
}

func TestAggregates(t *testing.T) {
	tests := []struct {
		name   string
		rule   string
		events []event.Event
		want   []string
	}{
		{"sum adds a numeric field", "window: 1m\n    aggregate: sum(bytes_out)\n    threshold: '> 1000'",
			[]event.Event{req(0, bytesOut(600)), req(time.Second, bytesOut(400)), req(2*time.Second, bytesOut(1))},
			[]string{"r@2s  v=1001 sev=3 phi=false"}},
		{"sum forgets what left the window", "window: 1m\n    aggregate: sum(bytes_out)\n    threshold: '> 1000'",
			[]event.Event{req(0, bytesOut(600)), req(time.Minute, bytesOut(401))}, nil},
		{"distinct counts values once", "window: 1m\n    aggregate: distinct(namespace)\n    threshold: '>= 3'",
			[]event.Event{req(0, ns("a")), req(1*time.Second, ns("a")), req(2*time.Second, ns("b")), req(3*time.Second, ns("b")), req(4*time.Second, ns("c"))},
			[]string{"r@4s  v=3 sev=3 phi=false"}},
		{"distinct forgets values that left the window", "window: 1m\n    aggregate: distinct(namespace)\n    threshold: '>= 3'",
			[]event.Event{req(0, ns("a")), req(1*time.Second, ns("b")), req(30*time.Second, ns("a")), req(61*time.Second, ns("c"))}, nil},
		{"a value seen again stays in the window", "window: 1m\n    aggregate: distinct(namespace)\n    threshold: '>= 3'",
			[]event.Event{req(0, ns("a")), req(1*time.Second, ns("b")), req(59*time.Second, ns("a")), req(61*time.Second, ns("c"))}, nil},
		{"an absent field is not a distinct value", "window: 1m\n    aggregate: distinct(namespace)\n    threshold: '>= 3'",
			[]event.Event{req(0, ns("a")), req(1 * time.Second), req(2*time.Second, ns("b")), req(3 * time.Second)}, nil},
		{"events without the field still count for min_events", "window: 1m\n    aggregate: distinct(namespace)\n    min_events: 3\n    threshold: '>= 2'",
			[]event.Event{req(0, ns("a")), req(1 * time.Second), req(2*time.Second, ns("b"))},
			[]string{"r@2s  v=2 sev=3 phi=false"}},
		{"ratio waits for min_events", "window: 1m\n    aggregate: ratio(status >= 500)\n    min_events: 4\n    threshold: '>= 0.5'",
			[]event.Event{req(0, status(500)), req(time.Second, status(502)), req(2*time.Second, status(200)), req(3*time.Second, status(200))},
			[]string{"r@3s  v=0.5 sev=3 phi=false"}},
		{"ratio below min_events never fires", "window: 1m\n    aggregate: ratio(status >= 500)\n    min_events: 5\n    threshold: '>= 0.5'",
			[]event.Event{req(0, status(500)), req(time.Second, status(502)), req(2*time.Second, status(503))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs := loadRules(t, "  - id: r\n    source: requests\n    "+tt.rule+"\n")
			got, _ := runEngine(t, rs, Config{}, tt.events)
			check(t, got, tt.want...)
		})
	}
}

func TestAnomaly(t *testing.T) {
	rs := loadRules(t, `  - id: spike
    source: requests
    group_by: [org_id]
    window: 1m
    aggregate: count
    anomaly: {baseline: 10m, z: 3, min: 20}
`)
	steady := func(from time.Duration, minutes int) []event.Event {
		var out []event.Event
		for m := 0; m < minutes; m++ {
			out = append(out, repeat(5+m%3, from+time.Duration(m)*time.Minute, 5*time.Second, func(at time.Duration) event.Event { return req(at) })...)
		}
		return out
	}
	spike := func(at time.Duration) []event.Event {
		return repeat(40, at, time.Second, func(at time.Duration) event.Event { return req(at) })
	}
	t.Run("no alert before the baseline has filled", func(t *testing.T) {
		got, _ := runEngine(t, rs, Config{}, cat(steady(0, 5), spike(5*time.Minute)))
		check(t, got)
	})
	t.Run("a spike over a filled baseline fires once", func(t *testing.T) {
		got, _ := runEngine(t, rs, Config{}, cat(steady(0, 12), spike(12*time.Minute)))
		if len(got) != 1 || got[0].Value < 20 || !strings.HasPrefix(got[0].Threshold, "> ") {
			t.Fatalf("got %q", describe(got))
		}
	})
	t.Run("steady traffic never fires", func(t *testing.T) {
		got, _ := runEngine(t, rs, Config{}, steady(0, 60))
		check(t, got)
	})
	t.Run("a spike below min does not fire", func(t *testing.T) {
		small := repeat(15, 12*time.Minute, time.Second, func(at time.Duration) event.Event { return req(at) })
		quiet := repeat(12, 0, time.Minute, func(at time.Duration) event.Event { return req(at) })
		got, _ := runEngine(t, rs, Config{}, cat(quiet, small))
		check(t, got)
	})
}

func TestNewValue(t *testing.T) {
	rs := loadRules(t, `  - id: admin-new-ip
    source: audit
    where: 'key_permission == "ADMIN"'
    new_value: {field: ip, per: [api_key_id], remember: 30d, learn: 1h}
    severity: high
`)
	admin := func(at time.Duration, k, addr string) event.Event {
		return audit(at, "namespace.read", key(k), ip(addr), func(e *event.Event) { e.KeyPermission = "ADMIN" })
	}
	day := 24 * time.Hour
	tests := []struct {
		name   string
		events []event.Event
		want   []string
	}{
		{"values first seen while learning do not fire", []event.Event{admin(0, "k1", "1.1.1.1"), admin(30*time.Minute, "k1", "2.2.2.2")}, nil},
		{"a new value after learning fires once", []event.Event{admin(0, "k1", "1.1.1.1"), admin(2*time.Hour, "k1", "2.2.2.2"), admin(3*time.Hour, "k1", "2.2.2.2")},
			[]string{"admin-new-ip@2h0m0s api_key_id=k1,ip=2.2.2.2 v=1 sev=2 phi=false"}},
		{"a learned value does not fire", []event.Event{admin(0, "k1", "1.1.1.1"), admin(2*time.Hour, "k1", "1.1.1.1")}, nil},
		{"values are tracked per group", []event.Event{admin(0, "k1", "1.1.1.1"), admin(2*time.Hour, "k2", "1.1.1.1")},
			[]string{"admin-new-ip@2h0m0s api_key_id=k2,ip=1.1.1.1 v=1 sev=2 phi=false"}},
		{"a value not seen within remember is new again", []event.Event{admin(0, "k1", "1.1.1.1"), admin(31*day, "k1", "1.1.1.1")},
			[]string{"admin-new-ip@744h0m0s api_key_id=k1,ip=1.1.1.1 v=1 sev=2 phi=false"}},
		{"events without the field are ignored", []event.Event{admin(0, "k1", "1.1.1.1"), admin(2*time.Hour, "k1", "")}, nil},
		{"learning counts from the source's first event, matching or not", []event.Event{audit(0, "auth.login"), admin(2*time.Hour, "k1", "1.1.1.1")},
			[]string{"admin-new-ip@2h0m0s api_key_id=k1,ip=1.1.1.1 v=1 sev=2 phi=false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := runEngine(t, rs, Config{}, tt.events)
			check(t, got, tt.want...)
		})
	}
}

func TestDormant(t *testing.T) {
	rs := loadRules(t, `  - id: dormant-key
    source: requests
    dormant: {field: api_key_id, idle: 90d}
`)
	day := 24 * time.Hour
	tests := []struct {
		name   string
		events []event.Event
		want   []string
	}{
		{"a value never seen before does not fire", []event.Event{req(0, key("k1"))}, nil},
		{"a value back after exactly idle fires", []event.Event{req(0, key("k1")), req(90*day, key("k1")), req(90*day+time.Second, key("k1"))},
			[]string{"dormant-key@2160h0m0s api_key_id=k1 v=7776000 sev=3 phi=false"}},
		{"a value back before idle does not fire", []event.Event{req(0, key("k1")), req(89*day, key("k1")), req(170*day, key("k1"))}, nil},
		{"requests without a key are not a key", []event.Event{req(0), req(100 * day)}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := runEngine(t, rs, Config{}, tt.events)
			check(t, got, tt.want...)
		})
	}
}

func TestSequence(t *testing.T) {
	rs := loadRules(t, `  - id: create-then-delete
    source: audit
    sequence:
      by: [actor_id]
      within: 10m
      steps:
        - where: 'action == "api_key.create"'
        - where: 'action endsWith ".delete"'
          threshold: '>= 3'
    severity: high
`)
	del := func(at time.Duration, mods ...func(*event.Event)) event.Event {
		return audit(at, "namespace.delete", mods...)
	}
	tests := []struct {
		name   string
		events []event.Event
		want   []string
	}{
		{"steps in order within the limit fire at the last one",
			[]event.Event{audit(0, "api_key.create"), del(time.Minute), del(2 * time.Minute), del(3 * time.Minute)},
			[]string{"create-then-delete@3m0s actor_id=user_1 v=4 sev=2 phi=false"}},
		{"steps out of order do not fire",
			[]event.Event{del(0), del(time.Minute), del(2 * time.Minute), audit(3*time.Minute, "api_key.create")}, nil},
		{"steps past within do not fire",
			[]event.Event{audit(0, "api_key.create"), del(time.Minute), del(2 * time.Minute), del(10*time.Minute + time.Second)}, nil},
		{"a step short of its threshold does not fire",
			[]event.Event{audit(0, "api_key.create"), del(time.Minute), del(2 * time.Minute)}, nil},
		{"other actors do not complete the sequence",
			[]event.Event{audit(0, "api_key.create"), del(time.Minute), del(2*time.Minute, actor("user_2")), del(3 * time.Minute)}, nil},
		{"a later first step restarts the clock",
			[]event.Event{audit(0, "api_key.create"), audit(9*time.Minute, "api_key.create"), del(11 * time.Minute), del(12 * time.Minute), del(13 * time.Minute)},
			[]string{"create-then-delete@13m0s actor_id=user_1 v=4 sev=2 phi=false"}},
		{"a PHI step marks the alert and escalates",
			[]event.Event{audit(0, "api_key.create"), del(time.Minute, phi), del(2 * time.Minute), del(3 * time.Minute)},
			[]string{"create-then-delete@3m0s actor_id=user_1 v=4 sev=1 phi=true"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := runEngine(t, rs, Config{}, tt.events)
			check(t, got, tt.want...)
		})
	}
}

func TestGroupCapEvictsTheStalest(t *testing.T) {
	rs := burstRule(t, ">= 2", "1m")
	events := []event.Event{req(0, ip("10.0.0.1")), req(time.Second, ip("10.0.0.2")), req(2*time.Second, ip("10.0.0.3")), req(3*time.Second, ip("10.0.0.1"))}
	got, en := runEngine(t, rs, Config{MaxGroups: 2}, events)
	check(t, got) // 10.0.0.1 was evicted before its second event
	if s := en.Stats()[0]; s.Groups != 2 || s.Evictions != 2 {
		t.Errorf("stats = %+v", s)
	}
	got, _ = runEngine(t, rs, Config{MaxGroups: 3}, events)
	check(t, got, "burst@3s ip=10.0.0.1 v=2 sev=3 phi=false")
}

func TestAlertJSON(t *testing.T) {
	rs := loadRules(t, `  - id: auth-failure-burst
    source: requests
    where: 'status in [401, 403]'
    group_by: [ip, status]
    window: 1m
    threshold: '> 1'
    severity: medium
    labels: {team: edge, a: "1"}
    actions: [block_ip]
`)
	got, _ := runEngine(t, rs, Config{}, []event.Event{
		req(58*time.Second, func(e *event.Event) { e.ID = "req_0003" }),
		req(59*time.Second+100*time.Millisecond, func(e *event.Event) { e.ID = "req_\"0107" }),
	})
	if len(got) != 1 {
		t.Fatal(describe(got))
	}
	want := `{"rule":"auth-failure-burst","severity":3,"severity_name":"medium","source":"requests",` +
		`"group":{"ip":"198.51.100.23","status":401},"value":2,"threshold":"> 1",` +
		`"window_start":"2026-11-22T18:00:00Z","window_end":"2026-11-22T18:01:00Z",` +
		`"at":"2026-11-22T18:00:59.1Z","phi":false,"labels":{"a":"1","team":"edge"},` +
		`"sample_ids":["req_0003","req_\"0107"],"actions":["block_ip"]}`
	if s := string(got[0].AppendJSON(nil)); s != want {
		t.Errorf("got  %s\nwant %s", s, want)
	}
}

func TestSeverityPolicyGivesDefaultActions(t *testing.T) {
	rs := loadRules(t, "  - id: r\n    source: requests\n    window: 1m\n    threshold: '>= 1'\n    severity: high\n")
	got, _ := runEngine(t, rs, Config{}, []event.Event{req(0, phi)})
	if len(got) != 1 || strings.Join(got[0].Actions, ",") != "open_incident,revoke_key,block_ip,isolate_namespace" {
		t.Errorf("a PHI-escalated high alert takes the critical policy, got %v", got[0].Actions)
	}
}

func TestShardedDetectorMatchesOneEngine(t *testing.T) {
	rs := loadRules(t, benchRules)
	events := mixedTraffic(20000)
	output := func(shards int) string {
		d := New(rs, Config{Shards: shards})
		defer d.Close()
		var b []byte
		for i := 0; i < len(events); i += 1000 {
			batch := append([]event.Event(nil), events[i:min(i+1000, len(events))]...)
			d.ProcessBatch(batch, func(a *Alert) { b = append(a.AppendJSON(b), '\n') })
		}
		return string(b)
	}
	one := output(1)
	if strings.Count(one, "\n") < 5 {
		t.Fatalf("traffic fires too few alerts to compare:\n%s", one)
	}
	if three := output(3); three != one {
		t.Errorf("3 shards differ from 1:\n%s\nvs\n%s", three, one)
	}
}

func TestReplaceKeepsStateOfUnchangedRules(t *testing.T) {
	a := burstRule(t, ">= 3", "1m")
	en := NewEngine(a, Config{})
	var got []*Alert
	emit := func(x *Alert) { got = append(got, x) }
	for _, e := range []event.Event{req(0), req(time.Second)} {
		en.Process(&e, emit)
	}
	en.Replace(burstRule(t, ">= 3", "1m")) // same content: state kept
	e := req(2 * time.Second)
	en.Process(&e, emit)
	check(t, got, "burst@2s ip=198.51.100.23 v=3 sev=3 phi=false")

	got = nil
	en.Replace(burstRule(t, ">= 4", "1m")) // changed: starts fresh
	for _, e := range []event.Event{req(3 * time.Second), req(4 * time.Second), req(5 * time.Second)} {
		en.Process(&e, emit)
	}
	check(t, got)
}

// Samples that leave the window make room for new ones without any two
// samples sharing (and overwriting) an id buffer.
func TestSamplesStayDistinctAcrossWindowTurnover(t *testing.T) {
	var events []event.Event
	for i := 0; i < 300; i++ {
		events = append(events, req(time.Duration(i)*time.Second, func(e *event.Event) { e.ID = fmt.Sprintf("req_%06d_long", i) }))
	}
	en := NewEngine(loadRules(t, fmt.Sprintf(burst, ">= 1", "0")), Config{})
	var last *Alert
	for i := range events {
		en.Process(&events[i], func(a *Alert) { last = a })
	}
	seen := map[string]bool{}
	for _, id := range last.SampleIDs {
		if seen[id] || !strings.HasSuffix(id, "_long") {
			t.Fatalf("sample ids corrupted: %q", last.SampleIDs)
		}
		seen[id] = true
	}
	if len(last.SampleIDs) != 10 || last.SampleIDs[0] != "req_000240_long" {
		t.Errorf("samples = %q, want the first 10 events of the last window", last.SampleIDs)
	}
}

// A sharded detector keeps the state of unchanged rules across a reload
// that reorders, adds and removes rules: rules live on the shard their id
// hashes to, not on one given by their position.
func TestShardedReplaceKeepsStateWhateverTheOrder(t *testing.T) {
	body := func(ids ...string) string {
		var b strings.Builder
		for _, id := range ids {
			fmt.Fprintf(&b, "  - {id: %s, source: requests, group_by: [ip], window: 1m, aggregate: count, threshold: '>= 3', severity: low}\n", id)
		}
		return b.String()
	}
	d := New(loadRules(t, body("r1", "r2", "r3", "r4", "r5")), Config{Shards: 3})
	defer d.Close()
	var fired []string
	emit := func(a *Alert) { fired = append(fired, a.Rule.ID) }
	d.ProcessBatch([]event.Event{req(0), req(time.Second)}, emit)
	d.Replace(loadRules(t, body("r9", "r5", "r3", "r1", "r4"))) // reordered, r2 gone, r9 new
	d.ProcessBatch([]event.Event{req(2 * time.Second)}, emit)
	if got := strings.Join(fired, " "); got != "r5 r3 r1 r4" {
		t.Errorf("fired %q, want the four kept rules (r9 is fresh) in the new order", got)
	}
}
