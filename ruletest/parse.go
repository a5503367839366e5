package ruletest

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/internal/yamlpos"
	"github.com/vigil-sec/vigil/rules"
)

var (
	fileKeys     = keys("rule_files", "start", "namespaces", "defaults", "tests")
	testKeys     = keys("name", "defaults", "events", "expect")
	eventKeys    = keys("source", "at", "ts", "repeat", "every", "fields")
	expectKeys   = keys("rule", "group", "severity", "phi", "count", "at", "value")
	defaultsKeys = keys("requests", "audit")
)

func keys(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// Parse parses a test file's content; path names it in errors and is the
// base of relative rule_files. Parse checks that the rule paths exist but
// does not load them: File.Run does.
func Parse(path string, data []byte) (*File, error) {
	p := &parser{file: path}
	f := p.parse(data)
	if err := p.errs.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

type parser struct {
	file   string
	errs   rules.ErrorList
	events int // built so far in this file, bounded by MaxFileEvents
}

// MaxFileEvents bounds the events one test file may build (repeats and
// YAML aliases multiply quickly): a few hundred bytes must not cost
// gigabytes.
const MaxFileEvents = 200000

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &rules.Error{File: p.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) parse(data []byte) *File {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlpos.SyntaxError(err)
		p.errs = append(p.errs, &rules.Error{File: p.file, Line: line, Column: 1, Msg: "invalid YAML: " + msg})
		return nil
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		n := &doc
		if len(doc.Content) > 0 {
			n = doc.Content[0]
		}
		p.errs = append(p.errs, &rules.Error{File: p.file, Line: max(n.Line, 1), Column: max(n.Column, 1),
			Msg: "a test file is a mapping with rule_files and tests"})
		return nil
	}
	root := doc.Content[0]
	if looksLikeRuleFile(root) {
		p.errorf(root, "this is a rule file, not a test file: pass test files or their directory (docs/rule-tests.md)")
		return nil
	}
	m := p.mapping(root, fileKeys)
	f := &File{Path: p.file, Start: DefaultStart}

	if e, ok := m["rule_files"]; ok {
		f.RuleFiles = p.ruleFiles(e)
	} else {
		p.errorf(root, "missing required key \"rule_files\" (the rule files or directories under test)")
	}
	if e, ok := m["start"]; ok {
		if s, ok := p.scalar(e, "an RFC 3339 time such as 2026-11-22T18:00:00Z"); ok {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				p.errorf(e.Value, "start must be an RFC 3339 time such as 2026-11-22T18:00:00Z, got %q", s)
			} else {
				f.Start = t.UTC()
			}
		}
	}
	if e, ok := m["namespaces"]; ok {
		f.Namespaces = p.namespaces(e)
	}
	var fileDefaults defaults
	if e, ok := m["defaults"]; ok {
		fileDefaults = p.defaults(e)
	}

	e, ok := m["tests"]
	if !ok {
		p.errorf(root, "missing required key \"tests\" (a list of test cases)")
		return f
	}
	if e.Value.Kind != yaml.SequenceNode || len(e.Value.Content) == 0 {
		p.errorf(e.Value, "tests must be a non-empty list of test cases, each with name, events and expect")
		return f
	}
	names := map[string]int{}
	for i, tn := range e.Value.Content {
		t := p.test(tn, i+1, f.Start, fileDefaults)
		if t == nil {
			continue
		}
		if line, dup := names[t.Name]; dup && t.Name != "" {
			p.errorf(tn, "duplicate test name %q (first used on line %d)", t.Name, line)
		}
		names[t.Name] = t.Line
		f.Tests = append(f.Tests, t)
	}
	return f
}

// looksLikeRuleFile reports whether a mapping has a rule file's `rules`
// key and none of a test file's, the mistake of passing configs/rules.
func looksLikeRuleFile(root *yaml.Node) bool {
	hasRules := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i].Value
		if fileKeys[k] {
			return false
		}
		hasRules = hasRules || k == "rules"
	}
	return hasRules
}

type entry = yamlpos.Entry

// mapping returns a mapping's entries by key, reporting unknown and
// duplicate keys. allowed == nil accepts any key.
func (p *parser) mapping(n *yaml.Node, allowed map[string]bool) map[string]entry {
	return yamlpos.Mapping(n, allowed, func(n *yaml.Node, msg string) { p.errorf(n, "%s", msg) })
}

func (p *parser) scalar(e entry, what string) (string, bool) {
	if e.Value.Kind != yaml.ScalarNode || yamlpos.IsNull(e.Value) {
		p.errorf(e.Value, "%s must be %s", e.Key.Value, what)
		return "", false
	}
	return e.Value.Value, true
}

func (p *parser) ruleFiles(e entry) []string {
	var nodes []*yaml.Node
	switch e.Value.Kind {
	case yaml.ScalarNode:
		if !yamlpos.IsNull(e.Value) {
			nodes = []*yaml.Node{e.Value}
		}
	case yaml.SequenceNode:
		nodes = e.Value.Content
	}
	if len(nodes) == 0 {
		p.errorf(e.Value, "rule_files must be a non-empty list of rule files or directories, relative to the test file")
		return nil
	}
	var out []string
	for _, n := range nodes {
		n = yamlpos.Resolve(n)
		if n.Kind != yaml.ScalarNode || yamlpos.IsNull(n) || n.Value == "" {
			p.errorf(n, "rule_files: expected a file or directory name")
			continue
		}
		path := n.Value
		if !filepath.IsAbs(path) {
			path = filepath.Join(filepath.Dir(p.file), path)
		}
		if _, err := os.Stat(path); err != nil {
			p.errorf(n, "rule_files: %s: %v", path, errors.Unwrap(err))
			continue
		}
		out = append(out, path)
	}
	return out
}

var classifications = keys("PUBLIC", "INTERNAL", "CONFIDENTIAL", "PHI")

func (p *parser) namespaces(e entry) map[string]string {
	if e.Value.Kind != yaml.MappingNode {
		p.errorf(e.Value, "namespaces must be a mapping of namespace to data_classification, e.g. {ns_1: PHI}")
		return nil
	}
	out := map[string]string{}
	for ns, ne := range p.mapping(e.Value, nil) {
		c := ne.Value.Value
		if ne.Value.Kind != yaml.ScalarNode || !classifications[c] {
			p.errorf(ne.Value, "namespace %q: data_classification must be PUBLIC, INTERNAL, CONFIDENTIAL or PHI", ns)
			continue
		}
		out[ns] = c
	}
	return out
}

// field is one event field as written: its name and its YAML value.
type field struct {
	name  string
	value *yaml.Node
}

// defaults holds the default fields of each source, indexed by event.Source.
type defaults [3][]field

// over returns d with o's fields merged over it, key by key.
func (d defaults) over(o defaults) defaults {
	var out defaults
	for src := range d {
		out[src] = merge(d[src], o[src])
	}
	return out
}

// merge returns base with the fields of top replacing or added to it;
// fields keep the position where they first appeared.
func merge(base, top []field) []field {
	out := append([]field(nil), base...)
next:
	for _, f := range top {
		for i := range out {
			if out[i].name == f.name {
				out[i] = f
				continue next
			}
		}
		out = append(out, f)
	}
	return out
}

func (p *parser) defaults(e entry) defaults {
	var d defaults
	if e.Value.Kind != yaml.MappingNode {
		p.errorf(e.Value, "defaults must be a mapping with requests and/or audit, each a mapping of event fields")
		return d
	}
	for name, se := range p.mapping(e.Value, defaultsKeys) {
		src, _ := event.ParseSource(name)
		d[src] = p.fields(se, src, "")
	}
	return d
}

// fields reads a mapping of event field names to values, checking the
// names against the source's schema; prefix starts every message.
func (p *parser) fields(e entry, src event.Source, prefix string) []field {
	if e.Value.Kind != yaml.MappingNode {
		p.errorf(e.Value, "%s%s must be a mapping of %s fields to values, e.g. {status: 401}", prefix, e.Key.Value, src)
		return nil
	}
	var out []field
	for i := 0; i+1 < len(e.Value.Content); i += 2 {
		k, v := e.Value.Content[i], yamlpos.Resolve(e.Value.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, "%sfield names must be plain strings", prefix)
			continue
		}
		name := k.Value
		if name == "ts" {
			p.errorf(k, "%sts is set by the event's at (relative to start) or ts (absolute), not among its fields", prefix)
			continue
		}
		if _, ok := event.Lookup(src, name); !ok {
			p.errorf(k, "%sunknown %s field %q%s", prefix, src, name, yamlpos.Suggest(name, schemaNames(src)))
			continue
		}
		if hasField(out, name) {
			p.errorf(k, "%sduplicate field %q", prefix, name)
			continue
		}
		out = append(out, field{name, v})
	}
	return out
}

func hasField(fs []field, name string) bool {
	for _, f := range fs {
		if f.name == name {
			return true
		}
	}
	return false
}

func schemaNames(src event.Source) []string {
	var out []string
	for _, f := range event.Fields(src) {
		if f.Name != "ts" {
			out = append(out, f.Name)
		}
	}
	return out
}

// test parses one test case; index is its 1-based position, used in
// generated event ids.
func (p *parser) test(n *yaml.Node, index int, start time.Time, fileDefaults defaults) *Test {
	n = yamlpos.Resolve(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "each test must be a mapping with name, events and expect")
		return nil
	}
	m := p.mapping(n, testKeys)
	t := &Test{Line: n.Line}
	if e, ok := m["name"]; ok {
		if s, ok := p.scalar(e, "a string"); ok && strings.TrimSpace(s) != "" {
			t.Name = s
		} else if ok {
			p.errorf(e.Value, "name must not be empty")
		}
	} else {
		p.errorf(n, "missing required key \"name\"")
	}
	d := fileDefaults
	if e, ok := m["defaults"]; ok {
		d = fileDefaults.over(p.defaults(e))
	}
	if e, ok := m["events"]; ok && !yamlpos.IsNull(e.Value) {
		if e.Value.Kind != yaml.SequenceNode {
			p.errorf(e.Value, "events must be a list of events, each with source and fields")
		} else {
			b := &eventBuilder{p: p, test: index, start: start, defaults: d}
			for i, en := range e.Value.Content {
				t.Events = b.add(t.Events, yamlpos.Resolve(en), i+1)
			}
			sortByTime(t.Events)
		}
	}
	if e, ok := m["expect"]; ok && !yamlpos.IsNull(e.Value) {
		if e.Value.Kind != yaml.SequenceNode {
			p.errorf(e.Value, "expect must be a list of expected alerts ([] for none)")
		} else {
			for _, xn := range e.Value.Content {
				if x := p.expect(yamlpos.Resolve(xn), start); x != nil {
					t.Expect = append(t.Expect, x)
				}
			}
		}
	}
	return t
}

// parseOffset reads a time relative to start: a duration with an optional
// leading '+', in the units of rules.ParseDuration (which adds "d").
func parseOffset(s string) (time.Duration, error) {
	return rules.ParseDuration(strings.TrimPrefix(s, "+"))
}

// eventBuilder turns the events of one test into decoded events.
type eventBuilder struct {
	p        *parser
	test     int // 1-based index of the test, for generated ids
	start    time.Time
	defaults defaults
	n        int // events built so far, for generated ids
	dec      event.Decoder
	buf      []byte
}

// add builds the event entry n (1-based in its list), repeated as asked,
// and appends the decoded events to evs.
func (b *eventBuilder) add(evs []event.Event, n *yaml.Node, index int) []event.Event {
	p := b.p
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "event %d: each event must be a mapping with source and fields", index)
		return evs
	}
	before := len(p.errs)
	m := p.mapping(n, eventKeys)
	se, ok := m["source"]
	if !ok {
		p.errorf(n, "event %d: missing required key \"source\" (requests or audit)", index)
		return evs
	}
	src, ok := event.ParseSource(se.Value.Value)
	if se.Value.Kind != yaml.ScalarNode || !ok {
		p.errorf(se.Value, "event %d: source must be requests or audit", index)
		return evs
	}

	// The time of the first occurrence, and the node that set it.
	ts, tsNode := b.start, n
	at, hasAt := m["at"]
	abs, hasTS := m["ts"]
	switch {
	case hasAt && hasTS:
		p.errorf(abs.Key, "event %d: give either at (relative to start) or ts (absolute), not both", index)
		return evs
	case hasAt:
		s, ok := p.scalar(at, "a duration relative to start, such as +30s")
		if !ok {
			return evs
		}
		d, err := parseOffset(s)
		if err != nil {
			p.errorf(at.Value, "event %d: at must be a duration relative to start such as +30s, 5m or 1d2h: %v", index, err)
			return evs
		}
		ts, tsNode = b.start.Add(d), at.Value
	case hasTS:
		s, ok := p.scalar(abs, "an RFC 3339 time such as 2026-11-22T18:00:30Z")
		if !ok {
			return evs
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			p.errorf(abs.Value, "event %d: ts must be an RFC 3339 time such as 2026-11-22T18:00:30Z, got %q", index, s)
			return evs
		}
		ts, tsNode = t, abs.Value
	}

	repeat := 1
	if e, ok := m["repeat"]; ok {
		var r int
		if e.Value.Kind != yaml.ScalarNode || e.Value.ShortTag() != "!!int" || e.Value.Decode(&r) != nil || r < 1 || r > MaxRepeat {
			p.errorf(e.Value, "event %d: repeat must be a whole number from 1 to %d", index, MaxRepeat)
			return evs
		}
		repeat = r
	}
	var every time.Duration
	if e, ok := m["every"]; ok {
		if _, ok := m["repeat"]; !ok {
			p.errorf(e.Key, "event %d: every is the spacing between repeats and needs repeat", index)
			return evs
		}
		s, ok := p.scalar(e, "a duration such as 1s")
		if !ok {
			return evs
		}
		d, err := rules.ParseDuration(s)
		if err != nil {
			p.errorf(e.Value, "event %d: every: %v", index, err)
			return evs
		}
		every = d
	}

	fields := b.defaults[src]
	if e, ok := m["fields"]; ok && !yamlpos.IsNull(e.Value) {
		fields = merge(fields, p.fields(e, src, fmt.Sprintf("event %d: ", index)))
	}
	idName := "request_id"
	if src == event.Audit {
		idName = "event_id"
	}
	hasID := hasField(fields, idName)
	if len(p.errs) != before {
		return evs // an unknown key or field: decoding would only add confusing errors
	}

	if p.events+repeat > MaxFileEvents {
		p.errorf(n, "event %d: the file builds more than %d events; split it or lower repeat", index, MaxFileEvents)
		return evs
	}
	p.events += repeat
	for i := 0; i < repeat; i++ {
		b.n++
		id := ""
		if !hasID {
			id = fmt.Sprintf("%d-%d", b.test, b.n)
		}
		var problem *yaml.Node
		b.buf, problem = b.record(b.buf[:0], ts.Add(time.Duration(i)*every), idName, id, fields)
		if problem != nil {
			p.errorf(problem, "event %d: cannot be written as JSON (use numbers, strings, true, false, null, lists and mappings)", index)
			return evs
		}
		var ev event.Event
		if err := b.dec.Decode(src, b.buf, &ev); err != nil {
			at := n
			var ie *event.InvalidError
			if errors.As(err, &ie) && ie.Field != "" {
				if ie.Field == "ts" {
					at = tsNode
				}
				for _, f := range fields {
					if f.name == ie.Field {
						at = f.value
					}
				}
			}
			p.errorf(at, "event %d: %v", index, err)
			return evs
		}
		evs = append(evs, ev.Clone())
	}
	return evs
}

// record writes one event as the JSON object the logs would hold: ts, then
// the generated id (when id != ""), then the fields. It returns the node of
// a value JSON cannot express.
func (b *eventBuilder) record(buf []byte, ts time.Time, idName, id string, fields []field) ([]byte, *yaml.Node) {
	buf = append(buf, `{"ts":"`...)
	layout := "2006-01-02T15:04:05.000Z07:00"
	if ts.Nanosecond()%int(time.Millisecond) != 0 {
		layout = "2006-01-02T15:04:05.000000000Z07:00"
	}
	buf = ts.UTC().AppendFormat(buf, layout)
	buf = append(buf, '"')
	if id != "" {
		buf = append(buf, `,"`...)
		buf = append(buf, idName...)
		buf = append(buf, `":`...)
		buf = strconv.AppendQuote(buf, id)
	}
	for _, f := range fields {
		buf = append(buf, ',')
		buf = strconv.AppendQuote(buf, f.name)
		buf = append(buf, ':')
		var bad *yaml.Node
		if buf, bad = appendJSON(buf, f.value); bad != nil {
			return buf, bad
		}
	}
	return append(buf, '}'), nil
}

// appendJSON writes a YAML value as JSON. Scalars keep their YAML type:
// 401 is a number, "401" and 198.51.100.23 are strings. A float without a
// fraction is written as an integer, so 10e6 can fill an integer field.
func appendJSON(buf []byte, n *yaml.Node) ([]byte, *yaml.Node) {
	n = yamlpos.Resolve(n)
	switch n.Kind {
	case yaml.MappingNode:
		buf = append(buf, '{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				buf = append(buf, ',')
			}
			k := yamlpos.Resolve(n.Content[i])
			if k.Kind != yaml.ScalarNode {
				return buf, k
			}
			buf = strconv.AppendQuote(buf, k.Value)
			buf = append(buf, ':')
			var bad *yaml.Node
			if buf, bad = appendJSON(buf, n.Content[i+1]); bad != nil {
				return buf, bad
			}
		}
		return append(buf, '}'), nil
	case yaml.SequenceNode:
		buf = append(buf, '[')
		for i, c := range n.Content {
			if i > 0 {
				buf = append(buf, ',')
			}
			var bad *yaml.Node
			if buf, bad = appendJSON(buf, c); bad != nil {
				return buf, bad
			}
		}
		return append(buf, ']'), nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return append(buf, "null"...), nil
		case "!!bool":
			var v bool
			if n.Decode(&v) != nil {
				return buf, n
			}
			return strconv.AppendBool(buf, v), nil
		case "!!int":
			var v int64
			if n.Decode(&v) != nil {
				return buf, n
			}
			return strconv.AppendInt(buf, v, 10), nil
		case "!!float":
			var v float64
			if n.Decode(&v) != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return buf, n
			}
			if v == math.Trunc(v) && math.Abs(v) < 1e18 {
				return strconv.AppendFloat(buf, v, 'f', -1, 64), nil
			}
			return strconv.AppendFloat(buf, v, 'g', -1, 64), nil
		}
		return strconv.AppendQuote(buf, n.Value), nil
	}
	return buf, n
}

// sortByTime orders events by event time, keeping file order on ties.
func sortByTime(evs []event.Event) {
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].TS < evs[j].TS })
}

func (p *parser) expect(n *yaml.Node, start time.Time) *Expect {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "each expected alert must be a mapping with at least rule")
		return nil
	}
	before := len(p.errs)
	m := p.mapping(n, expectKeys)
	x := &Expect{Count: 1, Text: flow(n), Line: n.Line, Column: n.Column}
	if e, ok := m["rule"]; ok {
		if s, ok := p.scalar(e, "a rule id"); ok {
			x.Rule, x.ruleLine, x.ruleCol = s, e.Value.Line, e.Value.Column
		}
	} else {
		p.errorf(n, "missing required key \"rule\" (the id of the rule expected to fire)")
	}
	if e, ok := m["group"]; ok {
		x.groupLine, x.groupCol = e.Value.Line, e.Value.Column
		if e.Value.Kind != yaml.MappingNode {
			p.errorf(e.Value, "group must be a mapping of field to value, e.g. {ip: 198.51.100.23}")
		} else {
			x.Group = map[string]string{}
			for k, ge := range p.mapping(e.Value, nil) {
				if ge.Value.Kind != yaml.ScalarNode {
					p.errorf(ge.Value, "group value of %q must be a plain value", k)
					continue
				}
				x.Group[k] = ge.Value.Value
				if yamlpos.IsNull(ge.Value) {
					x.Group[k] = "" // an absent field groups as its zero value
				}
			}
		}
	}
	if e, ok := m["severity"]; ok {
		if s, ok := p.scalar(e, "critical, high, medium, low or 1-4"); ok {
			if sev, ok := rules.ParseSeverity(s); ok {
				x.Severity = sev
			} else {
				p.errorf(e.Value, "unknown severity %q: use critical, high, medium, low or 1-4", s)
			}
		}
	}
	if e, ok := m["phi"]; ok {
		var v bool
		if e.Value.Kind != yaml.ScalarNode || e.Value.ShortTag() != "!!bool" || e.Value.Decode(&v) != nil {
			p.errorf(e.Value, "phi must be true or false")
		} else {
			x.PHI = &v
		}
	}
	if e, ok := m["count"]; ok {
		var c int
		if e.Value.Kind != yaml.ScalarNode || e.Value.ShortTag() != "!!int" || e.Value.Decode(&c) != nil || c < 1 {
			p.errorf(e.Value, "count must be a whole number of at least 1 (alerts not listed in expect already fail the test)")
		} else {
			x.Count = c
		}
	}
	if e, ok := m["at"]; ok {
		if s, ok := p.scalar(e, "a time"); ok {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				x.At = &t
			} else if d, err := parseOffset(s); err == nil {
				t := start.Add(d)
				x.At = &t
			} else {
				p.errorf(e.Value, "at must be a duration relative to start such as +50s, or an RFC 3339 time, got %q", s)
			}
		}
	}
	if e, ok := m["value"]; ok {
		var v float64
		if e.Value.Kind != yaml.ScalarNode || e.Value.Decode(&v) != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			p.errorf(e.Value, "value must be a number")
		} else {
			x.Value = &v
		}
	}
	if len(p.errs) != before {
		return nil
	}
	return x
}

// flow renders a YAML value in flow style, close to how it was written.
func flow(n *yaml.Node) string {
	n = yamlpos.Resolve(n)
	var b strings.Builder
	switch n.Kind {
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(flow(n.Content[i]))
			b.WriteString(": ")
			b.WriteString(flow(n.Content[i+1]))
		}
		b.WriteByte('}')
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(flow(c))
		}
		b.WriteByte(']')
	default:
		v := n.Value
		quoted := n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
		if quoted || v == "" || strings.TrimSpace(v) != v || strings.ContainsAny(v, ",:{}[]#&*!|>'\"%@`\n") {
			return strconv.Quote(v)
		}
		return v
	}
	return b.String()
}
