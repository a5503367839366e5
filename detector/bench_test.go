package detector

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/rules/expression"
)

// benchRules are ten rules of every kind, like a small production pack.
const benchRules = `  - id: auth-burst
    source: requests
    where: 'status in [401, 403]'
    group_by: [ip]
    window: 1m
    threshold: '> 20'
  - id: key-denied
    source: requests
    where: 'status == 403 && api_key_id != ""'
    group_by: [api_key_id]
    window: 5m
    threshold: '>= 30'
  - id: bulk-read
    source: requests
    where: 'data_classification in ["CONFIDENTIAL", "PHI"]'
    group_by: [api_key_id]
    window: 10m
    aggregate: sum(bytes_out)
    threshold: '> 5e8'
  - id: namespace-enum
    source: requests
    group_by: [api_key_id]
    window: 5m
    aggregate: distinct(namespace)
    threshold: '>= 25'
  - id: org-errors
    source: requests
    group_by: [org_id]
    window: 1m
    aggregate: ratio(status >= 500)
    min_events: 50
    threshold: '> 0.2'
  - id: org-spike
    source: requests
    group_by: [org_id]
    window: 1m
    anomaly: {baseline: 30m, z: 6, min: 500}
  - id: admin-new-ip
    source: audit
    where: 'key_permission == "ADMIN"'
    new_value: {field: ip, per: [api_key_id], remember: 30d, learn: 1h}
  - id: dormant-key
    source: requests
    dormant: {field: api_key_id, idle: 90d}
  - id: create-then-delete
    source: audit
    sequence:
      by: [actor_id]
      within: 10m
      steps:
        - where: 'action == "api_key.create"'
        - where: 'action endsWith ".delete"'
          threshold: '>= 5'
  - id: mass-delete
    source: audit
    where: 'action endsWith ".delete" && status == "success"'
    group_by: [actor_id]
    window: 10m
    threshold: '>= 20'
`

// manyRules is the ten rules plus variants. With filtered, each variant
// of a request rule is restricted to one operation category (as packs with
// per-category rate rules are); unfiltered variants all see every event.
func manyRules(t testing.TB, n int, filtered bool) []*rules.Rule {
	ops := []string{"metadata", "data", "search", "upload", "compute"}
	rs := loadRules(t, benchRules)
	base := len(rs)
	for i := 1; len(rs) < n; i++ {
		more := loadRules(t, benchRules)
		for _, r := range more {
			r.ID = fmt.Sprintf("%s-%d", r.ID, i)
			if filtered && r.Source == event.Requests {
				where := fmt.Sprintf("operation == %q", ops[i%len(ops)])
				if r.WhereText != "" {
					where = "(" + r.WhereText + ") && " + where
				}
				r.Where, r.WhereText = mustCompile(t, where), where
			}
		}
		rs = append(rs, more[:min(base, n-len(rs))]...)
	}
	return rs
}

func mustCompile(t testing.TB, src string) *expression.Predicate {
	p, err := expression.Compile(src, event.Requests)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// mixedTraffic is 90% requests and 10% audit events from a realistic
// population, one event every 100 µs of event time, with a few attackers.
func mixedTraffic(n int) []event.Event {
	rng := rand.New(rand.NewPCG(1, 2))
	pick := func(prefix string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return out
	}
	ips := make([]string, 2000)
	for i := range ips {
		ips[i] = fmt.Sprintf("203.0.%d.%d", i/250, i%250)
	}
	keys, orgs, nss, actors := pick("key_", 300), pick("org_", 30), pick("ns_", 80), pick("user_", 100)
	classes := []string{"PUBLIC", "INTERNAL", "CONFIDENTIAL", "PHI"}
	ops := []string{"metadata", "data", "search", "upload", "compute"}
	actions := []string{"document.read", "document.update", "api_key.create", "namespace.delete", "auth.login"}
	perms := []string{"READ", "WRITE", "DELETE", "ADMIN"}
	out := make([]event.Event, n)
	for i := range out {
		ts := t0.Add(time.Duration(i) * 100 * time.Microsecond).UnixNano()
		id := fmt.Sprintf("id_%d", i)
		if i%10 == 9 {
			out[i] = event.Event{Source: event.Audit, TS: ts, ID: id, OrgID: orgs[rng.IntN(len(orgs))],
				ActorID: actors[rng.IntN(len(actors))], ActorType: "user", APIKeyID: keys[rng.IntN(len(keys))],
				KeyPermission: perms[rng.IntN(4)], IP: ips[rng.IntN(len(ips))], Action: actions[rng.IntN(len(actions))],
				ResourceType: "document", Outcome: "success", Namespace: nss[rng.IntN(len(nss))]}
			continue
		}
		st := int64(200)
		switch r := rng.IntN(100); {
		case r < 3:
			st = 401
		case r < 5:
			st = 403
		case r < 6:
			st = 500
		}
		ip := ips[rng.IntN(len(ips))]
		if i%50 == 0 { // one address hammering with bad keys
			ip, st = "198.51.100.23", 401
		}
		n := rng.IntN(len(nss))
		out[i] = event.Event{Source: event.Requests, TS: ts, ID: id, OrgID: orgs[rng.IntN(len(orgs))],
			APIKeyID: keys[rng.IntN(len(keys))], KeyPermission: perms[rng.IntN(4)], IP: ip, Method: "GET",
			Route: "/v1/namespaces/{namespace_id}/search", Operation: ops[rng.IntN(len(ops))], Namespace: nss[n],
			DataClassification: classes[n%4], Status: st, BytesOut: int64(rng.IntN(50000)), LatencyMs: 12.5}
	}
	return out
}

func benchEngine(b *testing.B, rs []*rules.Rule) {
	events := mixedTraffic(200000)
	en := NewEngine(rs, Config{})
	emit := func(*Alert) {}
	// Warm up: every group and window exists, as in a long-running daemon.
	for i := range events {
		en.Process(&events[i], emit)
	}
	shift := events[len(events)-1].TS - events[0].TS + int64(100*time.Microsecond)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(events)
		if k == 0 && i > 0 {
			for j := range events {
				events[j].TS += shift // keep event time moving forward
			}
		}
		en.Process(&events[k], emit)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkEngine10Rules(b *testing.B) { benchEngine(b, loadRules(b, benchRules)) }
func BenchmarkEngine50Rules(b *testing.B) { benchEngine(b, manyRules(b, 50, true)) }

// BenchmarkEngine50RulesUnfiltered is the worst case: five copies of each
// rule, every request rule seeing every request.
func BenchmarkEngine50RulesUnfiltered(b *testing.B) { benchEngine(b, manyRules(b, 50, false)) }

// BenchmarkBaselineLoop is the floor: touching each event and nothing else.
func BenchmarkBaselineLoop(b *testing.B) {
	events := mixedTraffic(200000)
	var sum int64
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		sum += events[i%len(events)].TS
	}
	_ = sum
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// The hot path allocates nothing per event once groups exist.
func TestEngineSteadyStateAllocatesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation test skipped in -short mode")
	}
	events := mixedTraffic(100000)
	en := NewEngine(loadRules(t, benchRules), Config{})
	emit := func(*Alert) {}
	for i := range events {
		en.Process(&events[i], emit)
	}
	shift := events[len(events)-1].TS - events[0].TS + int64(100*time.Microsecond)
	for j := range events {
		events[j].TS += shift
	}
	// Skip the first pass's alerts: measure a stretch that fires none.
	k := 0
	allocs := testing.AllocsPerRun(20000, func() {
		en.Process(&events[k%len(events)], emit)
		k++
	})
	if allocs > 0.01 {
		t.Errorf("%.3f allocs/event in steady state, want 0", allocs)
	}
}
