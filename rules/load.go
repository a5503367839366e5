package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/internal/yamlpos"
	"github.com/vigil-sec/vigil/rules/expression"
)

// Set is a loaded, validated rule set in file order.
type Set struct {
	Rules []*Rule
	Files []string
}

// ByID returns the rule with that id.
func (s *Set) ByID(id string) *Rule {
	for _, r := range s.Rules {
		if r.ID == id {
			return r
		}
	}
	return nil
}

// LoadFiles loads rule files and directories (every *.yaml and *.yml file
// directly inside; subdirectories such as tests/ are not rule files). On any
// problem it returns an ErrorList holding all of them and no set.
func LoadFiles(paths ...string) (*Set, error) {
	files, err := yamlpos.ExpandPaths("rule", paths, false)
	if err != nil {
		return nil, err
	}
	set := &Set{Files: files}
	var errs ErrorList
	seen := map[string]*Rule{}
	revs := map[string]string{} // directory → git revision
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, &Error{File: f, Msg: fmt.Sprintf("cannot read rule file: %v", err)})
			continue
		}
		rs, ferrs := Parse(f, data)
		errs = append(errs, ferrs...)
		dir := filepath.Dir(f)
		rev, ok := revs[dir]
		if !ok {
			rev = gitRevision(dir)
			revs[dir] = rev
		}
		for _, r := range rs {
			r.GitRevision = rev
			if first, dup := seen[r.ID]; dup {
				errs = append(errs, &Error{File: r.File, Line: r.Line, Column: r.idCol,
					Msg: fmt.Sprintf("duplicate rule id %q (first defined at %s:%d)", r.ID, first.File, first.Line)})
				continue
			}
			seen[r.ID] = r
			set.Rules = append(set.Rules, r)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return set, nil
}

var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// Parse parses one rule file's content; name is used in error positions.
// It returns the rules that are valid and every problem found.
func Parse(name string, data []byte) ([]*Rule, ErrorList) {
	p := &parser{file: name, data: data}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		p.errs = append(p.errs, yamlError(name, err))
		return nil, p.errs
	}
	if len(doc.Content) == 0 {
		return nil, nil // an empty file holds no rules
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "a rule file is a mapping with a `rules:` list")
		return nil, p.errs
	}
	var out []*Rule
	// Besides rules, a file may hold x-… keys: places for YAML anchors
	// that rules merge with <<: *name.
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode && k.Value != "rules" && k.ShortTag() != "!!merge" && !strings.HasPrefix(k.Value, "x-") {
			p.errorf(k, "unknown key %q (allowed here: rules, and x-… keys to hold YAML anchors)", k.Value)
		}
	}
	list := p.mapping(root, nil)
	rulesNode, ok := list["rules"]
	if !ok {
		p.errorf(root, "missing `rules:` list")
		return nil, p.errs
	}
	if rulesNode.Value.Kind != yaml.SequenceNode {
		p.errorf(rulesNode.Value, "`rules` must be a list of rules")
		return nil, p.errs
	}
	fileSum := sha256.Sum256(data)
	fileHash := hex.EncodeToString(fileSum[:8])
	ids := map[string]int{}
	for _, rn := range rulesNode.Value.Content {
		before := len(p.errs)
		r := p.rule(rn)
		if r == nil {
			continue
		}
		if line, dup := ids[r.ID]; dup && r.ID != "" {
			p.errs = append(p.errs, &Error{File: name, Line: r.Line, Column: r.idCol,
				Msg: fmt.Sprintf("duplicate rule id %q (first defined at line %d)", r.ID, line)})
			continue
		}
		ids[r.ID] = r.Line
		r.FileHash = fileHash
		if len(p.errs) == before {
			out = append(out, r)
		}
	}
	p.errs.sort()
	return out, p.errs
}

func yamlError(file string, err error) *Error {
	line, msg := yamlpos.SyntaxError(err)
	return &Error{File: file, Line: line, Column: 1, Msg: "invalid YAML: " + msg}
}

type parser struct {
	file string
	data []byte // the file's raw content, to position errors inside scalars
	errs ErrorList
}

// exprError reports an expression's compile error at its position in the
// file. The expression is text, found at rune offset start of scalar n's
// value (0 for a where, further for the argument of ratio(...)). Errors
// that are not *expression.Error, or whose position cannot be mapped
// exactly (see yamlpos.ScalarPosition), are placed at the scalar's start.
func (p *parser) exprError(n *yaml.Node, start int, text, prefix string, err error) {
	line, col := n.Line, n.Column
	msg := err.Error()
	var ee *expression.Error
	if errors.As(err, &ee) {
		msg = ee.Message
		off := start + yamlpos.TextOffset(text, ee.Line, ee.Column)
		line, col = yamlpos.ScalarPosition(p.data, n, off)
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Column: col, Msg: prefix + msg})
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

type entry = yamlpos.Entry

// mapping returns a mapping's entries by key, reporting unknown and
// duplicate keys. allowed == nil accepts any key.
func (p *parser) mapping(n *yaml.Node, allowed map[string]bool) map[string]entry {
	return yamlpos.Mapping(n, allowed, func(n *yaml.Node, msg string) { p.errorf(n, "%s", msg) })
}

func (p *parser) scalar(e entry, what string) (string, bool) {
	if e.Value.Kind != yaml.ScalarNode || e.Value.Tag == "!!null" {
		p.errorf(e.Value, "%s must be %s", e.Key.Value, what)
		return "", false
	}
	return e.Value.Value, true
}

func (p *parser) str(m map[string]entry, key string) (string, bool) {
	e, ok := m[key]
	if !ok {
		return "", false
	}
	if e.Value.Kind != yaml.ScalarNode || e.Value.Tag == "!!null" {
		p.errorf(e.Value, "%s must be a string", key)
		return "", false
	}
	return e.Value.Value, true
}

func (p *parser) duration(m map[string]entry, key string, required bool, owner *yaml.Node) (time.Duration, bool) {
	e, ok := m[key]
	if !ok {
		if required {
			p.errorf(owner, "missing required key %q (a duration such as 1m, 1h or 7d)", key)
		}
		return 0, false
	}
	s, ok := p.scalar(e, "a duration such as 90s, 5m, 1h30m or 7d")
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil {
		p.errorf(e.Value, "%s: %v", key, err)
		return 0, false
	}
	if d <= 0 {
		p.errorf(e.Value, "%s must be positive", key)
		return 0, false
	}
	return d, true
}

func (p *parser) number(m map[string]entry, key string) (float64, bool) {
	e, ok := m[key]
	if !ok {
		return 0, false
	}
	s, ok := p.scalar(e, "a number")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		p.errorf(e.Value, "%s must be a number, got %q", key, s)
		return 0, false
	}
	return v, true
}

func (p *parser) boolean(m map[string]entry, key string, def bool) bool {
	e, ok := m[key]
	if !ok {
		return def
	}
	var b bool
	if e.Value.Kind != yaml.ScalarNode || e.Value.Decode(&b) != nil {
		p.errorf(e.Value, "%s must be true or false", key)
		return def
	}
	return b
}

// fieldList reads a list of event field names (a single name is accepted too).
func (p *parser) fieldList(e entry, src event.Source) []*event.Field {
	var nodes []*yaml.Node
	switch e.Value.Kind {
	case yaml.ScalarNode:
		nodes = []*yaml.Node{e.Value}
	case yaml.SequenceNode:
		nodes = e.Value.Content
	default:
		p.errorf(e.Value, "%s must be a list of field names, e.g. [ip]", e.Key.Value)
		return nil
	}
	var out []*event.Field
	seen := map[string]bool{}
	for _, n := range nodes {
		f := p.field(n, src, e.Key.Value)
		if f == nil {
			continue
		}
		if seen[f.Name] {
			p.errorf(n, "%s lists %q twice", e.Key.Value, f.Name)
			continue
		}
		seen[f.Name] = true
		out = append(out, f)
	}
	return out
}

func (p *parser) field(n *yaml.Node, src event.Source, what string) *event.Field {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, "%s: expected a field name", what)
		return nil
	}
	f, ok := event.Lookup(src, n.Value)
	if !ok {
		p.errorf(n, "%s: unknown %s field %q (fields: %s)", what, src, n.Value, fieldNames(src))
		return nil
	}
	if f.Kind == event.Object {
		p.errorf(n, "%s: %q is a free-form object and cannot be used here; name it in a where expression instead", what, n.Value)
		return nil
	}
	return f
}

func fieldNames(src event.Source) string {
	var names []string
	for _, f := range event.Fields(src) {
		if f.Kind != event.Object {
			names = append(names, f.Name)
		}
	}
	return strings.Join(names, ", ")
}

// expr compiles an expression held in a YAML scalar and maps error
// positions inside the expression back to the file.
func (p *parser) expr(n *yaml.Node, src event.Source) *expression.Predicate {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.errorf(n, "expected an expression string, e.g. 'status >= 500'")
		return nil
	}
	pred, err := expression.Compile(n.Value, src)
	if err != nil {
		p.exprError(n, 0, n.Value, "expression: ", err)
		return nil
	}
	return pred
}

var (
	commonKeys = []string{"id", "description", "source", "where", "severity", "cooldown", "labels", "actions",
		"phi_escalation", "allow_admin_revoke", "dry_run", "mode"}
	kindKeys = map[Kind][]string{
		Threshold: {"group_by", "window", "aggregate", "threshold", "min_events"},
		Anomaly:   {"group_by", "window", "aggregate", "anomaly", "min_events"},
		NewValue:  {"new_value"},
		Dormant:   {"dormant"},
		Sequence:  {"sequence"},
	}
	kindMarkers = []struct {
		key  string
		kind Kind
	}{{"anomaly", Anomaly}, {"new_value", NewValue}, {"dormant", Dormant}, {"sequence", Sequence}}
)

func isKindMarker(key string) bool {
	for _, m := range kindMarkers {
		if m.key == key {
			return true
		}
	}
	return false
}

func keySet(lists ...[]string) map[string]bool {
	m := map[string]bool{}
	for _, l := range lists {
		for _, k := range l {
			m[k] = true
		}
	}
	return m
}

func (p *parser) rule(n *yaml.Node) *Rule {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "each rule must be a mapping with at least id and source")
		return nil
	}
	r := &Rule{File: p.file, Line: n.Line, PHIEscalation: true}
	// Find the rule's kind first so unknown keys are judged against it.
	r.Kind = Threshold
	var kindKey *yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		for _, m := range kindMarkers {
			if k.Value != m.key {
				continue
			}
			if kindKey != nil {
				p.errorf(k, "a rule has one kind: %q conflicts with %q on line %d", k.Value, kindKey.Value, kindKey.Line)
				continue
			}
			kindKey, r.Kind = k, m.kind
		}
	}
	allowed := keySet(commonKeys, kindKeys[r.Kind])
	// Keys of other kinds get a message saying so rather than "unknown key";
	// mapping() then accepts them and they are ignored.
	other := keySet(kindKeys[Threshold], kindKeys[Anomaly], kindKeys[NewValue], kindKeys[Dormant], kindKeys[Sequence])
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if allowed[k.Value] || !other[k.Value] {
			continue
		}
		if k != kindKey && !isKindMarker(k.Value) {
			p.errorf(k, "%q does not apply to %s rules", k.Value, r.Kind)
		}
		allowed[k.Value] = true
	}
	m := p.mapping(n, allowed)

	if e, ok := m["id"]; ok {
		r.idCol = e.Value.Column
		r.Line = e.Value.Line
		if s, ok := p.scalar(e, "a string"); ok {
			if !idPattern.MatchString(s) {
				p.errorf(e.Value, "invalid rule id %q: use lower-case letters, digits and dashes, starting with a letter or digit", s)
			}
			r.ID = s
		}
	} else {
		p.errorf(n, "missing required key \"id\"")
	}
	r.Description, _ = p.str(m, "description")

	if e, ok := m["source"]; ok {
		if s, ok := p.scalar(e, "requests or audit"); ok {
			src, ok := event.ParseSource(s)
			if !ok {
				p.errorf(e.Value, "unknown source %q: use requests or audit", s)
			}
			r.Source = src
		}
	} else {
		p.errorf(n, "missing required key \"source\" (requests or audit)")
	}
	if r.Source == 0 {
		return r // nothing that reads fields can be checked without a source
	}

	if e, ok := m["where"]; ok {
		r.WhereText = e.Value.Value
		r.Where = p.expr(e.Value, r.Source)
	}

	r.Severity = Medium
	if e, ok := m["severity"]; ok {
		if s, ok := p.scalar(e, "critical, high, medium, low or 1-4"); ok {
			sev, ok := ParseSeverity(s)
			if !ok {
				p.errorf(e.Value, "unknown severity %q: use critical, high, medium, low or 1-4", s)
			}
			r.Severity = sev
		}
	}
	r.PHIEscalation = p.boolean(m, "phi_escalation", true)
	r.AllowAdminRevoke = p.boolean(m, "allow_admin_revoke", false)
	r.DryRun = p.boolean(m, "dry_run", false)
	if e, ok := m["mode"]; ok {
		if s, ok := p.scalar(e, "enforce or shadow"); ok {
			switch s {
			case "enforce":
			case "shadow":
				r.Shadow = true
			default:
				p.errorf(e.Value, "unknown mode %q: use enforce or shadow", s)
			}
		}
	}
	p.labels(m, r)
	p.actions(m, r)

	switch r.Kind {
	case Threshold, Anomaly:
		p.windowed(n, m, r)
	case NewValue:
		p.newValue(m["new_value"], r)
	case Dormant:
		p.dormant(m["dormant"], r)
	case Sequence:
		p.sequence(m["sequence"], r)
	}

	if e, ok := m["cooldown"]; ok && e.Value.Kind == yaml.ScalarNode && isZeroDuration(e.Value.Value) {
		r.Cooldown = 0 // fire on every qualifying event
	} else if cooldown, ok := p.duration(m, "cooldown", false, n); ok {
		r.Cooldown = cooldown
	} else if _, given := m["cooldown"]; !given {
		switch r.Kind {
		case Threshold, Anomaly:
			r.Cooldown = r.Window
		case Sequence:
			if r.Sequence != nil {
				r.Cooldown = r.Sequence.Within
			}
		}
	}

	if out, err := yaml.Marshal(n); err == nil {
		sum := sha256.Sum256(append([]byte(r.Source.String()+"\n"), out...))
		r.Hash = hex.EncodeToString(sum[:8])
	}
	return r
}

func (p *parser) labels(m map[string]entry, r *Rule) {
	e, ok := m["labels"]
	if !ok {
		return
	}
	if e.Value.Kind != yaml.MappingNode {
		p.errorf(e.Value, "labels must be a mapping of names to values, e.g. {team: edge}")
		return
	}
	r.Labels = map[string]string{}
	for k, le := range p.mapping(e.Value, nil) {
		if le.Value.Kind != yaml.ScalarNode {
			p.errorf(le.Value, "label %q must have a plain value", k)
			continue
		}
		r.Labels[k] = le.Value.Value
	}
}

func (p *parser) actions(m map[string]entry, r *Rule) {
	e, ok := m["actions"]
	if !ok {
		return
	}
	if e.Value.Kind != yaml.SequenceNode {
		p.errorf(e.Value, "actions must be a list, e.g. [open_incident, block_ip]; [] means record only")
		return
	}
	r.Actions = []string{}
	seen := map[string]bool{}
	for _, a := range e.Value.Content {
		if a.Kind != yaml.ScalarNode || !knownActions[a.Value] {
			p.errorf(a, "unknown action %q: use open_incident, revoke_key, block_ip, watch or isolate_namespace", a.Value)
			continue
		}
		if seen[a.Value] {
			p.errorf(a, "action %q listed twice", a.Value)
			continue
		}
		seen[a.Value] = true
		r.Actions = append(r.Actions, a.Value)
	}
}

var aggPattern = regexp.MustCompile(`^\s*(count|sum|distinct|ratio)\s*(?:\((.*)\))?\s*$`)

func (p *parser) windowed(n *yaml.Node, m map[string]entry, r *Rule) {
	if e, ok := m["group_by"]; ok {
		r.GroupBy = p.fieldList(e, r.Source)
	}
	if w, ok := p.duration(m, "window", true, n); ok {
		r.Window = w
	}
	r.Aggregate = Aggregate{Op: Count, Text: "count"}
	if e, ok := m["aggregate"]; ok {
		if s, ok := p.scalar(e, "count, sum(FIELD), distinct(FIELD) or ratio(EXPR)"); ok {
			p.aggregate(e.Value, s, r)
		}
	}
	if v, ok := p.number(m, "min_events"); ok {
		if v < 0 || v != math.Trunc(v) {
			p.errorf(m["min_events"].Value, "min_events must be a whole number ≥ 0")
		}
		r.MinEvents = int(v)
	}
	if r.Kind == Threshold {
		e, ok := m["threshold"]
		if !ok {
			p.errorf(n, "missing required key \"threshold\" (e.g. '> 50')")
			return
		}
		if s, ok := p.scalar(e, "a comparison such as '> 50'"); ok {
			c, err := ParseCondition(s)
			if err != nil {
				p.errorf(e.Value, "threshold: %v", err)
			}
			r.Threshold = c
		}
		return
	}
	e := m["anomaly"]
	if e.Value.Kind != yaml.MappingNode {
		p.errorf(e.Value, "anomaly must be a mapping, e.g. {baseline: 1h, z: 6, min: 200}")
		return
	}
	am := p.mapping(e.Value, map[string]bool{"baseline": true, "z": true, "min": true})
	spec := &AnomalySpec{Z: 3}
	if b, ok := p.duration(am, "baseline", true, e.Value); ok {
		spec.Baseline = b
		if r.Window > 0 && b < 2*r.Window {
			p.errorf(am["baseline"].Value, "baseline (%s) must cover at least two windows (%s each)", b, r.Window)
		}
	}
	if z, ok := p.number(am, "z"); ok {
		if z <= 0 {
			p.errorf(am["z"].Value, "z must be positive")
		}
		spec.Z = z
	}
	if v, ok := p.number(am, "min"); ok {
		if v < 0 {
			p.errorf(am["min"].Value, "min must be ≥ 0")
		}
		spec.Min = v
	}
	r.Anomaly = spec
	r.Threshold = Condition{Op: GE, Value: spec.Min, Text: ">= " + strconv.FormatFloat(spec.Min, 'f', -1, 64)}
}

func (p *parser) aggregate(n *yaml.Node, s string, r *Rule) {
	mm := aggPattern.FindStringSubmatch(s)
	if mm == nil {
		p.errorf(n, "unknown aggregate %q: use count, sum(FIELD), distinct(FIELD) or ratio(EXPR)", s)
		return
	}
	op, arg := mm[1], strings.TrimSpace(mm[2])
	hasParens := strings.Contains(s, "(")
	r.Aggregate.Text = strings.TrimSpace(s)
	switch op {
	case "count":
		if hasParens {
			p.errorf(n, "count takes no argument; filter events with where instead")
		}
		r.Aggregate.Op = Count
	case "sum", "distinct":
		if arg == "" {
			p.errorf(n, "%s needs a field, e.g. %s(bytes_out)", op, op)
			return
		}
		f, ok := event.Lookup(r.Source, arg)
		if !ok || f.Kind == event.Object {
			p.errorf(n, "%s: unknown %s field %q (fields: %s)", op, r.Source, arg, fieldNames(r.Source))
			return
		}
		if op == "sum" {
			if !f.Numeric() {
				p.errorf(n, "sum needs a numeric field; %q is a %s", arg, f.Kind)
				return
			}
			r.Aggregate.Op = Sum
		} else {
			r.Aggregate.Op = Distinct
		}
		r.Aggregate.Field = f
	case "ratio":
		if arg == "" {
			p.errorf(n, "ratio needs an expression, e.g. ratio(status >= 500)")
			return
		}
		pred, err := expression.Compile(arg, r.Source)
		if err != nil {
			// arg is mm[2] without its leading and trailing blanks.
			at := aggPattern.FindStringSubmatchIndex(s)[4]
			at += len(mm[2]) - len(strings.TrimLeftFunc(mm[2], unicode.IsSpace))
			p.exprError(n, utf8.RuneCountInString(s[:at]), arg, "ratio expression: ", err)
			return
		}
		r.Aggregate.Op = Ratio
		r.Aggregate.Ratio = pred
	}
}

// ParseCondition parses "> 50", ">=5", "== 0.5" and the like.
func ParseCondition(s string) (Condition, error) {
	t := strings.TrimSpace(s)
	var c Condition
	var opText string
	for _, o := range []struct {
		text string
		op   CmpOp
	}{{">=", GE}, {"<=", LE}, {"==", EQ}, {">", GT}, {"<", LT}} {
		if strings.HasPrefix(t, o.text) {
			c.Op, opText = o.op, o.text
			break
		}
	}
	if c.Op == 0 {
		return c, fmt.Errorf("%q must start with one of > >= < <= == followed by a number, e.g. '> 50'", s)
	}
	num := strings.TrimSpace(t[len(opText):])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return c, fmt.Errorf("%q: %q is not a number", s, num)
	}
	c.Value = v
	c.Text = t // alerts echo the threshold as the rule wrote it
	return c, nil
}

func (p *parser) newValue(e entry, r *Rule) {
	if e.Value.Kind != yaml.MappingNode {
		p.errorf(e.Value, "new_value must be a mapping, e.g. {field: ip, per: [api_key_id], remember: 30d}")
		return
	}
	m := p.mapping(e.Value, map[string]bool{"field": true, "per": true, "remember": true, "learn": true})
	spec := &NewValueSpec{Remember: 30 * 24 * time.Hour}
	if f, ok := m["field"]; ok {
		spec.Field = p.field(f.Value, r.Source, "new_value.field")
	} else {
		p.errorf(e.Value, "new_value needs a field, e.g. field: ip")
	}
	if pe, ok := m["per"]; ok {
		spec.Per = p.fieldList(pe, r.Source)
		for _, f := range spec.Per {
			if spec.Field != nil && f.Name == spec.Field.Name {
				p.errorf(pe.Value, "new_value.per must not contain the field itself (%q)", f.Name)
			}
		}
	}
	if d, ok := p.duration(m, "remember", false, e.Value); ok {
		spec.Remember = d
	}
	if d, ok := p.duration(m, "learn", false, e.Value); ok {
		spec.Learn = d
	}
	if spec.Field != nil {
		r.NewValue = spec
	}
}

func (p *parser) dormant(e entry, r *Rule) {
	if e.Value.Kind != yaml.MappingNode {
		p.errorf(e.Value, "dormant must be a mapping, e.g. {field: api_key_id, idle: 90d}")
		return
	}
	m := p.mapping(e.Value, map[string]bool{"field": true, "idle": true})
	spec := &DormantSpec{}
	if f, ok := m["field"]; ok {
		spec.Field = p.field(f.Value, r.Source, "dormant.field")
	} else {
		p.errorf(e.Value, "dormant needs a field, e.g. field: api_key_id")
	}
	if d, ok := p.duration(m, "idle", true, e.Value); ok {
		spec.Idle = d
	}
	if spec.Field != nil {
		r.Dormant = spec
	}
}

func (p *parser) sequence(e entry, r *Rule) {
	if e.Value.Kind != yaml.MappingNode {
		p.errorf(e.Value, "sequence must be a mapping with by, within and steps")
		return
	}
	m := p.mapping(e.Value, map[string]bool{"by": true, "within": true, "steps": true})
	spec := &SequenceSpec{}
	if b, ok := m["by"]; ok {
		spec.By = p.fieldList(b, r.Source)
	}
	if d, ok := p.duration(m, "within", true, e.Value); ok {
		spec.Within = d
	}
	se, ok := m["steps"]
	if !ok || se.Value.Kind != yaml.SequenceNode || len(se.Value.Content) == 0 {
		n := e.Value
		if ok {
			n = se.Value
		}
		p.errorf(n, "sequence needs a non-empty list of steps, each with a where expression")
		return
	}
	for _, sn := range se.Value.Content {
		if sn.Kind != yaml.MappingNode {
			p.errorf(sn, "each step must be a mapping with where (and optionally threshold)")
			continue
		}
		sm := p.mapping(sn, map[string]bool{"where": true, "threshold": true})
		st := Step{Count: Condition{Op: GE, Value: 1, Text: ">= 1"}}
		if we, ok := sm["where"]; ok {
			st.WhereText = we.Value.Value
			st.Where = p.expr(we.Value, r.Source)
		} else {
			p.errorf(sn, "step needs a where expression")
		}
		if te, ok := sm["threshold"]; ok {
			if s, ok := p.scalar(te, "a comparison such as '>= 5'"); ok {
				c, err := ParseCondition(s)
				if err != nil {
					p.errorf(te.Value, "threshold: %v", err)
				} else if c.Op == LT || c.Op == LE || c.Value < 0 {
					p.errorf(te.Value, "a step threshold counts matching events upwards: use >, >= or == (e.g. '>= 5')")
				}
				st.Count = c
			}
		}
		spec.Steps = append(spec.Steps, st)
	}
	r.Sequence = spec
}

// isZeroDuration reports a duration that parses to zero ("0", "0s", "0m",
// "0h0m", "0d"): a cooldown may be zero where other durations may not.
func isZeroDuration(s string) bool {
	d, err := ParseDuration(s)
	return s == "0" || (err == nil && d == 0)
}
