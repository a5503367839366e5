package detector

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
)

// bytesPerGroup measures the heap a rule holds per tracked group after
// each of n groups saw one event (a rotating-address flood).
func bytesPerGroup(t testing.TB, rule string, n int) float64 {
	rs := loadRules(t, rule)
	en := NewEngine(rs, Config{MaxGroups: n})
	events := make([]event.Event, n)
	ips := make([]string, n)
	for i := range events {
		ips[i] = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
		events[i] = event.Event{Source: event.Requests, TS: t0.Add(time.Duration(i) * time.Microsecond).UnixNano(),
			ID: "req_000000000001", IP: ips[i], APIKeyID: ips[i], Status: 401, Namespace: "ns_1"}
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	emit := func(*Alert) {}
	for i := range events {
		en.Process(&events[i], emit)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(en)
	runtime.KeepAlive(events) // measured before and after: not part of the state
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
}

// BenchmarkMemoryPerGroup reports bytes per tracked group for each kind;
// the figures are in docs/performance.md.
func BenchmarkMemoryPerGroup(b *testing.B) {
	kinds := []struct{ name, rule string }{
		{"count", "  - id: r\n    source: requests\n    group_by: [ip]\n    window: 1m\n    threshold: '> 1000'\n"},
		{"distinct", "  - id: r\n    source: requests\n    group_by: [ip]\n    window: 1m\n    aggregate: distinct(namespace)\n    threshold: '> 1000'\n"},
		{"anomaly", "  - id: r\n    source: requests\n    group_by: [ip]\n    window: 1m\n    anomaly: {baseline: 1h, z: 6, min: 200}\n"},
		{"new_value", "  - id: r\n    source: requests\n    new_value: {field: ip, per: [api_key_id]}\n"},
		{"dormant", "  - id: r\n    source: requests\n    dormant: {field: ip, idle: 90d}\n"},
		{"sequence", "  - id: r\n    source: requests\n    sequence: {by: [ip], within: 10m, steps: [{where: 'status == 401'}, {where: 'status == 200'}]}\n"},
	}
	for _, k := range kinds {
		b.Run(k.name, func(b *testing.B) {
			var per float64
			for i := 0; i < b.N; i++ {
				per = bytesPerGroup(b, k.rule, 100000)
			}
			b.ReportMetric(per, "bytes/group")
		})
	}
}

// A flood of distinct addresses keeps memory bounded by the cap.
func TestGroupCapBoundsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("memory test skipped in -short mode")
	}
	rs := loadRules(t, "  - id: r\n    source: requests\n    group_by: [ip]\n    window: 1m\n    threshold: '> 1000'\n")
	en := NewEngine(rs, Config{MaxGroups: 1000})
	emit := func(*Alert) {}
	for i := 0; i < 200000; i++ {
		e := event.Event{Source: event.Requests, TS: t0.Add(time.Duration(i) * time.Microsecond).UnixNano(),
			ID: "r", IP: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)}
		en.Process(&e, emit)
	}
	s := en.Stats()[0]
	if s.Groups != 1000 || s.Evictions != 199000 {
		t.Errorf("stats %+v: want 1000 groups and 199000 evictions", s)
	}
}

// An attacker rotating through millions of addresses (VIGIL_FLOOD events,
// default 500,000; the soak profile uses 10,000,000) while a brute force
// goes on from one address: memory stays bounded by the group cap, the
// stalest groups are evicted and counted, and the brute force is still
// detected.
func TestCardinalityFloodKeepsDetectingTheRest(t *testing.T) {
	if testing.Short() {
		t.Skip("memory test skipped in -short mode")
	}
	n := 500000
	if v, err := strconv.Atoi(os.Getenv("VIGIL_FLOOD")); err == nil && v > 0 {
		n = v
	}
	const capGroups = 10000
	rs := loadRules(t, "  - id: r\n    source: requests\n    where: 'status == 401'\n    group_by: [ip]\n    window: 1m\n    threshold: '>= 100'\n")
	en := NewEngine(rs, Config{MaxGroups: capGroups})
	var alerts []string
	emit := func(a *Alert) { alerts = append(alerts, a.Group[0].Value) }
	var before, peak runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var e event.Event
	for i := range n {
		ip := "203.0.113.66" // the brute force: one in 100 events, 100 within a minute
		if i%100 != 0 {
			ip = fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
			if i >= 1<<24 {
				ip = fmt.Sprintf("11.%d.%d.%d", i>>16&255, i>>8&255, i&255)
			}
		}
		e = event.Event{Source: event.Requests, TS: t0.Add(time.Duration(i) * 500 * time.Microsecond).UnixNano(), ID: "req", IP: ip, Status: 401}
		en.Process(&e, emit)
		if i%(n/10) == 0 {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.HeapAlloc {
				peak = m
			}
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	s := en.Stats()[0]
	held := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / capGroups
	t.Logf("%d events, %d groups held, %d evictions, %.0f bytes per held group after GC, peak heap %d MiB",
		n, s.Groups, s.Evictions, held, peak.HeapAlloc>>20)
	if s.Groups != capGroups || s.Evictions == 0 {
		t.Errorf("stats %+v: want %d groups and evictions counted", s, capGroups)
	}
	if held > 4096 {
		t.Errorf("%.0f bytes per held group: memory is not bounded by the cap", held)
	}
	if len(alerts) == 0 || alerts[0] != "203.0.113.66" {
		t.Errorf("alerts %v: the brute force was not detected under the flood", alerts)
	}
}
