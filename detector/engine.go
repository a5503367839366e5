// Package detector evaluates loaded rules over a stream of decoded events
// and emits alerts. It is the same code in `vigil replay`, `vigil rules
// test`, backtests and the daemon, so all of them agree alert for alert.
// Time is event time only: the detector never reads the wall clock. It does
// no I/O and must not import ingest, storage or responder packages.
package detector

import (
	"hash/maphash"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

// Config tunes the detector. The zero value gets the documented defaults.
type Config struct {
	// MaxGroups caps the groups (or remembered values) tracked per rule; past
	// it the stalest is evicted and counted. Default 100000.
	MaxGroups int
	// Lateness is how far behind its group's newest event an event may be
	// and still be counted (if its bucket is still inside the group's
	// window). Later ones are counted as late and skipped. Default 10m.
	Lateness time.Duration
	// Policy gives the actions of rules that name none. Default: DefaultPolicy.
	Policy Policy
	// Namespaces classifies namespaces for events that carry no
	// data_classification of their own (namespace → PUBLIC … PHI).
	Namespaces map[string]string
	// Shards is how many goroutines evaluate a batch (Detector only).
	// Default 1.
	Shards int
	// DedupWindow: a record whose id was evaluated less than this much
	// event time before is a duplicate and skipped (Detector only).
	// Default DefaultDedupWindow; negative disables.
	DedupWindow time.Duration
	// Epoch, when set (Unix ns), is where learning periods start instead of
	// the first event each rule sees: keyed detection splits the stream
	// between detectors, and each must count from the stream's start.
	Epoch int64
}

// DefaultMaxGroups, DefaultLateness and DefaultDedupWindow are the Config
// defaults. Two minutes covers a Kafka producer's default delivery timeout,
// within which it retries a send.
const (
	DefaultMaxGroups   = 100000
	DefaultLateness    = 10 * time.Minute
	DefaultDedupWindow = 2 * time.Minute
)

func (c Config) withDefaults() Config {
	if c.MaxGroups <= 0 {
		c.MaxGroups = DefaultMaxGroups
	}
	if c.Lateness <= 0 {
		c.Lateness = DefaultLateness
	}
	if c.Policy == nil {
		c.Policy = DefaultPolicy()
	}
	if c.Shards <= 0 {
		c.Shards = 1
	}
	if c.DedupWindow == 0 {
		c.DedupWindow = DefaultDedupWindow
	}
	return c
}

// Policy maps a severity to the actions of rules that list none.
type Policy map[rules.Severity][]string

// DefaultPolicy is the severity table of docs/responders.md.
func DefaultPolicy() Policy {
	return Policy{
		rules.Critical: {"open_incident", "revoke_key", "block_ip", "isolate_namespace"},
		rules.High:     {"open_incident", "revoke_key", "watch"},
		rules.Medium:   {"open_incident", "watch"},
		rules.Low:      {},
	}
}

// RuleStats are a rule's counters since it was loaded.
type RuleStats struct {
	Rule      string
	Matched   uint64 // events that passed the rule's filter
	Alerts    uint64
	Groups    int    // groups tracked now
	Evictions uint64 // groups evicted by the MaxGroups cap
	Late      uint64 // events skipped as later than the lateness bound or outside the window
}

// evaluator is one rule's state machine.
type evaluator interface {
	observe(e *event.Event, emit func(*Alert))
	stats() (groups int, evictions uint64)
}

type ruleState struct {
	rule *rules.Rule
	eval evaluator
	// first is the event time of the first event of the rule's source the
	// rule saw (before its filter): new_value's learning period starts here.
	first   int64
	seen    bool
	matched uint64
	alerts  uint64
	late    uint64
}

// Engine evaluates rules one event at a time. Not safe for concurrent use;
// Detector runs several engines in parallel.
type Engine struct {
	cfg    Config
	seed   maphash.Seed
	rules  []*ruleState
	bySrc  [3][]*ruleState
	hasher *keyHasher
	keys   *keyCache
}

// NewEngine builds an engine for a rule set with fresh state.
func NewEngine(rs []*rules.Rule, cfg Config) *Engine {
	cfg = cfg.withDefaults()
	en := &Engine{cfg: cfg, seed: maphash.MakeSeed()}
	en.hasher = newKeyHasher(en.seed)
	en.keys = &keyCache{hasher: en.hasher}
	for _, r := range rs {
		en.add(r, nil)
	}
	return en
}

func (en *Engine) add(r *rules.Rule, keep *ruleState) {
	rs := keep
	if rs == nil {
		rs = &ruleState{rule: r}
		rs.eval = en.newEvaluator(rs)
	}
	en.rules = append(en.rules, rs)
	en.bySrc[r.Source] = append(en.bySrc[r.Source], rs)
}

func (en *Engine) newEvaluator(rs *ruleState) evaluator {
	base := evalBase{rs: rs, cfg: &en.cfg, hasher: en.hasher, keys: en.keys}
	switch rs.rule.Kind {
	case rules.Threshold, rules.Anomaly:
		return newWindowed(base)
	case rules.NewValue:
		return newNewValue(base)
	case rules.Dormant:
		return newDormant(base)
	case rules.Sequence:
		return newSequence(base)
	}
	panic("detector: unknown rule kind " + rs.rule.Kind.String())
}

// Replace swaps in a new rule set. Rules whose content hash is unchanged
// keep their state (windows, baselines, learned values); new and changed
// rules start empty.
func (en *Engine) Replace(rs []*rules.Rule) {
	old := map[string]*ruleState{}
	for _, s := range en.rules {
		old[s.rule.ID+"\x00"+s.rule.Hash] = s
	}
	en.rules = nil
	en.bySrc = [3][]*ruleState{}
	for _, r := range rs {
		keep := old[r.ID+"\x00"+r.Hash]
		if keep != nil {
			keep.rule = r
		}
		en.add(r, keep)
	}
}

// Process evaluates one event against every rule of its source; emit is
// called for each alert, in rule order.
func (en *Engine) Process(e *event.Event, emit func(*Alert)) {
	if int(e.Source) >= len(en.bySrc) {
		return
	}
	en.keys.next()
	for _, rs := range en.bySrc[e.Source] {
		if !rs.seen {
			rs.seen, rs.first = true, e.TS
			if en.cfg.Epoch != 0 {
				rs.first = en.cfg.Epoch
			}
		}
		if rs.rule.Where != nil && !rs.rule.Where.Match(e) {
			continue
		}
		rs.matched++
		rs.eval.observe(e, emit)
	}
}

// Stats returns every rule's counters, in rule order.
func (en *Engine) Stats() []RuleStats {
	out := make([]RuleStats, 0, len(en.rules))
	for _, rs := range en.rules {
		g, ev := rs.eval.stats()
		out = append(out, RuleStats{Rule: rs.rule.ID, Matched: rs.matched, Alerts: rs.alerts,
			Groups: g, Evictions: ev, Late: rs.late})
	}
	return out
}

// Enrich fills data_classification from the namespace table when the event
// has none, before any rule sees it.
func (c *Config) Enrich(e *event.Event) {
	if e.DataClassification == "" && e.Namespace != "" && c.Namespaces != nil {
		e.DataClassification = c.Namespaces[e.Namespace]
	}
}

// evalBase is what every evaluator shares.
type evalBase struct {
	rs     *ruleState
	cfg    *Config
	hasher *keyHasher
	keys   *keyCache
}

// newAlert fills the fields every kind sets the same way.
func (b *evalBase) newAlert(at int64, phi bool) *Alert {
	return NewAlert(b.rs.rule, b.cfg.Policy, at, phi)
}

// NewAlert starts an alert of r fired at at: the severity (raised one
// level when PHI is involved and the rule allows it) and the actions (the
// rule's, else the policy's for that severity). Long-window rules, which
// fire from ClickHouse, build theirs with it too.
func NewAlert(r *rules.Rule, policy Policy, at int64, phi bool) *Alert {
	a := &Alert{Rule: r, Severity: r.Severity, At: at, PHI: phi}
	if phi && r.PHIEscalation {
		a.Severity = a.Severity.Escalate()
	}
	if r.Actions != nil {
		a.Actions = r.Actions
	} else {
		a.Actions = policy[a.Severity]
	}
	if a.Actions == nil {
		a.Actions = []string{}
	}
	return a
}

// AnomalyThreshold is the threshold text of an anomaly alert whose bound
// (mean + z·stddev) the value exceeded.
func AnomalyThreshold(bound float64) string {
	return "> " + strconv.FormatFloat(math.Round(bound*1000)/1000, 'f', -1, 64)
}

func (b *evalBase) fire(a *Alert, emit func(*Alert)) {
	b.rs.alerts++
	emit(a)
}

// cooledDown reports whether a group that last fired at last may fire at ts.
func cooledDown(fired bool, last, ts int64, cooldown time.Duration) bool {
	return !fired || ts-last >= int64(cooldown)
}

// samples keeps the ids of a group's most recent contributing events.
type samples struct {
	ring   []sample
	oldest int // index of the oldest sample
}

type sample struct {
	ts int64
	id []byte
}

// MaxSamples is how many event ids an alert carries as evidence.
const MaxSamples = 10

func (s *samples) reset() {
	s.ring = s.ring[:0]
	s.oldest = 0
}

// add records an event as evidence if there is room once samples older
// than from (the window start) are dropped. The first events of the window
// are kept: they show how the activity began, and a full set costs nothing
// per event.
func (s *samples) add(ts int64, id string, from int64) {
	if len(s.ring) == MaxSamples {
		if s.ring[s.oldest].ts >= from {
			return
		}
		s.compact(from)
		if len(s.ring) == MaxSamples {
			return
		}
	}
	n := len(s.ring)
	if n < cap(s.ring) {
		s.ring = s.ring[:n+1]
		s.ring[n].ts = ts
		s.ring[n].id = append(s.ring[n].id[:0], id...)
	} else {
		s.ring = append(s.ring, sample{ts: ts, id: append([]byte(nil), id...)})
	}
	if ts < s.ring[s.oldest].ts {
		s.oldest = n
	}
}

// compact drops samples older than from. Entries are swapped, never
// copied, so every id buffer stays owned by exactly one entry and the
// dropped ones are reused by later adds.
func (s *samples) compact(from int64) {
	w := 0
	for i := range s.ring {
		if s.ring[i].ts >= from {
			s.ring[w], s.ring[i] = s.ring[i], s.ring[w]
			w++
		}
	}
	s.ring = s.ring[:w]
	s.oldest = 0
	for i := range s.ring {
		if s.ring[i].ts < s.ring[s.oldest].ts {
			s.oldest = i
		}
	}
}

// ids returns the kept ids of events at or after from, oldest first.
func (s *samples) ids(from int64) []string {
	kept := make([]sample, 0, len(s.ring))
	for _, sm := range s.ring {
		if sm.ts >= from {
			kept = append(kept, sm)
		}
	}
	sort.SliceStable(kept, func(i, j int) bool { return kept[i].ts < kept[j].ts })
	out := make([]string, len(kept))
	for i, sm := range kept {
		out[i] = string(sm.id)
	}
	return out
}

// Lookback is how much event time a restarted detector must see again to
// rebuild the state of these rules: the longest window (plus baseline,
// for anomalies), sequence limit, remembered or idle period, plus the
// lateness bound — capped at max, since new_value and dormant rules can
// look back months.
func Lookback(rs []*rules.Rule, lateness, max time.Duration) time.Duration {
	var d time.Duration
	for _, r := range rs {
		var need time.Duration
		switch r.Kind {
		case rules.Threshold:
			need = r.Window
		case rules.Anomaly:
			need = r.Anomaly.Baseline + 2*r.Window
		case rules.Sequence:
			need = r.Sequence.Within
		case rules.NewValue:
			need = r.NewValue.Remember
		case rules.Dormant:
			need = r.Dormant.Idle
		}
		need = maxDur(need, r.Cooldown) // a cooldown in force must be known too
		d = maxDur(d, need)
	}
	d += lateness
	if d > max {
		d = max
	}
	return d
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}
