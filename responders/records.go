package responders

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

// Alert is a detector alert as the responders see it: plain values, no
// pointers into the detector's state, so it can wait in a queue.
type Alert struct {
	Key         string // rule, group and window: the alert's idempotency key
	Rule        string
	Severity    int
	Source      string
	Group       []GroupValue // in the rule's group order
	Value       float64
	Threshold   string
	WindowStart time.Time
	WindowEnd   time.Time
	At          time.Time // event time of the event that fired it
	PHI         bool
	Labels      map[string]string
	SampleIDs   []string
	Actions     []string
}

// GroupValue is one field of an alert's group.
type GroupValue struct {
	Field, Value string
}

// FromDetector copies a detector alert.
func FromDetector(a *detector.Alert) Alert {
	out := Alert{
		Key: a.Key(), Rule: a.Rule.ID, Severity: int(a.Severity), Source: a.Rule.Source.String(),
		Value: a.Value, Threshold: a.Threshold,
		WindowStart: time.Unix(0, a.WindowStart).UTC(), WindowEnd: time.Unix(0, a.WindowEnd).UTC(), At: time.Unix(0, a.At).UTC(),
		PHI: a.PHI, Labels: a.Rule.Labels,
		SampleIDs: append([]string(nil), a.SampleIDs...), Actions: append([]string(nil), a.Actions...),
	}
	for _, g := range a.Group {
		out.Group = append(out.Group, GroupValue{Field: g.Field.Name, Value: g.Value})
	}
	return out
}

// ParseAlert reads an alert stored as JSON (the documented alert format)
// under its key. rule, when known, orders the group as the detector does.
func ParseAlert(key, js string, rule *rules.Rule) (Alert, error) {
	var raw struct {
		Rule        string                     `json:"rule"`
		Severity    int                        `json:"severity"`
		Source      string                     `json:"source"`
		Group       map[string]json.RawMessage `json:"group"`
		Value       float64                    `json:"value"`
		Threshold   string                     `json:"threshold"`
		WindowStart time.Time                  `json:"window_start"`
		WindowEnd   time.Time                  `json:"window_end"`
		At          time.Time                  `json:"at"`
		PHI         bool                       `json:"phi"`
		Labels      map[string]string          `json:"labels"`
		SampleIDs   []string                   `json:"sample_ids"`
		Actions     []string                   `json:"actions"`
	}
	if err := json.Unmarshal([]byte(js), &raw); err != nil {
		return Alert{}, fmt.Errorf("stored alert %s: %w", key, err)
	}
	a := Alert{Key: key, Rule: raw.Rule, Severity: raw.Severity, Source: raw.Source, Value: raw.Value,
		Threshold: raw.Threshold, WindowStart: raw.WindowStart, WindowEnd: raw.WindowEnd, At: raw.At,
		PHI: raw.PHI, Labels: raw.Labels, SampleIDs: raw.SampleIDs, Actions: raw.Actions}
	var order []string
	if rule != nil {
		for _, f := range rule.GroupFields() {
			order = append(order, f.Name)
		}
	}
	if len(order) != len(raw.Group) {
		order = order[:0]
		for k := range raw.Group {
			order = append(order, k)
		}
		sort.Strings(order)
	}
	for _, f := range order {
		v := raw.Group[f]
		var s string
		if json.Unmarshal(v, &s) != nil {
			s = string(v) // numbers keep their decimal form
		}
		a.Group = append(a.Group, GroupValue{Field: f, Value: s})
	}
	return a, nil
}

// value returns the group's value of a field, or "".
func (a *Alert) value(field string) string {
	for _, g := range a.Group {
		if g.Field == field {
			return g.Value
		}
	}
	return ""
}

// groupStrings renders the group as "field=value" pairs.
func (a *Alert) groupStrings() []string {
	out := make([]string, len(a.Group))
	for i, g := range a.Group {
		out[i] = g.Field + "=" + g.Value
	}
	return out
}

// groupJSON renders the group as a JSON object, in order.
func (a *Alert) groupJSON() string {
	var b strings.Builder
	b.WriteByte('{')
	for i, g := range a.Group {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(g.Field)
		b.Write(k)
		b.WriteByte(':')
		src, _ := event.ParseSource(a.Source)
		if f, ok := event.Lookup(src, g.Field); ok && f.Numeric() {
			b.WriteString(g.Value)
		} else {
			v, _ := json.Marshal(g.Value)
			b.Write(v)
		}
	}
	b.WriteByte('}')
	return b.String()
}

// Outcomes of an action attempt, as written to the actions table.
const (
	Planned   = "planned"   // about to be sent; a restart that finds only this re-checks the target
	DryRun    = "dry_run"   // would have been sent; dry run is on
	Skipped   = "skipped"   // a guard stopped it; Guard says which
	Succeeded = "succeeded" // the system confirmed it
	Retried   = "retried"   // a retryable failure; another attempt follows
	Failed    = "failed"    // gave up: a final answer or out of attempts
)

// ActionRecord is one line of the action log.
type ActionRecord struct {
	At         time.Time
	IncidentID string
	Kind       string
	Target     string
	Outcome    string
	Guard      string // the guard that skipped it
	Attempt    int
	Error      string
	Detail     string
	ExpiresAt  time.Time // for blocks and watches: when the action lapses
	// AlertKey is the alert whose plan wrote the record (written, not read
	// back): a restart replans an alert that has none.
	AlertKey string
}

// BlockRecord is one block in the offender ledger: the unblock happens
// at ExpiresAt even across restarts, and earlier blocks of the same range
// make the next one longer.
type BlockRecord struct {
	Prefix     string
	IncidentID string
	BlockedAt  time.Time
	ExpiresAt  time.Time
	Offense    int    // 1 for the first block of this range
	Status     string // active, removed or not_applied
}

// Block states in the ledger. A block not applied (it failed for good or
// the kill switch stopped it) is no offense.
const (
	BlockActive     = "active"
	BlockRemoved    = "removed"
	BlockNotApplied = "not_applied"
)

// Evidence is what the stored events behind an alert's samples say about
// who was involved.
type Evidence struct {
	Orgs, Namespaces, Keys, AdminKeys, Addresses []string
	// NamespaceOrgs maps a namespace to the org it was seen in (never "").
	NamespaceOrgs map[string]string
}

// StoredAlert is an alert read back from the alerts table.
type StoredAlert struct {
	Key, JSON string
}

// Store is where incidents, actions and the block ledger live (ClickHouse).
type Store interface {
	WriteIncident(ctx context.Context, inc *Incident) error
	// Incident returns one incident, or nil when there is none with that id.
	Incident(ctx context.Context, id string) (*Incident, error)
	// OpenIncidents returns the incidents still open, updated since t.
	OpenIncidents(ctx context.Context, since time.Time) ([]*Incident, error)
	// Evidence reads the stored events with the given ids and event times
	// in [from, to].
	Evidence(ctx context.Context, source string, ids []string, from, to time.Time) (Evidence, error)
	WriteActions(ctx context.Context, recs []ActionRecord) error
	// LatestActions returns, per kind and target, the latest record whose
	// outcome is planned, succeeded or failed (what is or may be in force),
	// or skipped with an attempt number (the kill switch stopped a planned
	// action before its call).
	LatestActions(ctx context.Context, kinds []string) ([]ActionRecord, error)
	// UnsentNotifications returns, per incident and notifier, the latest
	// open_incident record since t when it is planned or retried: a
	// notification a crash cut off.
	UnsentNotifications(ctx context.Context, since time.Time) ([]ActionRecord, error)
	WriteBlocks(ctx context.Context, recs []BlockRecord) error
	ActiveBlocks(ctx context.Context) ([]BlockRecord, error)
	// Offenses counts the blocks of a range since t that were applied.
	Offenses(ctx context.Context, prefix string, since time.Time) (int, error)
	// PendingAlerts returns alerts stored since t that no incident holds
	// yet (the daemon stopped between storing them and triaging them).
	PendingAlerts(ctx context.Context, since time.Time) ([]StoredAlert, error)
	// UnplannedAlerts returns the alerts held by incidents updated since t
	// whose actions were never planned (no planned, skipped or dry-run
	// record): the daemon stopped between writing the incident and planning
	// its actions.
	UnplannedAlerts(ctx context.Context, since time.Time) ([]StoredAlert, error)
	// Paused reads the kill switch that `vigil respond pause` sets.
	Paused(ctx context.Context) (bool, error)
}
