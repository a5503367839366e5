package expression

import (
	"flag"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/event"
)

// TestRandomExpressionsAgreeWithExpr generates well-typed expressions from
// the natively supported constructs, nested, and checks Match against expr
// on every test event.
var (
	randomN    = flag.Int("random.n", 3000, "expressions per source in TestRandomExpressionsAgreeWithExpr")
	randomSeed = flag.Uint64("random.seed", 1, "seed of TestRandomExpressionsAgreeWithExpr")
)

func TestRandomExpressionsAgreeWithExpr(t *testing.T) {
	n := *randomN
	if testing.Short() {
		n /= 10
	}
	for _, source := range []event.Source{event.Requests, event.Audit} {
		g := &exprGen{rnd: rand.New(rand.NewPCG(*randomSeed, uint64(source))), source: source}
		native := 0
		for range n {
			src := g.boolean(4)
			p, err := Compile(src, source)
			if err != nil {
				t.Fatalf("generated %q does not compile: %v", src, err)
			}
			if p.Compiled() {
				native++
			}
			for i := range eventsOf(source) {
				e := &eventsOf(source)[i]
				if got, want := p.Match(e), reference(t, p, e); got != want {
					t.Fatalf("%q on %v event %d: Match = %v (compiled %v), expr says %v",
						src, source, i, got, p.Compiled(), want)
				}
			}
		}
		if native < n*9/10 {
			t.Errorf("%v: only %d of %d generated expressions compiled natively", source, native, n)
		}
	}
}

type exprGen struct {
	rnd    *rand.Rand
	source event.Source
}

func (g *exprGen) pick(xs ...string) string { return xs[g.rnd.IntN(len(xs))] }

func (g *exprGen) fieldsOf(k event.Kind) []string {
	var names []string
	for _, f := range event.Fields(g.source) {
		if f.Kind == k {
			names = append(names, f.Name)
		}
	}
	return names
}

func (g *exprGen) boolean(depth int) string {
	if depth <= 0 {
		return g.pick("true", "false", g.cmpNum(0), g.cmpStr(0))
	}
	d := depth - 1
	switch g.rnd.IntN(16) {
	case 0:
		return "(" + g.boolean(d) + " " + g.pick("&&", "||", "and", "or") + " " + g.boolean(d) + ")"
	case 1:
		return g.pick("!", "not ") + "(" + g.boolean(d) + ")"
	case 2:
		return g.cmpNum(d)
	case 3:
		return g.cmpStr(d)
	case 4:
		return g.integer(d) + g.pick(" in ", " not in ") + g.numList()
	case 5:
		return g.str(d) + g.pick(" in ", " not in ") + g.strList()
	case 6:
		return g.str(d) + " " + g.pick("contains", "startsWith", "endsWith", "not contains") + " " + g.str(d)
	case 7:
		return g.str(d) + g.pick(" matches ", " not matches ") + strconv.Quote(g.pick("^/v1", "(?i)CURL", "é", "[0-9]+$", "", "^$"))
	case 8:
		return "cidr(" + g.str(d) + ", " + strconv.Quote(g.pick("10.0.0.0/8", "0.0.0.0/0", "::/0", "2001:db8::/32",
			"203.0.113.7/32", "::ffff:10.0.0.0/104", "fe80::/10", "192.0.2.0/24")) + ")"
	case 9:
		return "(" + g.boolean(d) + " ? " + g.boolean(d) + " : " + g.boolean(d) + ")"
	case 10:
		return g.integer(d) + g.pick(" in ", " not in ") + g.pick("400..499", "0..0", "5..1", "-3..3", "200..299")
	case 11:
		return "(" + g.boolean(d) + ") " + g.pick("==", "!=") + " (" + g.boolean(d) + ")"
	case 12:
		// Computed values: a bare field compared with nil is a load error.
		return "(" + g.pick(g.integer(d)+" + 0", g.str(d)+` + ""`, g.float(d)+" * 1") + ")" + g.pick(" == nil", " != nil")
	case 13:
		return "(nil ?? (" + g.boolean(d) + "))"
	case 14:
		return "(" + g.boolean(d) + ") in [true]"
	default:
		return g.cmpNum(d)
	}
}

func (g *exprGen) cmpNum(d int) string {
	op := g.pick("==", "!=", "<", "<=", ">", ">=")
	return g.number(d) + " " + op + " " + g.number(d)
}

func (g *exprGen) cmpStr(d int) string {
	op := g.pick("==", "!=", "<", "<=", ">", ">=")
	return g.str(d) + " " + op + " " + g.str(d)
}

func (g *exprGen) number(d int) string {
	if g.rnd.IntN(2) == 0 {
		return g.integer(d)
	}
	return g.float(d)
}

func (g *exprGen) integer(depth int) string {
	leaves := append(g.fieldsOf(event.Int), "0", "1", "-1", "401", "403", "9223372036854775807", "200")
	if depth <= 0 || g.rnd.IntN(3) == 0 {
		return g.pick(leaves...)
	}
	d := depth - 1
	switch g.rnd.IntN(6) {
	case 0:
		return "(" + g.integer(d) + " " + g.pick("+", "-", "*") + " " + g.integer(d) + ")"
	case 1:
		return "(" + g.integer(d) + " % " + g.integer(d) + ")"
	case 2:
		return "-" + g.integer(d)
	case 3:
		return "len(" + g.str(d) + ")"
	case 4:
		return "(" + g.boolean(d) + " ? " + g.integer(d) + " : " + g.integer(d) + ")"
	default:
		return "((" + g.integer(d) + ") ?? 7)"
	}
}

func (g *exprGen) float(depth int) string {
	leaves := append(g.fieldsOf(event.Float), "0.5", "12.5", "-0.0", "1e300", "10e6")
	if depth <= 0 || g.rnd.IntN(3) == 0 {
		return g.pick(leaves...)
	}
	d := depth - 1
	switch g.rnd.IntN(5) {
	case 0:
		return "(" + g.number(d) + " / " + g.number(d) + ")"
	case 1:
		return "(" + g.float(d) + " " + g.pick("+", "-", "*") + " " + g.number(d) + ")"
	case 2:
		return "(" + g.number(d) + " ** " + g.pick("2", "0.5", "-1") + ")"
	case 3:
		return "-" + g.float(d)
	default:
		return "(" + g.boolean(d) + " ? " + g.float(d) + " : " + g.float(d) + ")"
	}
}

var strLiterals = []string{`""`, `"/"`, `"/v1"`, `"GET"`, `"get"`, `"data"`, `"é"`, `"É"`, `"İ"`, `"i̇"`,
	`"ß"`, `"SS"`, `"\u212a"`, `"k"`, `"\ufffd"`, `"curl"`, `"CURL/"`, `"10.1.2.3"`, `"::ffff:10.9.8.7"`,
	`"ADMIN"`, `"success"`, `" padded "`, `"org_é"`}

func (g *exprGen) str(depth int) string {
	if g.source == event.Audit && g.rnd.IntN(4) == 0 {
		return "status"
	}
	leaves := append(g.fieldsOf(event.String), strLiterals...)
	if depth <= 0 || g.rnd.IntN(3) == 0 {
		return g.pick(leaves...)
	}
	d := depth - 1
	switch g.rnd.IntN(6) {
	case 0, 1:
		return g.pick("lower", "upper") + "(" + g.str(d) + ")"
	case 2:
		return g.pick("trim", "trimPrefix", "trimSuffix") + "(" + g.plainStr(d) + ")"
	case 3:
		return g.pick("trim", "trimPrefix", "trimSuffix") + "(" + g.plainStr(d) + ", " + g.pick(strLiterals...) + ")"
	case 4:
		return "(" + g.boolean(d) + " ? " + g.plainStr(d) + " : " + g.plainStr(d) + ")"
	default:
		return "(" + g.pick(strLiterals...) + " + " + g.pick(strLiterals...) + ")"
	}
}

// plainStr avoids lower/upper where only an unmapped string is compiled
// natively (it would still be correct, only on the VM).
func (g *exprGen) plainStr(depth int) string {
	s := g.str(depth)
	for strings.HasPrefix(s, "lower(") || strings.HasPrefix(s, "upper(") {
		s = g.pick(g.fieldsOf(event.String)...)
	}
	return s
}

func (g *exprGen) numList() string {
	var xs []string
	for i := range g.rnd.IntN(12) {
		if i == 0 { // at least one number, or a list of others is a type error
			xs = append(xs, g.pick("401", "0.9"))
			continue
		}
		xs = append(xs, g.pick("401", "403", "200", "0", "12.5", "0.9", "-3", "1e300", `"x"`, "nil", "true", "1.5"))
	}
	return "[" + strings.Join(xs, ", ") + "]"
}

func (g *exprGen) strList() string {
	var xs []string
	for range g.rnd.IntN(12) {
		xs = append(xs, g.pick(strLiterals...))
	}
	if len(xs) > 0 && g.rnd.IntN(4) == 0 { // mixed types are fine, only others are not
		xs = append(xs, g.pick("1", "nil", "true"))
	}
	return "[" + strings.Join(xs, ", ") + "]"
}
