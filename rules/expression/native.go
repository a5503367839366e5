package expression

import (
	"errors"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/conf"
	"github.com/vigil-sec/vigil/event"
)

// This file turns a type-checked expr tree into Go closures over
// *event.Event. Each construct below reproduces what expr's VM computes for
// it (vm/runtime: Equal, Less, Add, Divide, Modulo, In, ...) for the types
// that can occur here: expr's int is Go's int, which is int64 on the 64-bit
// platforms this runs on (elsewhere everything falls back to the VM). A
// construct that compiler.node does not handle makes compileNative give up,
// and the whole expression runs on the VM.

// errIntegerDivideByZero is panicked by a native `%` with a zero divisor and
// recovered by Predicate.matchGuarded: in expr this is a run-time error,
// which a predicate reports as false.
var errIntegerDivideByZero = errors.New("integer divide by zero")

type kind uint8

const (
	kBool kind = iota + 1
	kInt
	kFloat
	kString
	kNil // the literal nil; only as an operand of ==, !=, in and ??
)

type (
	boolFn  = func(*event.Event) bool
	intFn   = func(*event.Event) int64
	floatFn = func(*event.Event) float64
	strFn   = func(*event.Event) string
)

// value is a compiled sub-expression: one of b, i, f, s according to k.
type value struct {
	k kind
	b boolFn
	i intFn
	f floatFn
	s strFn
	// fold is a case mapping still to apply to s's result (lower/upper),
	// see fold.go; nil for none.
	fold func(rune) rune
	// konst: the value does not depend on the event, and its function may
	// be called with a nil event.
	konst bool
	// panics: evaluating it may raise errIntegerDivideByZero.
	panics bool
}

func constBool(c bool) value {
	return value{k: kBool, konst: true, b: func(*event.Event) bool { return c }}
}

func constInt(c int64) value {
	return value{k: kInt, konst: true, i: func(*event.Event) int64 { return c }}
}

func constFloat(c float64) value {
	return value{k: kFloat, konst: true, f: func(*event.Event) float64 { return c }}
}

func constString(c string) value {
	return value{k: kString, konst: true, s: func(*event.Event) string { return c }}
}

func isNumber(v value) bool { return v.k == kInt || v.k == kFloat }

func asFloat(v value) floatFn {
	if v.k == kFloat {
		return v.f
	}
	i := v.i
	return func(e *event.Event) float64 { return float64(i(e)) }
}

type compiler struct {
	source event.Source
	// memory is what the VM would charge against its memory budget for
	// the array literals and ranges of the expression. Natively each of
	// them is evaluated at most once, so this sum bounds one evaluation.
	memory uint64
}

// compileNative returns the closure form of a checked boolean expression,
// or nil when some part of it is not supported natively; guarded tells
// whether it may raise errIntegerDivideByZero.
func compileNative(root ast.Node, source event.Source) (fn func(*event.Event) bool, guarded bool) {
	if strconv.IntSize != 64 {
		return nil, false
	}
	c := &compiler{source: source}
	v, ok := c.compile(root)
	if !ok || v.k != kBool || c.memory >= uint64(conf.DefaultMemoryBudget) {
		return nil, false
	}
	return v.b, v.panics
}

func (c *compiler) compile(n ast.Node) (value, bool) {
	v, ok := c.node(n)
	if !ok || !natureAgrees(n, v) {
		return value{}, false
	}
	return v, true
}

// natureAgrees cross-checks our type with the checker's: where expr knows
// the type statically it must be ours. Where it does not (interface), the
// VM dispatches on the run-time type, which is ours.
func natureAgrees(n ast.Node, v value) bool {
	switch n.Type().Kind() {
	case reflect.Bool:
		return v.k == kBool
	case reflect.Int:
		return v.k == kInt
	case reflect.Float64:
		return v.k == kFloat
	case reflect.String:
		return v.k == kString
	case reflect.Interface:
		return true
	}
	return false
}

// finish marks v with its operands' run-time errors and replaces it by a
// constant when none of them depends on the event.
func finish(v value, operands ...value) value {
	konst := true
	for _, o := range operands {
		v.panics = v.panics || o.panics
		konst = konst && o.konst
	}
	if !konst || v.panics || v.konst {
		return v
	}
	switch v.k {
	case kBool:
		return constBool(v.b(nil))
	case kInt:
		return constInt(v.i(nil))
	case kFloat:
		return constFloat(v.f(nil))
	case kString:
		return constString(foldString(v.s(nil), v.fold))
	}
	return v
}

func (c *compiler) node(n ast.Node) (value, bool) {
	switch n := n.(type) {
	case *ast.IdentifierNode:
		return c.field(n.Value)
	case *ast.MemberNode:
		// $env.status and $env["status"] are the field itself.
		if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "$env" {
			if prop, ok := n.Property.(*ast.StringNode); ok {
				return c.field(prop.Value)
			}
		}
		return value{}, false
	case *ast.ChainNode:
		return c.compile(n.Node)
	case *ast.NilNode:
		return value{k: kNil, konst: true}, true
	case *ast.BoolNode:
		return constBool(n.Value), true
	case *ast.IntegerNode:
		return constInt(int64(n.Value)), true
	case *ast.FloatNode:
		return constFloat(n.Value), true
	case *ast.StringNode:
		return constString(n.Value), true
	case *ast.UnaryNode:
		return c.unary(n)
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.ConditionalNode:
		return c.conditional(n)
	case *ast.BuiltinNode:
		return c.builtin(n)
	case *ast.CallNode:
		return c.call(n)
	}
	return value{}, false
}

func (c *compiler) field(name string) (value, bool) {
	f, ok := event.Lookup(c.source, name)
	if !ok {
		return value{}, false
	}
	switch f.Kind {
	case event.String:
		return value{k: kString, s: f.Str}, true
	case event.Int:
		return value{k: kInt, i: f.Int}, true
	case event.Float:
		return value{k: kFloat, f: f.Float}, true
	}
	return value{}, false // changes: only the VM reads it
}

func (c *compiler) unary(n *ast.UnaryNode) (value, bool) {
	x, ok := c.compile(n.Node)
	if !ok {
		return value{}, false
	}
	switch {
	case (n.Operator == "!" || n.Operator == "not") && x.k == kBool:
		b := x.b
		return finish(value{k: kBool, b: func(e *event.Event) bool { return !b(e) }}, x), true
	case n.Operator == "-" && x.k == kInt:
		i := x.i
		return finish(value{k: kInt, i: func(e *event.Event) int64 { return -i(e) }}, x), true
	case n.Operator == "-" && x.k == kFloat:
		f := x.f
		return finish(value{k: kFloat, f: func(e *event.Event) float64 { return -f(e) }}, x), true
	case n.Operator == "+" && isNumber(x):
		return x, true
	}
	return value{}, false
}

func (c *compiler) binary(n *ast.BinaryNode) (value, bool) {
	switch n.Operator {
	case "in":
		return c.in(n)
	case "??":
		return c.coalesce(n)
	}
	l, ok := c.compile(n.Left)
	if !ok {
		return value{}, false
	}
	r, ok := c.compile(n.Right)
	if !ok {
		return value{}, false
	}
	switch n.Operator {
	case "&&", "and", "||", "or":
		if l.k != kBool || r.k != kBool {
			return value{}, false
		}
		lb, rb := l.b, r.b
		var b boolFn
		if n.Operator == "&&" || n.Operator == "and" {
			b = func(e *event.Event) bool { return lb(e) && rb(e) }
		} else {
			b = func(e *event.Event) bool { return lb(e) || rb(e) }
		}
		return finish(value{k: kBool, b: b}, l, r), true
	case "==", "!=", "<", "<=", ">", ">=":
		return compare(n.Operator, l, r)
	case "+", "-", "*", "/", "%", "**", "^":
		return arithmetic(n.Operator, l, r)
	case "contains", "startsWith", "endsWith":
		return stringTest(n.Operator, l, r)
	case "matches":
		return matches(l, r)
	}
	return value{}, false
}

// mirror gives the operator with its operands swapped.
var mirror = map[string]string{"==": "==", "!=": "!=", "<": ">", ">": "<", "<=": ">=", ">=": "<="}

// compare implements == != < <= > >= as runtime.Equal and runtime.Less do:
// int with int as integers, other number pairs as float64, strings
// bytewise, bools by value, nil equal only to nil.
func compare(op string, l, r value) (value, bool) {
	if l.konst && !r.konst {
		l, r, op = r, l, mirror[op]
	}
	eq := op == "==" || op == "!="
	var b boolFn
	switch {
	case l.k == kNil || r.k == kNil:
		if !eq || l.panics || r.panics {
			return value{}, false
		}
		// The other operand cannot be nil: its type is concrete.
		return constBool((l.k == r.k) == (op == "==")), true
	case l.k == kInt && r.k == kInt:
		b = comparison(op, l.i, r.i, r.konst)
	case isNumber(l) && isNumber(r):
		b = comparison(op, asFloat(l), asFloat(r), r.konst)
	case l.k == kString && r.k == kString:
		if l.fold == nil && r.fold == nil {
			b = comparison(op, l.s, r.s, r.konst)
		} else {
			b = foldComparison(op, l, r)
		}
	case l.k == kBool && r.k == kBool && eq:
		lb, rb := l.b, r.b
		if op == "==" {
			b = func(e *event.Event) bool { return lb(e) == rb(e) }
		} else {
			b = func(e *event.Event) bool { return lb(e) != rb(e) }
		}
	}
	if b == nil {
		return value{}, false
	}
	return finish(value{k: kBool, b: b}, l, r), true
}

func comparison[T int64 | float64 | string](op string, l, r func(*event.Event) T, rConst bool) boolFn {
	if rConst {
		c := r(nil)
		switch op {
		case "==":
			return func(e *event.Event) bool { return l(e) == c }
		case "!=":
			return func(e *event.Event) bool { return l(e) != c }
		case "<":
			return func(e *event.Event) bool { return l(e) < c }
		case "<=":
			return func(e *event.Event) bool { return l(e) <= c }
		case ">":
			return func(e *event.Event) bool { return l(e) > c }
		case ">=":
			return func(e *event.Event) bool { return l(e) >= c }
		}
		return nil
	}
	switch op {
	case "==":
		return func(e *event.Event) bool { return l(e) == r(e) }
	case "!=":
		return func(e *event.Event) bool { return l(e) != r(e) }
	case "<":
		return func(e *event.Event) bool { return l(e) < r(e) }
	case "<=":
		return func(e *event.Event) bool { return l(e) <= r(e) }
	case ">":
		return func(e *event.Event) bool { return l(e) > r(e) }
	case ">=":
		return func(e *event.Event) bool { return l(e) >= r(e) }
	}
	return nil
}

func foldComparison(op string, l, r value) boolFn {
	if l.fold == nil {
		l, r, op = r, l, mirror[op] // the shortcuts want the mapped side left
	}
	ls, rs := l.s, r.s
	switch op {
	case "==", "!=":
		eq, want := testEqual.bind(l.fold, r.fold), op == "=="
		return func(e *event.Event) bool { return eq(ls(e), rs(e)) == want }
	}
	cmp := bindCompare(l.fold, r.fold)
	switch op {
	case "<":
		return func(e *event.Event) bool { return cmp(ls(e), rs(e)) < 0 }
	case "<=":
		return func(e *event.Event) bool { return cmp(ls(e), rs(e)) <= 0 }
	case ">":
		return func(e *event.Event) bool { return cmp(ls(e), rs(e)) > 0 }
	case ">=":
		return func(e *event.Event) bool { return cmp(ls(e), rs(e)) >= 0 }
	}
	return nil
}

// arithmetic implements + - * (int when both are int, else float64), /
// (always float64, so x/0 is ±Inf or NaN), % (ints only; a zero divisor is
// a run-time error) and ** ^ (math.Pow). String + is folded when both
// operands are constants and otherwise left to the VM (it allocates).
func arithmetic(op string, l, r value) (value, bool) {
	switch {
	case op == "+" && l.k == kString && r.k == kString && l.konst && r.konst:
		return constString(foldString(l.s(nil), l.fold) + foldString(r.s(nil), r.fold)), true
	case !isNumber(l) || !isNumber(r):
		return value{}, false
	}
	v := value{}
	switch op {
	case "+", "-", "*":
		if l.k == kInt && r.k == kInt {
			v = value{k: kInt, i: arith(op, l.i, r.i)}
		} else {
			v = value{k: kFloat, f: arith(op, asFloat(l), asFloat(r))}
		}
	case "/":
		lf, rf := asFloat(l), asFloat(r)
		v = value{k: kFloat, f: func(e *event.Event) float64 { return lf(e) / rf(e) }}
	case "**", "^":
		lf, rf := asFloat(l), asFloat(r)
		v = value{k: kFloat, f: func(e *event.Event) float64 { return math.Pow(lf(e), rf(e)) }}
	case "%":
		if l.k != kInt || r.k != kInt {
			return value{}, false
		}
		li, ri := l.i, r.i
		if r.konst && r.i(nil) != 0 {
			d := r.i(nil)
			v = value{k: kInt, i: func(e *event.Event) int64 { return li(e) % d }}
		} else {
			v = value{k: kInt, panics: true, i: func(e *event.Event) int64 {
				d := ri(e)
				if d == 0 {
					panic(errIntegerDivideByZero)
				}
				return li(e) % d
			}}
		}
	default:
		return value{}, false
	}
	return finish(v, l, r), true
}

func arith[T int64 | float64](op string, l, r func(*event.Event) T) func(*event.Event) T {
	switch op {
	case "+":
		return func(e *event.Event) T { return l(e) + r(e) }
	case "-":
		return func(e *event.Event) T { return l(e) - r(e) }
	default: // "*"
		return func(e *event.Event) T { return l(e) * r(e) }
	}
}

// stringTest implements contains, startsWith and endsWith.
func stringTest(op string, l, r value) (value, bool) {
	if l.k != kString || r.k != kString {
		return value{}, false
	}
	ft, plain := testContains, strings.Contains
	switch op {
	case "startsWith":
		ft, plain = testHasPrefix, strings.HasPrefix
	case "endsWith":
		ft, plain = testHasSuffix, strings.HasSuffix
	}
	ls, rs := l.s, r.s
	var b boolFn
	switch {
	case l.fold != nil || r.fold != nil:
		test := ft.bind(l.fold, r.fold)
		b = func(e *event.Event) bool { return test(ls(e), rs(e)) }
	case r.konst:
		// Direct calls, which the compiler can inline, for the usual case
		// of a literal on the right.
		c := r.s(nil)
		switch op {
		case "contains":
			b = func(e *event.Event) bool { return strings.Contains(ls(e), c) }
		case "startsWith":
			b = func(e *event.Event) bool { return strings.HasPrefix(ls(e), c) }
		default:
			b = func(e *event.Event) bool { return strings.HasSuffix(ls(e), c) }
		}
	default:
		b = func(e *event.Event) bool { return plain(ls(e), rs(e)) }
	}
	return finish(value{k: kBool, b: b}, l, r), true
}

// matches needs a constant pattern, compiled here once; expr compiles a
// non-literal pattern per evaluation, which the VM does for us.
func matches(l, r value) (value, bool) {
	if l.k != kString || l.fold != nil || r.k != kString || !r.konst {
		return value{}, false
	}
	re, err := regexp.Compile(foldString(r.s(nil), r.fold))
	if err != nil {
		return value{}, false // a run-time error in expr
	}
	ls := l.s
	return finish(value{k: kBool, b: func(e *event.Event) bool { return re.MatchString(ls(e)) }}, l, r), true
}

// coalesce implements `a ?? b`: b when a is nil. Only the literal nil is
// ever nil here, so the choice is made now; b of a non-nil a is never
// evaluated and need not be supported.
func (c *compiler) coalesce(n *ast.BinaryNode) (value, bool) {
	l, ok := c.compile(n.Left)
	if !ok {
		return value{}, false
	}
	if l.k != kNil {
		return l, true
	}
	return c.compile(n.Right)
}

// conditional implements `cond ? a : b` when both branches have the same
// type (otherwise expr types the result as interface and we leave it to the
// VM).
func (c *compiler) conditional(n *ast.ConditionalNode) (value, bool) {
	cond, ok := c.compile(n.Cond)
	if !ok || cond.k != kBool {
		return value{}, false
	}
	a, ok := c.compile(n.Exp1)
	if !ok {
		return value{}, false
	}
	b, ok := c.compile(n.Exp2)
	if !ok || a.k != b.k || a.fold != nil || b.fold != nil {
		return value{}, false
	}
	cb := cond.b
	var v value
	switch a.k {
	case kBool:
		x, y := a.b, b.b
		v = value{k: kBool, b: func(e *event.Event) bool {
			if cb(e) {
				return x(e)
			}
			return y(e)
		}}
	case kInt:
		x, y := a.i, b.i
		v = value{k: kInt, i: func(e *event.Event) int64 {
			if cb(e) {
				return x(e)
			}
			return y(e)
		}}
	case kFloat:
		x, y := a.f, b.f
		v = value{k: kFloat, f: func(e *event.Event) float64 {
			if cb(e) {
				return x(e)
			}
			return y(e)
		}}
	case kString:
		x, y := a.s, b.s
		v = value{k: kString, s: func(e *event.Event) string {
			if cb(e) {
				return x(e)
			}
			return y(e)
		}}
	default:
		return value{}, false
	}
	return finish(v, cond, a, b), true
}

// builtin implements len, lower, upper, trim, trimPrefix and trimSuffix on
// strings. len counts runes, as expr's does.
func (c *compiler) builtin(n *ast.BuiltinNode) (value, bool) {
	args := make([]value, len(n.Arguments))
	for i, a := range n.Arguments {
		v, ok := c.compile(a)
		if !ok || v.k != kString {
			return value{}, false
		}
		args[i] = v
	}
	unfolded := func() bool {
		return !slices.ContainsFunc(args, func(v value) bool { return v.fold != nil })
	}
	var v value
	switch {
	case n.Name == "len" && len(args) == 1:
		// Mapping is rune for rune, so the fold does not change the count.
		s := args[0].s
		v = value{k: kInt, i: func(e *event.Event) int64 { return int64(utf8.RuneCountInString(s(e))) }}
	case (n.Name == "lower" || n.Name == "upper") && len(args) == 1:
		mapping := unicode.ToLower
		if n.Name == "upper" {
			mapping = unicode.ToUpper
		}
		v = value{k: kString, s: args[0].s, fold: compose(mapping, args[0].fold)}
	case n.Name == "trim" && len(args) == 1 && unfolded():
		s := args[0].s
		v = value{k: kString, s: func(e *event.Event) string { return strings.TrimSpace(s(e)) }}
	case n.Name == "trim" && len(args) == 2 && unfolded():
		s, cut := args[0].s, args[1].s
		v = value{k: kString, s: func(e *event.Event) string { return strings.Trim(s(e), cut(e)) }}
	case (n.Name == "trimPrefix" || n.Name == "trimSuffix") && (len(args) == 1 || len(args) == 2) && unfolded():
		s := args[0].s
		affix := constString(" ").s // expr's default
		if len(args) == 2 {
			affix = args[1].s
		}
		if n.Name == "trimPrefix" {
			v = value{k: kString, s: func(e *event.Event) string { return strings.TrimPrefix(s(e), affix(e)) }}
		} else {
			v = value{k: kString, s: func(e *event.Event) string { return strings.TrimSuffix(s(e), affix(e)) }}
		}
	default:
		return value{}, false
	}
	return finish(v, args...), true
}

// call implements cidr(); checkCIDRCalls has validated the literal.
func (c *compiler) call(n *ast.CallNode) (value, bool) {
	if !isCIDRCall(n) {
		return value{}, false
	}
	lit, ok := n.Arguments[1].(*ast.StringNode)
	if !ok {
		return value{}, false
	}
	prefix, err := parseCIDR(lit.Value)
	if err != nil {
		return value{}, false
	}
	ip, ok := c.compile(n.Arguments[0])
	if !ok || ip.k != kString || ip.fold != nil {
		return value{}, false
	}
	s := ip.s
	return finish(value{k: kBool, b: func(e *event.Event) bool { return cidrContains(prefix, s(e)) }}, ip), true
}

// in implements `x in [constants...]` and `x in lo..hi` with constant
// bounds, as runtime.In does: Equal of x with each element.
func (c *compiler) in(n *ast.BinaryNode) (value, bool) {
	needle, ok := c.compile(n.Left)
	if !ok {
		return value{}, false
	}
	var b boolFn
	switch r := n.Right.(type) {
	case *ast.ArrayNode:
		c.memory += uint64(len(r.Nodes))
		var set constSet
		for _, el := range r.Nodes {
			v, ok := c.compile(el)
			if !ok || !v.konst || v.panics {
				return value{}, false
			}
			set.add(v)
		}
		b = set.member(needle)
	case *ast.BinaryNode:
		if r.Operator != ".." || needle.k != kInt {
			return value{}, false
		}
		lo, ok1 := c.compile(r.Left)
		hi, ok2 := c.compile(r.Right)
		if !ok1 || !ok2 || lo.k != kInt || hi.k != kInt || !lo.konst || !hi.konst || lo.panics || hi.panics {
			return value{}, false
		}
		min, max := lo.i(nil), hi.i(nil)
		size := max - min + 1 // as vm.OpRange and runtime.MakeRange, wrapping included
		if size <= 0 {
			b = constBool(false).b
			break
		}
		c.memory += uint64(size)
		x := needle.i
		b = func(e *event.Event) bool { v := x(e); return v >= min && v <= max }
	}
	if b == nil {
		return value{}, false
	}
	if needle.panics {
		// Some tests above (an empty list or range) do not look at the
		// needle; expr evaluates it all the same, failing if it fails.
		eval, test := evaluator(needle), b
		b = func(e *event.Event) bool { eval(e); return test(e) }
	}
	return finish(value{k: kBool, b: b}, needle), true
}

// evaluator evaluates v for its run-time errors only.
func evaluator(v value) func(*event.Event) {
	switch v.k {
	case kBool:
		return func(e *event.Event) { v.b(e) }
	case kInt:
		return func(e *event.Event) { v.i(e) }
	case kFloat:
		return func(e *event.Event) { v.f(e) }
	case kString:
		return func(e *event.Event) { v.s(e) }
	}
	return func(*event.Event) {}
}

// constSet holds the elements of an array literal by type.
type constSet struct {
	ints   []int64
	floats []float64
	strs   []string
	bools  []bool
	hasNil bool
}

func (s *constSet) add(v value) {
	switch v.k {
	case kInt:
		s.ints = append(s.ints, v.i(nil))
	case kFloat:
		s.floats = append(s.floats, v.f(nil))
	case kString:
		s.strs = append(s.strs, foldString(v.s(nil), v.fold))
	case kBool:
		s.bools = append(s.bools, v.b(nil))
	case kNil:
		s.hasNil = true
	}
}

// member returns the membership test of needle. Numbers compare across int
// and float as in runtime.Equal; other types only with their own.
func (s *constSet) member(needle value) boolFn {
	switch needle.k {
	case kNil:
		return constBool(s.hasNil).b
	case kBool:
		t, f := slices.Contains(s.bools, true), slices.Contains(s.bools, false)
		x := needle.b
		return func(e *event.Event) bool {
			if x(e) {
				return t
			}
			return f
		}
	case kString:
		x := needle.s
		if needle.fold != nil {
			eq, strs := testEqual.bind(needle.fold, nil), s.strs
			return func(e *event.Event) bool {
				v := x(e)
				for _, c := range strs {
					if eq(v, c) {
						return true
					}
				}
				return false
			}
		}
		return memberOf(x, s.strs)
	case kFloat:
		all := slices.Clone(s.floats)
		for _, i := range s.ints {
			all = append(all, float64(i))
		}
		return memberOf(needle.f, all)
	case kInt:
		x := needle.i
		if len(s.floats) == 0 {
			return memberOf(x, s.ints)
		}
		ints, floats := memberOf(x, s.ints), s.floats
		return func(e *event.Event) bool {
			if ints(e) {
				return true
			}
			v := float64(x(e))
			for _, f := range floats {
				if v == f {
					return true
				}
			}
			return false
		}
	}
	return nil
}

// memberOf tests x(e) against a few values by scanning them and against
// many through a map (NaN is in neither, -0 equals 0 in both, as with ==).
func memberOf[T int64 | float64 | string](x func(*event.Event) T, elems []T) boolFn {
	switch len(elems) {
	case 0:
		return constBool(false).b
	case 1:
		a := elems[0]
		return func(e *event.Event) bool { return x(e) == a }
	case 2:
		a, b := elems[0], elems[1]
		return func(e *event.Event) bool { v := x(e); return v == a || v == b }
	}
	if len(elems) <= 8 {
		elems = slices.Clone(elems)
		return func(e *event.Event) bool {
			v := x(e)
			for _, c := range elems {
				if v == c {
					return true
				}
			}
			return false
		}
	}
	set := make(map[T]struct{}, len(elems))
	for _, c := range elems {
		set[c] = struct{}{}
	}
	return func(e *event.Event) bool { _, ok := set[x(e)]; return ok }
}
