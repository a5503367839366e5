package detector

import (
	"sort"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

// Alert is one firing of a rule, in the format of docs/rules.md.
type Alert struct {
	Rule      *rules.Rule
	Severity  rules.Severity
	Group     []GroupValue
	Value     float64
	Threshold string
	// WindowStart, WindowEnd and At are event times in Unix nanoseconds.
	WindowStart int64
	WindowEnd   int64
	At          int64
	PHI         bool
	SampleIDs   []string
	Actions     []string
}

// GroupValue is one field of an alert's group.
type GroupValue struct {
	Field *event.Field
	Value string // numbers in their decimal form
}

// Key identifies the alert for idempotent storage: the same rule, group and
// window always give the same key, in replay and in the daemon, across restarts.
func (a *Alert) Key() string {
	b := make([]byte, 0, 96)
	b = append(b, a.Rule.ID...)
	for _, g := range a.Group {
		b = append(b, 0x1f)
		b = append(b, g.Field.Name...)
		b = append(b, '=')
		b = append(b, g.Value...)
	}
	b = append(b, 0x1f)
	b = strconv.AppendInt(b, a.WindowStart, 10)
	return string(b)
}

// AppendGroupJSON appends the alert's "group" object: the group fields
// in order, strings quoted, numbers as they are. The alerts table keeps it
// as group_json.
func (a *Alert) AppendGroupJSON(b []byte) []byte {
	b = append(b, '{')
	for i, g := range a.Group {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, g.Field.Name)
		b = append(b, ':')
		if g.Field.Kind == event.String {
			b = appendJSONString(b, g.Value)
		} else {
			b = append(b, g.Value...)
		}
	}
	return append(b, '}')
}

// AppendJSON appends the alert as one JSON object, keys in the documented order.
func (a *Alert) AppendJSON(b []byte) []byte {
	b = append(b, `{"rule":`...)
	b = strconv.AppendQuote(b, a.Rule.ID)
	b = append(b, `,"severity":`...)
	b = strconv.AppendInt(b, int64(a.Severity), 10)
	b = append(b, `,"severity_name":`...)
	b = strconv.AppendQuote(b, a.Severity.Name())
	b = append(b, `,"source":`...)
	b = strconv.AppendQuote(b, a.Rule.Source.String())
	b = append(b, `,"group":`...)
	b = a.AppendGroupJSON(b)
	b = append(b, `,"value":`...)
	b = appendNumber(b, a.Value)
	b = append(b, `,"threshold":`...)
	b = appendJSONString(b, a.Threshold)
	b = append(b, `,"window_start":"`...)
	b = appendTime(b, a.WindowStart)
	b = append(b, '"')
	b = append(b, `,"window_end":"`...)
	b = appendTime(b, a.WindowEnd)
	b = append(b, '"')
	b = append(b, `,"at":"`...)
	b = appendTime(b, a.At)
	b = append(b, '"')
	b = append(b, `,"phi":`...)
	b = strconv.AppendBool(b, a.PHI)
	b = append(b, `,"labels":{`...)
	keys := make([]string, 0, len(a.Rule.Labels))
	for k := range a.Rule.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, a.Rule.Labels[k])
	}
	b = append(b, `},"sample_ids":`...)
	b = appendStrings(b, a.SampleIDs)
	b = append(b, `,"actions":`...)
	b = appendStrings(b, a.Actions)
	return append(b, '}')
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// FormatNumber renders alert values: integers without a fraction, others
// with the shortest exact representation.
func FormatNumber(v float64) string { return string(appendNumber(nil, v)) }

func appendNumber(b []byte, v float64) []byte {
	return strconv.AppendFloat(b, v, 'f', -1, 64)
}

// FormatTime renders an event time as RFC 3339 in UTC with the shortest fraction.
func FormatTime(ns int64) string { return string(appendTime(nil, ns)) }

func appendTime(b []byte, ns int64) []byte {
	return time.Unix(0, ns).UTC().AppendFormat(b, time.RFC3339Nano)
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s as a JSON string (RFC 8259 escapes, valid UTF-8
// passed through, invalid bytes replaced).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < 0x80 {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == 0xFFFD && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
