package expression

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/vigil-sec/vigil/event"
)

// FuzzCompile: no source text makes Compile panic; errors are *Error with a
// position; a compiled predicate neither panics nor disagrees with expr's
// own evaluation.
func FuzzCompile(f *testing.F) {
	for _, tc := range differentialCases {
		f.Add(tc.src)
	}
	for _, src := range []string{
		"", "(", `"`, "status in [", "cidr(ip, \"", "status ?? ??", "let x = 1;", "$env", "#",
		"route matches \"[\"", "1..", "status in 1..0", "\xff", "status == 401 &&\n\tfoo",
		`status % (bytes_in - bytes_in) == 0`, `lower(upper(route)) endsWith "É"`,
	} {
		f.Add(src)
	}
	events := []*event.Event{&requestEvents[0], &requestEvents[3], &requestEvents[4], &requestEvents[7],
		&auditEvents[0], &auditEvents[4]}
	f.Fuzz(func(t *testing.T, src string) {
		for _, source := range []event.Source{event.Requests, event.Audit} {
			p, err := Compile(src, source)
			if err != nil {
				var ce *Error
				if !errors.As(err, &ce) || ce.Line < 1 || ce.Column < 1 || ce.Message == "" {
					t.Fatalf("Compile(%q): error %T %#v", src, err, err)
				}
				continue
			}
			for _, e := range events {
				if e.Source != source {
					continue
				}
				if got, want := p.Match(e), reference(t, p, e); got != want {
					t.Fatalf("%q on %v %s: Match = %v (compiled %v), expr says %v",
						src, source, e.ID, got, p.Compiled(), want)
				}
			}
		}
	})
}

// FuzzParseAddr: parseAddr accepts what netip.ParseAddr accepts, and gives
// the same address without its zone.
func FuzzParseAddr(f *testing.F) {
	for _, s := range addrCorpus {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkParseAddr(t, s)
	})
}

var addrCorpus = []string{
	"", "1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..2.3",
	".1.2.3", "1.2.3.", "1.2.3.4%eth0", "::", "::1", "1::", "2001:db8::42", "2001:db8:0:0:0:0:0:1",
	"2001:db8:0:0:0:0:0:0:1", "::ffff:10.1.2.3", "::ffff:10.1.2", "1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:1.2.3.4",
	"1:2:3:4:5:6:7:1.2.3.4", "fe80::1%eth0", "fe80::1%", "%eth0", "::1%1%2", "12345::", "1:::2", "1::2::3",
	"::ffff:1.2.3.4%z", "g::", "ABCD:EF01::", ":1", "1:", "1:2:3:4:5:6:7:8:", "a.b.c.d", "::1.2.3.4",
	"1::2:3:4:5:6:7", "1:2:3:4:5:6:7::",
}

func TestParseAddrAgreesWithNetip(t *testing.T) {
	for _, s := range addrCorpus {
		checkParseAddr(t, s)
	}
}

func checkParseAddr(t *testing.T, s string) {
	t.Helper()
	want, err := netip.ParseAddr(s)
	got, ok := parseAddr(s)
	if ok != (err == nil) || ok && got != want.WithZone("") {
		t.Fatalf("parseAddr(%q) = %v, %v; netip.ParseAddr = %v, %v", s, got, ok, want, err)
	}
	if n := testing.AllocsPerRun(5, func() { parseAddr(s) }); n != 0 {
		t.Fatalf("parseAddr(%q): %v allocs", s, n)
	}
}
