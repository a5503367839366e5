package longrules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

// Querier runs a read-only query whose `?` placeholders take args, bound
// and quoted by the driver. *storage.Store implements it.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (Rows, error)
}

// Rows is a query's result set. It is an alias of an interface literal,
// not a named type, so that storage.Store.Query, declared with the same
// literal, satisfies Querier without storage and longrules importing each
// other.
type Rows = interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close() error
}

// RunnerConfig configures a Runner. Store and Database are required.
type RunnerConfig struct {
	Store Querier
	// Database holds the event and alert tables (clickhouse.database).
	Database string
	// Rules are the long rules (see Split).
	Rules []*rules.Rule
	// Interval is how often every rule is evaluated. Default 1m.
	Interval time.Duration
	// Policy gives the actions of rules that name none, as the detector's
	// Config.Policy does. Default detector.DefaultPolicy().
	Policy detector.Policy
	// Namespaces classifies the namespaces of events stored without a
	// data_classification, as the detector's Config.Namespaces does.
	Namespaces map[string]string
	// MaxFired caps the groups whose last firing a rule remembers (for its
	// cooldown). Default detector.DefaultMaxGroups.
	MaxFired int
	Logger   *slog.Logger
	// Emit receives each alert. It should store it (storage.InsertAlerts)
	// before returning: a restarted Runner reads cooldowns back from the
	// alerts table.
	Emit func(*detector.Alert)
}

// DefaultInterval is RunnerConfig.Interval's default.
const DefaultInterval = time.Minute

// Runner evaluates long rules on a schedule. Event time comes from the
// data: each evaluation's time is the newest stored event of the rule's
// source, so replayed or backfilled events are evaluated as if live.
type Runner struct {
	cfg RunnerConfig
	// initErr is the initial rule set's compile error, returned by Run.
	initErr error

	mu    sync.Mutex // guards rules
	rules []*ruleState
	// evalMu serializes evaluations: only they touch the fire logs.
	evalMu sync.Mutex
}

type ruleState struct {
	q     *Query
	fires *fireLog
}

// fireLog is when each group of a rule last fired, for the cooldown. It
// holds only groups that fired within the rule's window or cooldown.
type fireLog struct {
	restored bool
	last     map[string]int64 // group JSON → event time, Unix ns
}

// NewRunner compiles cfg.Rules. A rule that cannot be compiled makes Run
// return its error at once; check rules with Compile or CompileAll where
// they are loaded to report it earlier.
func NewRunner(cfg RunnerConfig) *Runner {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Policy == nil {
		cfg.Policy = detector.DefaultPolicy()
	}
	if cfg.MaxFired <= 0 {
		cfg.MaxFired = detector.DefaultMaxGroups
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Emit == nil {
		cfg.Emit = func(*detector.Alert) {}
	}
	rn := &Runner{cfg: cfg}
	rn.initErr = rn.Replace(cfg.Rules)
	return rn
}

// Replace swaps in a new set of long rules (hot reload). The whole set is
// compiled first: on error nothing changes. Rules that keep their id keep
// their cooldowns.
func (rn *Runner) Replace(rs []*rules.Rule) error {
	if rn.cfg.Store == nil {
		return errors.New("longrules: RunnerConfig.Store is required")
	}
	qs, err := CompileAll(rs, rn.cfg.Database)
	if err != nil {
		return err
	}
	rn.mu.Lock()
	defer rn.mu.Unlock()
	old := make(map[string]*fireLog, len(rn.rules))
	for _, st := range rn.rules {
		old[st.q.Rule.ID] = st.fires
	}
	states := make([]*ruleState, len(qs))
	for i, q := range qs {
		fl := old[q.Rule.ID]
		if fl == nil {
			fl = &fireLog{last: map[string]int64{}}
		}
		states[i] = &ruleState{q: q, fires: fl}
	}
	rn.rules = states
	return nil
}

// Run evaluates every rule at once and then every Interval until ctx ends.
// A failed evaluation is logged and retried at the next interval.
func (rn *Runner) Run(ctx context.Context) error {
	if rn.initErr != nil {
		return rn.initErr
	}
	tick := time.NewTicker(rn.cfg.Interval)
	defer tick.Stop()
	for {
		_ = rn.Evaluate(ctx) // failures are logged; the next tick retries
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// Evaluate evaluates every rule once and emits the alerts, in rule order
// and by event time within a rule. It returns the failures, which it also
// logs; a rule that failed is evaluated again on the next call.
func (rn *Runner) Evaluate(ctx context.Context) error {
	rn.evalMu.Lock()
	defer rn.evalMu.Unlock()
	rn.mu.Lock()
	states := rn.rules
	rn.mu.Unlock()

	type mark struct {
		t   int64
		has bool
		err error
	}
	marks := map[event.Source]mark{}
	var errs []error
	for _, st := range states {
		r := st.q.Rule
		m, ok := marks[r.Source]
		if !ok {
			m.t, m.has, m.err = rn.watermark(ctx, st.q)
			marks[r.Source] = m
		}
		err := m.err
		if err == nil && m.has {
			began := time.Now()
			var n int
			n, err = rn.evaluateRule(ctx, st, m.t)
			if err == nil {
				rn.cfg.Logger.Debug("long-window rule evaluated", "rule", r.ID, "at", detector.FormatTime(m.t),
					"alerts", n, "duration", time.Since(began))
			}
		}
		if err != nil {
			err = fmt.Errorf("long-window rule %q: %w", r.ID, err)
			errs = append(errs, err)
			if ctx.Err() == nil {
				rn.cfg.Logger.Warn("long-window rule evaluation failed; retrying at the next interval", "rule", r.ID, "err", err)
			}
		}
	}
	return errors.Join(errs...)
}

// watermark returns the newest stored event time of q's source table, and
// false when the table is empty.
func (rn *Runner) watermark(ctx context.Context, q *Query) (int64, bool, error) {
	rows, err := rn.cfg.Store.Query(ctx, "SELECT toUnixTimestamp64Nano(max(ts)), count() FROM "+q.db+"."+q.table)
	if err != nil {
		return 0, false, fmt.Errorf("newest event of %s: %w", q.table, err)
	}
	defer rows.Close()
	var t int64
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&t, &n); err != nil {
			return 0, false, fmt.Errorf("newest event of %s: %w", q.table, err)
		}
	}
	if err := rows.Err(); err != nil {
		return 0, false, fmt.Errorf("newest event of %s: %w", q.table, err)
	}
	return t, n > 0, nil
}

// hold is how long a firing stays relevant: until the cooldown has passed
// and the window no longer holds its event.
func hold(r *rules.Rule) int64 { return int64(max(r.Cooldown, r.Window)) }

// evaluateRule evaluates one rule at watermark t and returns how many
// alerts it emitted.
func (rn *Runner) evaluateRule(ctx context.Context, st *ruleState, t int64) (int, error) {
	q, r, fl := st.q, st.q.Rule, st.fires
	if !fl.restored {
		if err := rn.restore(ctx, q, fl, t-hold(r)); err != nil {
			return 0, err
		}
		fl.restored = true
	}
	w := q.windowAt(t)
	cands, err := rn.candidates(ctx, q, w)
	if err != nil {
		return 0, err
	}
	if r.Kind == rules.Anomaly {
		if cands, err = rn.anomalies(ctx, q, w, cands); err != nil {
			return 0, err
		}
	}
	type firing struct {
		c     candidate
		a     *detector.Alert
		group string
	}
	var fire []firing
	for _, c := range cands {
		a := rn.alert(q, w, c)
		group := groupJSON(a)
		if last, ok := fl.last[group]; ok && !(c.at > last && c.at-last >= int64(r.Cooldown)) {
			continue // in cooldown, or nothing new since it fired
		}
		fire = append(fire, firing{c, a, group})
	}
	if len(fire) > 0 {
		fc := make([]candidate, len(fire))
		for i, f := range fire {
			fc[i] = f.c
		}
		samples, err := rn.samples(ctx, q, w, fc)
		if err != nil {
			return 0, err // nothing recorded: the next evaluation fires them
		}
		for _, f := range fire {
			f.a.SampleIDs = samples[f.c.key()]
			if f.a.SampleIDs == nil {
				f.a.SampleIDs = []string{}
			}
			fl.last[f.group] = f.c.at
			rn.cfg.Emit(f.a)
		}
	}
	fl.prune(t-hold(r), rn.cfg.MaxFired)
	return len(fire), nil
}

// candidate is a group whose window value passed the query's filter.
type candidate struct {
	groupRow
	n     uint64
	value float64
	phi   bool
	at    int64
	// Anomaly rules: the baseline's sums, whether its first step had
	// events, and the bound they give.
	sum, sq float64
	filled  bool
	bound   float64
}

// groupRow is a group's values as scanned (string, int64, float64) and as
// alerts show them.
type groupRow struct {
	raw    []any
	values []string
}

func (g groupRow) key() string { return strings.Join(g.values, "\x1f") }

// groupDest returns scan destinations for q's group columns.
func groupDest(q *Query) []any {
	dest := make([]any, len(q.groups))
	for i, g := range q.groups {
		switch g.k {
		case kInt:
			dest[i] = new(int64)
		case kFloat:
			dest[i] = new(float64)
		default:
			dest[i] = new(string)
		}
	}
	return dest
}

// readGroup turns scanned group columns into a groupRow, numbers in the
// detector's text forms.
func readGroup(dest []any) groupRow {
	g := groupRow{raw: make([]any, len(dest)), values: make([]string, len(dest))}
	for i, d := range dest {
		switch v := d.(type) {
		case *int64:
			g.raw[i], g.values[i] = *v, strconv.FormatInt(*v, 10)
		case *float64:
			g.raw[i], g.values[i] = *v, strconv.FormatFloat(*v, 'f', -1, 64)
		case *string:
			g.raw[i], g.values[i] = *v, *v
		}
	}
	return g
}

// groupArrays returns the values of the groups, one typed array per group
// field, for groupFilter's placeholders.
func groupArrays(q *Query, gs []candidate) []any {
	out := make([]any, len(q.groups))
	for i, g := range q.groups {
		switch g.k {
		case kInt:
			vs := make([]int64, len(gs))
			for j, c := range gs {
				vs[j] = c.raw[i].(int64)
			}
			out[i] = vs
		case kFloat:
			vs := make([]float64, len(gs))
			for j, c := range gs {
				vs[j] = c.raw[i].(float64)
			}
			out[i] = vs
		default:
			vs := make([]string, len(gs))
			for j, c := range gs {
				vs[j] = c.raw[i].(string)
			}
			out[i] = vs
		}
	}
	return out
}

func (rn *Runner) candidates(ctx context.Context, q *Query, w window) ([]candidate, error) {
	rows, err := rn.cfg.Store.Query(ctx, q.SQL, bind(q.args, w, rn.cfg.Namespaces, nil)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []candidate
	for rows.Next() {
		var c candidate
		var phi, filled uint8
		dest := groupDest(q)
		if q.Rule.Kind == rules.Anomaly {
			dest = append(dest, &c.sum, &c.sq, &filled)
		}
		dest = append(dest, &c.n, &c.value, &phi, &c.at)
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		c.groupRow = readGroup(dest[:len(q.groups)])
		c.phi, c.filled = phi != 0, filled != 0
		out = append(out, c)
	}
	return out, rows.Err()
}

// anomalies keeps the candidates that fire as the detector's anomaly rules
// do (detector/anomaly.go): the current value is at least min and above
// mean + z·stddev of the baseline steps (population stddev, steps without
// events counting as 0), and the group's history covers the baseline.
func (rn *Runner) anomalies(ctx context.Context, q *Query, w window, cands []candidate) ([]candidate, error) {
	spec := q.Rule.Anomaly
	n := float64(w.steps)
	var unfilled []candidate
	for i := range cands {
		c := &cands[i]
		mean := c.sum / n
		variance := c.sq/n - mean*mean
		if variance < 0 {
			variance = 0
		}
		c.bound = mean + spec.Z*math.Sqrt(variance)
		if c.value >= spec.Min && c.value > c.bound && !c.filled {
			unfilled = append(unfilled, *c)
		}
	}
	var seen map[string]bool
	if len(unfilled) > 0 {
		var err error
		if seen, err = rn.withHistory(ctx, q, w, unfilled); err != nil {
			return nil, err
		}
	}
	kept := cands[:0]
	for _, c := range cands {
		if c.value >= spec.Min && c.value > c.bound && (c.filled || seen[c.key()]) {
			kept = append(kept, c)
		}
	}
	return kept, nil
}

// withHistory returns which of cands (by key) have matching events before
// the baseline.
func (rn *Runner) withHistory(ctx context.Context, q *Query, w window, cands []candidate) (map[string]bool, error) {
	rows, err := rn.cfg.Store.Query(ctx, q.prior, bind(q.priorArgs, w, rn.cfg.Namespaces, groupArrays(q, cands))...)
	if err != nil {
		return nil, fmt.Errorf("baseline history: %w", err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		dest := groupDest(q)
		if len(dest) == 0 {
			dest = []any{new(uint8)} // SELECT 1
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("baseline history: %w", err)
		}
		seen[readGroup(dest[:len(q.groups)]).key()] = true
	}
	return seen, rows.Err()
}

// samples returns the sample ids of the groups that fire, by key.
func (rn *Runner) samples(ctx context.Context, q *Query, w window, fire []candidate) (map[string][]string, error) {
	rows, err := rn.cfg.Store.Query(ctx, q.samples, bind(q.samplesArgs, w, rn.cfg.Namespaces, groupArrays(q, fire))...)
	if err != nil {
		return nil, fmt.Errorf("samples: %w", err)
	}
	defer rows.Close()
	out := make(map[string][]string, len(fire))
	for rows.Next() {
		var ids []string
		dest := append(groupDest(q), &ids)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("samples: %w", err)
		}
		out[readGroup(dest[:len(q.groups)]).key()] = ids
	}
	return out, rows.Err()
}

// alert builds the alert of a candidate as the detector's windowed
// evaluator does.
func (rn *Runner) alert(q *Query, w window, c candidate) *detector.Alert {
	r := q.Rule
	a := detector.NewAlert(r, rn.cfg.Policy, c.at, c.phi)
	a.Value, a.Threshold, a.WindowStart, a.WindowEnd = c.value, r.Threshold.Text, w.start, w.end
	if r.Kind == rules.Anomaly {
		a.Threshold = detector.AnomalyThreshold(c.bound)
	}
	a.Group = make([]detector.GroupValue, len(q.groups))
	for i, g := range q.groups {
		a.Group[i] = detector.GroupValue{Field: g.field, Value: c.values[i]}
	}
	return a
}

// groupJSON is the alert's "group" object as the alerts table stores it
// (group_json), the key of a group's firings across restarts.
func groupJSON(a *detector.Alert) string {
	return string(a.AppendGroupJSON(nil))
}

// restore reads the rule's firings since from back from the alerts table,
// so that a restarted Runner keeps the cooldowns in force.
func (rn *Runner) restore(ctx context.Context, q *Query, fl *fireLog, from int64) error {
	rows, err := rn.cfg.Store.Query(ctx, "SELECT group_json, toUnixTimestamp64Nano(max(at)) FROM "+q.db+".alerts"+
		" WHERE rule = ? AND at >= fromUnixTimestamp64Nano(toInt64(?), 'UTC') GROUP BY group_json", q.Rule.ID, from)
	if err != nil {
		return fmt.Errorf("read last firings: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var group string
		var at int64
		if err := rows.Scan(&group, &at); err != nil {
			return fmt.Errorf("read last firings: %w", err)
		}
		if at > fl.last[group] {
			fl.last[group] = at
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read last firings: %w", err)
	}
	return nil
}

// prune forgets firings before from, which can no longer hold a group
// back, and past max entries the oldest ones.
func (fl *fireLog) prune(from int64, max int) {
	for k, at := range fl.last {
		if at < from {
			delete(fl.last, k)
		}
	}
	if len(fl.last) <= max {
		return
	}
	type entry struct {
		key string
		at  int64
	}
	all := make([]entry, 0, len(fl.last))
	for k, at := range fl.last {
		all = append(all, entry{k, at})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at < all[j].at })
	for _, e := range all[:len(all)-max] {
		delete(fl.last, e.key)
	}
}
