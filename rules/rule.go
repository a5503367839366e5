// Package rules loads detection rules from YAML (docs/rules.md) into
// validated, compiled Rule values. It reports every problem of every file
// with file:line:col and never returns a half-valid set. It does not
// evaluate rules over time; that is the detector's job.
package rules

import (
	"strconv"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules/expression"
)

// Kind is the detection a rule performs.
type Kind uint8

const (
	Threshold Kind = iota + 1
	Anomaly
	NewValue
	Dormant
	Sequence
)

func (k Kind) String() string {
	switch k {
	case Threshold:
		return "threshold"
	case Anomaly:
		return "anomaly"
	case NewValue:
		return "new_value"
	case Dormant:
		return "dormant"
	case Sequence:
		return "sequence"
	}
	return "unknown"
}

// Severity follows the incident response plan: 1 critical … 4 low.
type Severity int

const (
	Critical Severity = 1
	High     Severity = 2
	Medium   Severity = 3
	Low      Severity = 4
)

var severityNames = [...]string{"", "critical", "high", "medium", "low"}

// Name returns "critical", "high", "medium" or "low".
func (s Severity) Name() string {
	if s < Critical || s > Low {
		return "unknown"
	}
	return severityNames[s]
}

// Escalate raises the severity one level, never above critical.
func (s Severity) Escalate() Severity {
	if s > Critical {
		return s - 1
	}
	return s
}

// ParseSeverity accepts a name or the plan's number.
func ParseSeverity(s string) (Severity, bool) {
	for i := Critical; i <= Low; i++ {
		if s == severityNames[i] || s == strconv.Itoa(int(i)) {
			return i, true
		}
	}
	return 0, false
}

// AggOp is a threshold or anomaly rule's aggregate function.
type AggOp uint8

const (
	Count AggOp = iota + 1
	Sum
	Distinct
	Ratio
)

// Aggregate is the value computed over a window for a group.
type Aggregate struct {
	Op    AggOp
	Field *event.Field          // sum and distinct
	Ratio *expression.Predicate // ratio
	Text  string                // as written, e.g. "sum(bytes_out)"
}

// CmpOp is a threshold's comparison.
type CmpOp uint8

const (
	GT CmpOp = iota + 1
	GE
	LT
	LE
	EQ
)

// Condition is a parsed threshold such as "> 50".
type Condition struct {
	Op    CmpOp
	Value float64
	Text  string // as the rule wrote it (trimmed); alerts echo it
}

// Holds reports whether v satisfies the condition.
func (c Condition) Holds(v float64) bool {
	switch c.Op {
	case GT:
		return v > c.Value
	case GE:
		return v >= c.Value
	case LT:
		return v < c.Value
	case LE:
		return v <= c.Value
	case EQ:
		return v == c.Value
	}
	return false
}

// AnomalySpec is a volume anomaly against the group's own history.
type AnomalySpec struct {
	Baseline time.Duration
	Z        float64
	Min      float64
}

// NewValueSpec fires on the first sighting of Field's value per Per group.
type NewValueSpec struct {
	Field    *event.Field
	Per      []*event.Field
	Remember time.Duration
	Learn    time.Duration
}

// DormantSpec fires when a value reappears after Idle without events.
type DormantSpec struct {
	Field *event.Field
	Idle  time.Duration
}

// Step is one stage of a sequence rule.
type Step struct {
	Where     *expression.Predicate
	WhereText string
	Count     Condition // default ">= 1"
}

// SequenceSpec is a list of ordered steps by the same group within a limit.
type SequenceSpec struct {
	By     []*event.Field
	Within time.Duration
	Steps  []Step
}

// Action names known to the responders (docs/responders.md).
var knownActions = map[string]bool{
	"open_incident": true, "revoke_key": true, "block_ip": true, "watch": true, "isolate_namespace": true,
}

// Rule is one validated, compiled detection rule.
type Rule struct {
	ID          string
	Description string
	Source      event.Source
	Kind        Kind
	Where       *expression.Predicate // nil: every event of the source
	WhereText   string

	// Threshold and anomaly rules.
	GroupBy   []*event.Field
	Window    time.Duration
	Aggregate Aggregate
	Threshold Condition
	MinEvents int

	Anomaly  *AnomalySpec
	NewValue *NewValueSpec
	Dormant  *DormantSpec
	Sequence *SequenceSpec

	Severity      Severity
	Cooldown      time.Duration
	Labels        map[string]string
	Actions       []string // nil: the severity policy decides
	PHIEscalation bool
	// AllowAdminRevoke lets revoke_key act on ADMIN keys (off by default).
	AllowAdminRevoke bool
	// DryRun records planned actions without calling out.
	DryRun bool
	// Shadow rules record alerts but open no incidents and run no actions.
	Shadow bool

	File  string
	Line  int
	idCol int
	// Hash is a content hash of the rule's YAML; reloads keep the state of
	// rules whose hash did not change.
	Hash string
	// FileHash is a content hash of the whole rule file, recorded with
	// incidents so they point at the exact file that produced them.
	FileHash string
	// GitRevision is the commit checked out in the git work tree holding
	// the rule file, when there is one: with Hash it names the exact rule
	// behind every alert.
	GitRevision string
}

// GroupFields returns the fields whose values identify a group, in the
// order they appear in alerts' `group` object.
func (r *Rule) GroupFields() []*event.Field {
	switch r.Kind {
	case NewValue:
		return append(append([]*event.Field(nil), r.NewValue.Per...), r.NewValue.Field)
	case Dormant:
		return []*event.Field{r.Dormant.Field}
	case Sequence:
		return r.Sequence.By
	}
	return r.GroupBy
}
