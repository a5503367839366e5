// Package expression compiles the boolean expressions of rule files (`where`
// filters, sequence step filters, ratio(EXPR)) into predicates over decoded
// events.
//
// Expressions use the expr language (github.com/expr-lang/expr) over the
// field names of docs/events.md plus cidr(ip, "10.0.0.0/8"). They are
// type-checked by expr itself at rule-load time, so unknown fields, type
// errors and syntax errors never surface per event. The checked tree is then
// turned into typed Go closures over *event.Event that read fields through the
// schema getters and evaluate without allocating; what the closures do not
// cover (member access into `changes`, predicates such as all(), most
// builtins) runs on the expr VM instead, with expr's semantics and its
// allocations. Either way the answer is the one expr gives.
//
// The package sits below the rule loader and the detector: it must not import
// rules or detector, and knows nothing of windows, groups or alerts.
package expression

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"github.com/vigil-sec/vigil/event"
)

// Predicate is a compiled boolean expression for one source. It is safe for
// concurrent use.
type Predicate struct {
	source  event.Source
	program *vm.Program
	// native is the closure form; nil when the expression runs on the VM.
	native func(*event.Event) bool
	// guarded: native can raise a run-time error (integer modulo by zero),
	// which, as on the VM, makes the result false.
	guarded bool
	// withChanges: the VM environment needs `changes` decoded.
	withChanges bool
	fields      []string
}

// Error is a compile problem. Line and Column are 1-based and point into the
// expression's source; Column counts runes. The caller adds the position of
// the expression inside its file.
type Error struct {
	Line, Column int
	Message      string
}

func (e *Error) Error() string { return e.Message }

// Compile parses and type-checks src against the fields of source and
// prepares it for evaluation. The expression must be boolean. Every problem
// is reported as an *Error.
func Compile(src string, source event.Source) (p *Predicate, err error) {
	if source != event.Requests && source != event.Audit {
		return nil, &Error{Line: 1, Column: 1, Message: fmt.Sprintf("unknown event source %v", source)}
	}
	if strings.TrimSpace(src) == "" {
		return nil, &Error{Line: 1, Column: 1, Message: "empty expression"}
	}
	defer func() {
		// expr is not supposed to panic on any input; if it does, the rule
		// fails to load instead of taking the process down.
		if r := recover(); r != nil {
			p, err = nil, &Error{Line: 1, Column: 1, Message: fmt.Sprintf("cannot compile expression: %v", r)}
		}
	}()

	program, err := expr.Compile(src, exprOptions(source)...)
	if err != nil {
		return nil, compileError(src, source, err)
	}
	root := program.Node()
	if err := checkCIDRCalls(src, root); err != nil {
		return nil, err
	}
	if err := checkNilComparisons(src, root, source); err != nil {
		return nil, err
	}
	p = &Predicate{source: source, program: program}
	p.fields, p.withChanges = readFields(root, source)
	p.native, p.guarded = compileNative(root, source)
	return p, nil
}

// Match evaluates the predicate on e. A run-time error (possible only where
// expr's own evaluation would fail, e.g. `bytes_in % 0`) makes it false.
func (p *Predicate) Match(e *event.Event) bool {
	if p.native != nil {
		if p.guarded {
			return p.matchGuarded(e)
		}
		return p.native(e)
	}
	out, err := p.runVM(e)
	if err != nil {
		return false
	}
	b, _ := out.(bool)
	return b
}

func (p *Predicate) matchGuarded(e *event.Event) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if r != errIntegerDivideByZero {
				panic(r)
			}
			ok = false
		}
	}()
	return p.native(e)
}

// vms holds VMs for the fallback path: a vm.VM keeps per-run state and is
// not safe for concurrent use.
var vms = sync.Pool{New: func() any { return new(vm.VM) }}

func (p *Predicate) runVM(e *event.Event) (any, error) {
	env := envFor(e, p.source, p.withChanges)
	m := vms.Get().(*vm.VM)
	out, err := m.Run(p.program, env)
	vms.Put(m)
	return out, err
}

// Compiled reports whether the predicate runs as native closures (true) or
// falls back to the expr VM (false).
func (p *Predicate) Compiled() bool { return p.native != nil }

// Fields returns the names of the event fields the expression reads, sorted
// and without duplicates.
func (p *Predicate) Fields() []string { return slices.Clone(p.fields) }

// compileError turns expr's error into an *Error with a 1-based position.
func compileError(src string, source event.Source, err error) *Error {
	var fe *file.Error
	if errors.As(err, &fe) {
		line, col := fe.Line, fe.Column+1 // expr's Column is 0-based
		if line == 0 {                    // not bound to the source
			line, col = position(src, fe.From)
		}
		return &Error{Line: line, Column: col, Message: rewriteMessage(src, source, fe)}
	}
	msg := err.Error()
	if got, ok := strings.CutPrefix(msg, "expected bool, but got "); ok {
		// The checker gives no position for the type of the whole
		// expression; point at its first character.
		line, col := position(src, len([]rune(src))-len([]rune(strings.TrimLeftFunc(src, unicode.IsSpace))))
		msg := "expression must be boolean, not " + got
		if got == "unknown" { // the literal nil
			msg = "expression must be boolean"
		}
		return &Error{Line: line, Column: col, Message: msg}
	}
	return &Error{Line: 1, Column: 1, Message: msg}
}

// rewriteMessage makes expr's "unknown name" speak of fields and functions.
func rewriteMessage(src string, source event.Source, fe *file.Error) string {
	name, ok := strings.CutPrefix(fe.Message, "unknown name ")
	if !ok {
		return fe.Message
	}
	rs := []rune(src)
	if fe.To >= 0 && fe.To <= len(rs) && strings.HasPrefix(strings.TrimLeftFunc(string(rs[fe.To:]), unicode.IsSpace), "(") {
		return fmt.Sprintf("unknown function %s", name)
	}
	msg := fmt.Sprintf("unknown field %s for source %s", name, source)
	if s := suggest(name, source); s != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", s)
	}
	return msg
}

// suggest returns the field of source closest to name, if it is close.
func suggest(name string, source event.Source) string {
	best, bestD := "", 3
	for _, f := range event.Fields(source) {
		if d := editDistance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// position converts a rune offset into src to a 1-based line and column
// (in runes), the way file.Error.Bind counts.
func position(src string, offset int) (line, col int) {
	line, col = 1, 1
	n := 0
	for _, r := range src {
		if n == offset {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		n++
	}
	return line, col
}

// checkCIDRCalls requires cidr()'s second argument to be a string literal
// holding a valid prefix, so that it is parsed once, here.
func checkCIDRCalls(src string, root ast.Node) *Error {
	var err *Error
	walk(root, func(n ast.Node) {
		call, ok := n.(*ast.CallNode)
		if !ok || err != nil || !isCIDRCall(call) {
			return
		}
		arg := call.Arguments[1]
		lit, ok := arg.(*ast.StringNode)
		if !ok {
			line, col := position(src, leftmost(arg))
			err = &Error{Line: line, Column: col,
				Message: `cidr: the prefix must be a string literal, like cidr(ip, "10.0.0.0/8")`}
			return
		}
		if _, perr := parseCIDR(lit.Value); perr != nil {
			line, col := position(src, leftmost(arg))
			err = &Error{Line: line, Column: col,
				Message: fmt.Sprintf(`cidr: %q is not a CIDR prefix like "10.0.0.0/8" or "2001:db8::/32"`, lit.Value)}
		}
	})
	return err
}

// checkNilComparisons rejects `field == nil` and `field != nil` on a record
// field: a field is never nil (an absent one is "" or 0), so the comparison
// would be constant — a rule that silently never (or always) matches.
func checkNilComparisons(src string, root ast.Node, source event.Source) *Error {
	var err *Error
	walk(root, func(n ast.Node) {
		b, ok := n.(*ast.BinaryNode)
		if !ok || err != nil || (b.Operator != "==" && b.Operator != "!=") {
			return
		}
		other := b.Left
		if _, isNil := b.Left.(*ast.NilNode); isNil {
			other = b.Right
		} else if _, isNil := b.Right.(*ast.NilNode); !isNil {
			return
		}
		id, ok := other.(*ast.IdentifierNode)
		if !ok {
			return
		}
		f, ok := event.Lookup(source, id.Value)
		if !ok || (f.Kind != event.String && f.Kind != event.Int && f.Kind != event.Float) {
			return // changes may be absent: nil means something there
		}
		zero := `""`
		if f.Kind != event.String {
			zero = "0"
		}
		line, col := position(src, leftmost(b))
		err = &Error{Line: line, Column: col, Message: fmt.Sprintf("%s is never nil: an absent %s is %s, so compare with %s %s %s",
			id.Value, id.Value, zero, id.Value, b.Operator, zero)}
	})
	return err
}

func isCIDRCall(call *ast.CallNode) bool {
	id, ok := call.Callee.(*ast.IdentifierNode)
	return ok && id.Value == "cidr" && len(call.Arguments) == 2
}

// leftmost returns the smallest source offset in n's subtree: expr places a
// binary node at its operator, not at its first operand.
func leftmost(n ast.Node) int {
	from := n.Location().From
	walk(n, func(c ast.Node) {
		if f := c.Location().From; f < from {
			from = f
		}
	})
	return from
}

// readFields lists the schema fields the expression reads and whether the
// VM environment needs `changes` (also when the whole $env is used).
func readFields(root ast.Node, source event.Source) (fields []string, withChanges bool) {
	var visit func(n ast.Node, bound []string)
	add := func(name string) {
		if _, ok := event.Lookup(source, name); ok {
			fields = append(fields, name)
			if name == "changes" {
				withChanges = true
			}
		}
	}
	visit = func(n ast.Node, bound []string) {
		switch n := n.(type) {
		case nil:
			return
		case *ast.IdentifierNode:
			if n.Value == "$env" {
				withChanges = true
			} else if !slices.Contains(bound, n.Value) {
				add(n.Value)
			}
			return
		case *ast.MemberNode:
			if id, ok := n.Node.(*ast.IdentifierNode); ok && id.Value == "$env" {
				if prop, ok := n.Property.(*ast.StringNode); ok {
					add(prop.Value)
					return
				}
			}
		case *ast.VariableDeclaratorNode:
			visit(n.Value, bound)
			visit(n.Expr, append(slices.Clip(bound), n.Name))
			return
		}
		for _, c := range children(n) {
			visit(c, bound)
		}
	}
	visit(root, nil)
	slices.Sort(fields)
	return slices.Compact(fields), withChanges
}

// walk calls fn on n and every node below it.
func walk(n ast.Node, fn func(ast.Node)) {
	if n == nil {
		return
	}
	fn(n)
	for _, c := range children(n) {
		walk(c, fn)
	}
}

func children(n ast.Node) []ast.Node {
	var cs []ast.Node
	switch n := n.(type) {
	case *ast.UnaryNode:
		cs = []ast.Node{n.Node}
	case *ast.BinaryNode:
		cs = []ast.Node{n.Left, n.Right}
	case *ast.ChainNode:
		cs = []ast.Node{n.Node}
	case *ast.MemberNode:
		cs = []ast.Node{n.Node, n.Property}
	case *ast.SliceNode:
		cs = []ast.Node{n.Node, n.From, n.To}
	case *ast.CallNode:
		cs = append([]ast.Node{n.Callee}, n.Arguments...)
	case *ast.BuiltinNode:
		cs = append(slices.Clone(n.Arguments), n.Map)
	case *ast.PredicateNode:
		cs = []ast.Node{n.Node}
	case *ast.ConditionalNode:
		cs = []ast.Node{n.Cond, n.Exp1, n.Exp2}
	case *ast.VariableDeclaratorNode:
		cs = []ast.Node{n.Value, n.Expr}
	case *ast.SequenceNode:
		cs = slices.Clone(n.Nodes)
	case *ast.ArrayNode:
		cs = slices.Clone(n.Nodes)
	case *ast.MapNode:
		cs = slices.Clone(n.Pairs)
	case *ast.PairNode:
		cs = []ast.Node{n.Key, n.Value}
	}
	return slices.DeleteFunc(cs, func(c ast.Node) bool { return c == nil })
}
