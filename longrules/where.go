package longrules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/parser"
	"github.com/vigil-sec/vigil/event"
)

// kind is the expr type of a translated sub-expression. The rule loader has
// type-checked the expression already; the kinds only pick the SQL form
// (string + is concat, int arithmetic stays Int64, int vs float compares
// as float like expr).
type kind uint8

const (
	kBool kind = iota + 1
	kInt
	kFloat
	kString
)

func numeric(k kind) bool { return k == kInt || k == kFloat }

// sqlExpr is SQL text with the values of its `?` placeholders, in text
// order. Every string that comes from a rule is a placeholder value, bound
// and quoted by the driver; numbers are written by strconv.
type sqlExpr struct {
	text string
	args []any
	k    kind
}

// cat concatenates strings and sqlExprs into one expression of kind k,
// keeping the placeholder values in text order.
func cat(k kind, parts ...any) sqlExpr {
	var b strings.Builder
	var args []any
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			b.WriteString(p)
		case sqlExpr:
			b.WriteString(p.text)
			args = append(args, p.args...)
		default:
			panic(fmt.Sprintf("longrules: cat of %T", p))
		}
	}
	return sqlExpr{text: b.String(), args: args, k: k}
}

// param is a placeholder for one value.
func param(v any, k kind) sqlExpr { return sqlExpr{text: "?", args: []any{v}, k: k} }

// unsupportedError names a construct that has no ClickHouse translation.
type unsupportedError struct{ construct string }

func (e *unsupportedError) Error() string { return e.construct + " cannot run in ClickHouse" }

func unsupported(format string, args ...any) error {
	return &unsupportedError{construct: fmt.Sprintf(format, args...)}
}

// translate turns a rule expression into a ClickHouse boolean over the
// columns of src's table. The text is parsed again: expression.Predicate
// keeps its tree private, and the parser's tree is the expression exactly
// as written.
func translate(src string, source event.Source) (sqlExpr, error) {
	tree, err := parser.Parse(src)
	if err != nil {
		return sqlExpr{}, fmt.Errorf("parse: %w", err)
	}
	t := translator{source: source}
	x, err := t.node(tree.Node)
	if err != nil {
		return sqlExpr{}, err
	}
	if x.k != kBool {
		return sqlExpr{}, unsupported("a non-boolean expression")
	}
	return x, nil
}

type translator struct {
	source event.Source
}

func (t *translator) node(n ast.Node) (sqlExpr, error) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		return t.field(n.Value)
	case *ast.MemberNode:
		// $env.status and $env["status"] are the field itself.
		if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "$env" {
			if prop, ok := n.Property.(*ast.StringNode); ok {
				return t.field(prop.Value)
			}
		}
		return sqlExpr{}, unsupported("member access %s", n.String())
	case *ast.IntegerNode:
		return sqlExpr{text: strconv.Itoa(n.Value), k: kInt}, nil
	case *ast.FloatNode:
		return sqlExpr{text: floatLiteral(n.Value), k: kFloat}, nil
	case *ast.StringNode:
		return param(n.Value, kString), nil
	case *ast.BoolNode:
		return sqlExpr{text: strconv.FormatBool(n.Value), k: kBool}, nil
	case *ast.UnaryNode:
		return t.unary(n)
	case *ast.BinaryNode:
		return t.binary(n)
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok {
			if id.Value == "cidr" && len(n.Arguments) == 2 {
				return t.cidr(n)
			}
			return sqlExpr{}, unsupported("function %s()", id.Value)
		}
		return sqlExpr{}, unsupported("call %s", n.String())
	case *ast.BuiltinNode:
		return sqlExpr{}, unsupported("function %s()", n.Name)
	case *ast.NilNode:
		return sqlExpr{}, unsupported("nil")
	case *ast.ConditionalNode:
		return sqlExpr{}, unsupported("conditional (%s)", n.String())
	case *ast.ArrayNode:
		return sqlExpr{}, unsupported("array %s outside in", n.String())
	case *ast.ChainNode:
		return sqlExpr{}, unsupported("optional chaining %s", n.String())
	case *ast.VariableDeclaratorNode:
		return sqlExpr{}, unsupported("let")
	}
	return sqlExpr{}, unsupported("expression %s", n.String())
}

// floatLiteral writes a float as ClickHouse reads it back exactly. Literals
// of an expression are finite.
func floatLiteral(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".e") {
		s += ".0" // 2.0 must stay a Float64, not become an integer
	}
	return s
}

// field maps an expression's field to its column. Integer columns are
// unsigned or narrower in the table and read as Int64, so arithmetic wraps
// as expr's int does; ts is Unix milliseconds, as expressions see it;
// data_classification is the namespace-enriched value (see classification).
func (t *translator) field(name string) (sqlExpr, error) {
	f, ok := event.Lookup(t.source, name)
	if !ok {
		return sqlExpr{}, unsupported("name %s", name)
	}
	if f.Kind == event.Object {
		return sqlExpr{}, unsupported("the %s object", name)
	}
	text, k := column(f)
	return sqlExpr{text: text, k: k}, nil
}

// column returns the SQL that reads field f as rule expressions see it.
func column(f *event.Field) (string, kind) {
	switch f.Name {
	case "ts":
		return "toUnixTimestamp64Milli(ts)", kInt
	case "data_classification":
		return aliasClass, kString
	}
	switch f.Kind {
	case event.Int:
		return "toInt64(" + f.Name + ")", kInt
	case event.Float:
		return f.Name, kFloat
	}
	return f.Name, kString
}

func (t *translator) unary(n *ast.UnaryNode) (sqlExpr, error) {
	x, err := t.node(n.Node)
	if err != nil {
		return sqlExpr{}, err
	}
	switch {
	case (n.Operator == "!" || n.Operator == "not") && x.k == kBool:
		return cat(kBool, "(NOT ", x, ")"), nil
	case n.Operator == "-" && numeric(x.k):
		// negate() rather than "-": a negative placeholder value after a
		// minus would read as "--", a comment.
		return cat(x.k, "negate(", x, ")"), nil
	case n.Operator == "+" && numeric(x.k):
		return x, nil
	}
	return sqlExpr{}, unsupported("operator %s", n.Operator)
}

var comparisons = map[string]string{"==": "=", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}

func (t *translator) binary(n *ast.BinaryNode) (sqlExpr, error) {
	switch n.Operator {
	case "in":
		return t.in(n)
	case "matches":
		return t.matches(n)
	}
	op := n.Operator
	_, isCmp := comparisons[op]
	known := isCmp
	switch op {
	case "&&", "and", "||", "or", "+", "-", "*", "/", "contains", "startsWith", "endsWith":
		known = true
	}
	if !known {
		return sqlExpr{}, unsupported("operator %s", op)
	}
	l, err := t.node(n.Left)
	if err != nil {
		return sqlExpr{}, err
	}
	r, err := t.node(n.Right)
	if err != nil {
		return sqlExpr{}, err
	}
	switch op {
	case "&&", "and", "||", "or":
		if l.k != kBool || r.k != kBool {
			break
		}
		word := " AND "
		if op == "||" || op == "or" {
			word = " OR "
		}
		return cat(kBool, "(", l, word, r, ")"), nil
	case "==", "!=", "<", "<=", ">", ">=":
		if numeric(l.k) && numeric(r.k) && l.k != r.k {
			// expr compares an int with a float as two float64s.
			l, r = asFloat(l), asFloat(r)
		}
		if l.k != r.k || (l.k == kBool && op != "==" && op != "!=") {
			break
		}
		return cat(kBool, "(", l, " "+comparisons[op]+" ", r, ")"), nil
	case "+", "-", "*":
		if op == "+" && l.k == kString && r.k == kString {
			return cat(kString, "concat(", l, ", ", r, ")"), nil
		}
		if !numeric(l.k) || !numeric(r.k) {
			break
		}
		if l.k == kInt && r.k == kInt {
			// Int64 on both sides: the result is Int64 and wraps on
			// overflow, like expr's int.
			return cat(kInt, "(toInt64(", l, ") "+op+" toInt64(", r, "))"), nil
		}
		return cat(kFloat, "(", asFloat(l), " "+op+" ", asFloat(r), ")"), nil
	case "/":
		// expr's / is always float division, as ClickHouse's is (x/0 is
		// ±inf or nan in both).
		if numeric(l.k) && numeric(r.k) {
			return cat(kFloat, "(", asFloat(l), " / ", asFloat(r), ")"), nil
		}
	case "contains":
		if l.k == kString && r.k == kString {
			return cat(kBool, "(position(", l, ", ", r, ") > 0)"), nil
		}
	case "startsWith", "endsWith":
		if l.k == kString && r.k == kString {
			return cat(kBool, op+"(", l, ", ", r, ")"), nil
		}
	}
	return sqlExpr{}, unsupported("operator %s on these operand types", op)
}

func asFloat(x sqlExpr) sqlExpr {
	if x.k == kFloat {
		return x
	}
	return cat(kFloat, "toFloat64(", x, ")")
}

// in translates `x in [literals]` and `x in lo..hi`. Elements of another
// type than x can never equal it (expr's Equal), so they are dropped.
func (t *translator) in(n *ast.BinaryNode) (sqlExpr, error) {
	needle, err := t.node(n.Left)
	if err != nil {
		return sqlExpr{}, err
	}
	switch list := n.Right.(type) {
	case *ast.BinaryNode:
		lo, ok1 := intLiteral(list.Left)
		hi, ok2 := intLiteral(list.Right)
		if list.Operator != ".." || !ok1 || !ok2 || !numeric(needle.k) {
			break
		}
		if needle.k == kFloat {
			// expr's range holds ints only, and a float never equals one
			// of them unless it is whole.
			return cat(kBool, "(", needle, " = floor(", needle, ") AND ", needle,
				" BETWEEN "+strconv.Itoa(lo)+" AND "+strconv.Itoa(hi)+")"), nil
		}
		return cat(kBool, "(", needle, " BETWEEN "+strconv.Itoa(lo)+" AND "+strconv.Itoa(hi)+")"), nil
	case *ast.ArrayNode:
		var elems []sqlExpr
		hasFloat := false
		for _, el := range list.Nodes {
			v, ok := literal(el)
			if !ok {
				return sqlExpr{}, unsupported("in with a non-literal element %s", el.String())
			}
			switch {
			case needle.k == kString && v.k == kString,
				needle.k == kBool && v.k == kBool,
				numeric(needle.k) && numeric(v.k):
				hasFloat = hasFloat || v.k == kFloat
				elems = append(elems, v)
			}
		}
		if len(elems) == 0 {
			return sqlExpr{text: "false", k: kBool}, nil
		}
		if needle.k == kInt && hasFloat {
			needle = asFloat(needle) // compared as float64, as expr does
		}
		parts := []any{"(", needle, " IN ("}
		for i, e := range elems {
			if i > 0 {
				parts = append(parts, ", ")
			}
			parts = append(parts, e)
		}
		return cat(kBool, append(parts, "))")...), nil
	}
	return sqlExpr{}, unsupported("in with %s (use a list of literals)", n.Right.String())
}

// literal translates a literal list element (a number may carry a sign).
func literal(n ast.Node) (sqlExpr, bool) {
	switch n := n.(type) {
	case *ast.StringNode:
		return param(n.Value, kString), true
	case *ast.IntegerNode:
		return sqlExpr{text: strconv.Itoa(n.Value), k: kInt}, true
	case *ast.FloatNode:
		return sqlExpr{text: floatLiteral(n.Value), k: kFloat}, true
	case *ast.BoolNode:
		return sqlExpr{text: strconv.FormatBool(n.Value), k: kBool}, true
	case *ast.UnaryNode:
		if n.Operator == "-" || n.Operator == "+" {
			if v, ok := literal(n.Node); ok && numeric(v.k) {
				if n.Operator == "-" {
					v.text = "negate(" + v.text + ")"
				}
				return v, true
			}
		}
	}
	return sqlExpr{}, false
}

func intLiteral(n ast.Node) (int, bool) {
	switch n := n.(type) {
	case *ast.IntegerNode:
		return n.Value, true
	case *ast.UnaryNode:
		if v, ok := intLiteral(n.Node); ok && (n.Operator == "-" || n.Operator == "+") {
			if n.Operator == "-" {
				v = -v
			}
			return v, true
		}
	}
	return 0, false
}

// matches needs a literal pattern: it is bound as a constant, which
// ClickHouse's match() compiles once (RE2 syntax, as Go's regexp).
func (t *translator) matches(n *ast.BinaryNode) (sqlExpr, error) {
	l, err := t.node(n.Left)
	if err != nil {
		return sqlExpr{}, err
	}
	pat, ok := n.Right.(*ast.StringNode)
	if !ok || l.k != kString {
		return sqlExpr{}, unsupported("matches with a non-literal pattern")
	}
	return cat(kBool, "match(", l, ", ", param(pat.Value, kString), ")"), nil
}

// cidr translates cidr(ip, "prefix") into a range test on the parsed
// address, with the in-memory semantics (rules/expression/cidr.go): an
// address that does not parse is in no prefix, an IPv4-mapped IPv6 address
// is tested as the IPv4 address it carries (toIPv6 maps IPv4 the same way,
// so both forms compare equal), and an IPv6 prefix holds no IPv4 address.
// isIPAddressInRange would throw on a malformed or empty address and
// fail the whole query.
func (t *translator) cidr(n *ast.CallNode) (sqlExpr, error) {
	ip, err := t.node(n.Arguments[0])
	if err != nil {
		return sqlExpr{}, err
	}
	lit, ok := n.Arguments[1].(*ast.StringNode)
	if !ok || ip.k != kString {
		return sqlExpr{}, unsupported("cidr with a non-literal prefix")
	}
	lo, hi, is4, err := prefixRange(lit.Value)
	if err != nil {
		return sqlExpr{}, unsupported("cidr prefix %q", lit.Value)
	}
	addr := cat(kString, "toIPv6OrNull(", ip, ")")
	test := cat(kBool, "ifNull(", addr, " BETWEEN toIPv6(", param(lo, kString), ") AND toIPv6(", param(hi, kString), "), false)")
	if is4 {
		return test, nil
	}
	return cat(kBool, "(", test, " AND NOT ifNull(", addr, " BETWEEN toIPv6('::ffff:0.0.0.0') AND toIPv6('::ffff:255.255.255.255'), false))"), nil
}

// prefixRange parses a cidr() prefix as the detector does (host bits
// ignored, an IPv4-mapped prefix of at least 96 bits is the IPv4 prefix it
// denotes) and returns its first and last address, IPv4 ones in their
// IPv4-mapped IPv6 form.
func prefixRange(s string) (lo, hi string, is4 bool, err error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return "", "", false, err
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	p = p.Masked()
	first := p.Addr()
	b := first.AsSlice()
	for i := range b {
		host := p.Bits() - 8*i // network bits left in this byte
		switch {
		case host <= 0:
			b[i] = 0xff
		case host < 8:
			b[i] |= 0xff >> host
		}
	}
	last, _ := netip.AddrFromSlice(b)
	if first.Is4() {
		return "::ffff:" + first.String(), "::ffff:" + last.String(), true, nil
	}
	return first.String(), last.String(), false, nil
}
