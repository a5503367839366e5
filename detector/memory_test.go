package detector

import (
	"fmt"
	"runtime"
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
