// Package longrules evaluates threshold and anomaly rules whose window (or
// anomaly baseline) is too long to keep in memory as scheduled,
// parameterized ClickHouse queries over the stored events. Its alerts have
// the in-memory detector's format (detector.Alert), severity escalation,
// actions and window alignment, so downstream code cannot tell them apart
// except by timing (docs/long-window-rules.md).
//
// It reads ClickHouse through a one-method interface (Querier) and never
// writes: alerts go to the caller's Emit, which stores them like any other.
// It must not import storage, ingest or responder packages.
package longrules

import (
	"fmt"
	"time"

	"github.com/vigil-sec/vigil/rules"
)

// Split separates the rules that run in ClickHouse from those the in-memory
// detector keeps. A threshold rule is long when its window exceeds limit, an
// anomaly rule when its baseline plus window does: their state grows with
// that span. new_value, dormant and sequence rules always stay in memory:
// they keep state per group (a last-seen time, a sequence position), not
// per event, so a long remember/idle/within period costs no more memory.
// limit <= 0 keeps every rule in memory.
func Split(rs []*rules.Rule, limit time.Duration) (inMemory, long []*rules.Rule) {
	for _, r := range rs {
		if IsLong(r, limit) {
			long = append(long, r)
		} else {
			inMemory = append(inMemory, r)
		}
	}
	return inMemory, long
}

// IsLong reports whether Split puts r among the long rules.
func IsLong(r *rules.Rule, limit time.Duration) bool {
	if limit <= 0 {
		return false
	}
	switch r.Kind {
	case rules.Threshold:
		return r.Window > limit
	case rules.Anomaly:
		return r.Anomaly != nil && r.Anomaly.Baseline+r.Window > limit
	}
	return false
}

// supported is what the messages of Error list as translatable.
const supported = "long-window rules support comparisons, + - * /, in, and/or/not, " +
	"startsWith/endsWith/contains/matches, cidr"

// Error is a rule that cannot be compiled to a ClickHouse query, at the
// rule's file and line (its id).
type Error struct {
	File string
	Line int
	Rule string
	// Part is the rule key at fault: "where", "aggregate" or "kind".
	Part string
	// Construct names what cannot be translated, e.g. "function lower()".
	Construct string
	// Msg, when set, replaces the "cannot run in ClickHouse" sentence.
	Msg string
}

func (e *Error) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("%s:%d: rule %q: %s: %s", e.File, e.Line, e.Rule, e.Part, e.Msg)
	}
	return fmt.Sprintf("%s:%d: rule %q: %s: %s cannot run in ClickHouse (%s)",
		e.File, e.Line, e.Rule, e.Part, e.Construct, supported)
}
