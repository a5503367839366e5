package expression

import (
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/vigil-sec/vigil/event"
)

var benchEvent = event.Event{
	Source: event.Requests, TS: 1795370401000e6, ID: "req_0003", OrgID: "org_7", IP: "10.20.30.40",
	Method: "GET", Route: "/v1/organizations/api-keys", Operation: "data", Status: 403,
	BytesOut: 64, LatencyMs: 0.9, UserAgent: "Mozilla/5.0 (X11; Linux x86_64) sqlmap/1.7",
}

// benchExprs are evaluated in full on benchEvent (no short cut taken early).
var benchExprs = []struct{ name, src string }{
	{"in-and-eq", `status in [401, 403] && operation == "data"`},
	{"cidr", `cidr(ip, "10.0.0.0/8")`},
	{"startsWith", `route startsWith "/v1/organizations"`},
	{"not-cidr-ipv6", `not cidr(ip, "2001:db8::/32")`},
	{"lower-contains", `lower(user_agent) contains "sqlmap"`},
	{"matches", `user_agent matches "sqlmap/[0-9]"`},
}

var sink bool

func BenchmarkMatch(b *testing.B) {
	for _, bc := range benchExprs {
		p, err := Compile(bc.src, event.Requests)
		if err != nil || !p.Compiled() {
			b.Fatalf("Compile(%q): %v, compiled %v", bc.src, err, p != nil && p.Compiled())
		}
		e := &benchEvent
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = p.Match(e)
			}
		})
	}
}

// BenchmarkBaselineExprVM runs the same expressions on expr's VM: "run" is
// the VM alone on a ready environment with expr's default optimizer, as a
// plain expr user would have it; "fallback" is Match on the VM path of this
// package, environment filling included.
func BenchmarkBaselineExprVM(b *testing.B) {
	for _, bc := range benchExprs {
		opts := append(exprOptions(event.Requests), expr.Optimize(true))
		program, err := expr.Compile(bc.src, opts...)
		if err != nil {
			b.Fatal(err)
		}
		env := envFor(&benchEvent, event.Requests, false)
		b.Run(bc.name+"/run", func(b *testing.B) {
			b.ReportAllocs()
			var m vm.VM
			for b.Loop() {
				out, _ := m.Run(program, env)
				sink = out.(bool)
			}
		})
		p, err := Compile(bc.src, event.Requests)
		if err != nil {
			b.Fatal(err)
		}
		p.native = nil
		e := &benchEvent
		b.Run(bc.name+"/fallback", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = p.Match(e)
			}
		})
	}
}

func TestBenchmarkExpressionsDoNotAllocate(t *testing.T) {
	for _, bc := range benchExprs {
		p, err := Compile(bc.src, event.Requests)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Compiled() || !p.Match(&benchEvent) {
			t.Fatalf("%q: compiled %v, match %v; the benchmark would not measure a full evaluation",
				bc.src, p.Compiled(), p.Match(&benchEvent))
		}
		if raceEnabled && strings.Contains(bc.src, "matches") {
			continue // see raceEnabled
		}
		if n := testing.AllocsPerRun(100, func() { sink = p.Match(&benchEvent) }); n != 0 {
			t.Errorf("%q: %v allocs per Match, want 0", bc.src, n)
		}
	}
}
