package longrules

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

// Query is one long rule compiled to ClickHouse SQL. It is immutable and
// safe to share.
type Query struct {
	Rule *rules.Rule
	// SQL evaluates the rule for one evaluation time: one row per group
	// that may fire. Its `?` placeholders take Args.
	SQL   string
	args  []any // static values and slot placeholders, in text order
	table string
	// groups are the group_by fields with the SQL reading them.
	groups []groupCol
	// where is the rule's filter (nil: none).
	where *sqlExpr
	db    string
	// prior (anomaly rules) finds which candidate groups have matching
	// events before the baseline: the baseline has filled for them.
	prior     string
	priorArgs []any
	// samples reads the evidence of the groups that fire.
	samples     string
	samplesArgs []any
}

type groupCol struct {
	field *event.Field
	sql   string
	k     kind
}

// slot is a placeholder whose value is known only at evaluation time.
type slot uint8

const (
	slotStart     slot = iota + 1 // window start, Unix ns
	slotEnd                       // window end (exclusive), Unix ns
	slotBaseStart                 // anomaly baseline start, Unix ns
	slotBaseEnd                   // anomaly baseline end (exclusive), Unix ns
	slotNSKeys                    // namespace table: names
	slotNSValues                  // namespace table: classifications
)

// groupSlot is a placeholder for the values of group field i of the groups
// a follow-up query (samples, anomaly history) is about, as an array.
type groupSlot int

// aliasClass names the event's classification after the namespace lookup.
// Every alias starts with vigil_: an alias named like a column would shadow
// the column in WHERE.
const aliasClass = "vigil_dc"

// ratioArg takes EXPR out of "ratio(EXPR)": Aggregate keeps the compiled
// predicate, whose tree is private, and the text as written.
var ratioArg = regexp.MustCompile(`^\s*ratio\s*\((.*)\)\s*$`)

// CompileAll compiles every rule and reports every failure at once.
func CompileAll(rs []*rules.Rule, db string) ([]*Query, error) {
	qs := make([]*Query, 0, len(rs))
	var errs []error
	for _, r := range rs {
		q, err := Compile(r, db)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		qs = append(qs, q)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return qs, nil
}

// Compile translates a threshold or anomaly rule into the query that
// evaluates it over db's event table of its source. A construct of the
// rule's where or ratio() expression that ClickHouse cannot evaluate as the
// detector would is an *Error naming it.
func Compile(r *rules.Rule, db string) (*Query, error) {
	fail := func(part, construct string) error {
		return &Error{File: r.File, Line: r.Line, Rule: r.ID, Part: part, Construct: construct}
	}
	switch {
	case r.Kind != rules.Threshold && r.Kind != rules.Anomaly:
		return nil, &Error{File: r.File, Line: r.Line, Rule: r.ID, Part: "kind",
			Msg: r.Kind.String() + " rules are evaluated in memory, not in ClickHouse"}
	case r.Window <= 0 || (r.Kind == rules.Anomaly && r.Anomaly == nil):
		return nil, &Error{File: r.File, Line: r.Line, Rule: r.ID, Part: "kind", Msg: "the rule is incomplete (no window or anomaly spec)"}
	case !dbName.MatchString(db):
		return nil, fmt.Errorf("longrules: database name %q: use letters, digits and underscores", db)
	}
	q := &Query{Rule: r, db: db}
	switch r.Source {
	case event.Requests:
		q.table = "request_events"
	case event.Audit:
		q.table = "audit_events"
	default:
		return nil, &Error{File: r.File, Line: r.Line, Rule: r.ID, Part: "source", Msg: "unknown source " + r.Source.String()}
	}
	for _, f := range r.GroupBy {
		text, k := column(f)
		q.groups = append(q.groups, groupCol{field: f, sql: text, k: k})
	}
	if strings.TrimSpace(r.WhereText) != "" {
		w, err := translate(r.WhereText, r.Source)
		if err != nil {
			return nil, fail("where", construct(err))
		}
		q.where = &w
	}
	value, err := aggregate(r)
	if err != nil {
		return nil, fail("aggregate", construct(err))
	}
	if r.Kind == rules.Threshold {
		q.thresholdSQL(value)
	} else {
		q.anomalySQL(value)
	}
	return q, nil
}

var dbName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func construct(err error) string {
	var u *unsupportedError
	if errors.As(err, &u) {
		return u.construct
	}
	return err.Error()
}

// aggregate is the SQL of the rule's aggregate over a group's events, as
// Float64.
func aggregate(r *rules.Rule) (sqlExpr, error) {
	switch r.Aggregate.Op {
	case rules.Count:
		return sqlExpr{text: "toFloat64(count())"}, nil
	case rules.Sum:
		text, _ := column(r.Aggregate.Field)
		return sqlExpr{text: "toFloat64(sum(" + text + "))"}, nil
	case rules.Distinct:
		text, k := column(r.Aggregate.Field)
		if k == kString { // an absent string field is no value (the detector's rule)
			return sqlExpr{text: "toFloat64(uniqExactIf(" + text + ", " + text + " != ''))"}, nil
		}
		return sqlExpr{text: "toFloat64(uniqExact(" + text + "))"}, nil
	case rules.Ratio:
		m := ratioArg.FindStringSubmatch(r.Aggregate.Text)
		if m == nil {
			return sqlExpr{}, unsupported("aggregate %q", r.Aggregate.Text)
		}
		cond, err := translate(m[1], r.Source)
		if err != nil {
			return sqlExpr{}, err
		}
		return cat(kFloat, "(countIf(", cond, ") / count())"), nil
	}
	return sqlExpr{}, unsupported("aggregate %q", r.Aggregate.Text)
}

// sqlBuilder assembles a query and its placeholder values in text order.
type sqlBuilder struct {
	b    strings.Builder
	args []any
}

func (s *sqlBuilder) add(parts ...any) {
	for _, p := range parts {
		switch p := p.(type) {
		case string:
			s.b.WriteString(p)
		case sqlExpr:
			s.b.WriteString(p.text)
			s.args = append(s.args, p.args...)
		case slot:
			if p == slotNSKeys || p == slotNSValues {
				s.b.WriteString("?")
			} else {
				s.b.WriteString("toInt64(?)")
			}
			s.args = append(s.args, p)
		case groupSlot:
			s.b.WriteString("?")
			s.args = append(s.args, p)
		default:
			panic(fmt.Sprintf("longrules: sqlBuilder.add of %T", p))
		}
	}
}

// with writes the WITH clause every query starts with: the window bounds
// and the event's classification. The daemon classifies events that carry
// none through its namespace table before rules see them, but stores them
// as received, so the same lookup is done here.
func (s *sqlBuilder) with(anomaly bool) {
	s.add("WITH\n\tfromUnixTimestamp64Nano(", slotStart, ", 'UTC') AS vigil_start,\n",
		"\tfromUnixTimestamp64Nano(", slotEnd, ", 'UTC') AS vigil_end,\n")
	if anomaly {
		s.add("\tfromUnixTimestamp64Nano(", slotBaseStart, ", 'UTC') AS vigil_base_start,\n",
			"\tfromUnixTimestamp64Nano(", slotBaseEnd, ", 'UTC') AS vigil_base_end,\n")
	}
	s.classification()
}

// classification defines the alias through which the event's
// data_classification is read.
func (s *sqlBuilder) classification() {
	s.add("\tif(data_classification = '' AND namespace != '', transform(namespace, CAST(", slotNSKeys,
		" AS Array(String)), CAST(", slotNSValues, " AS Array(String)), ''), data_classification) AS "+aliasClass+"\n")
}

func (q *Query) idColumn() string {
	if q.Rule.Source == event.Audit {
		return "event_id"
	}
	return "request_id"
}

// groupSelect writes the group columns as vigil_g0, vigil_g1, ... and
// returns the list of aliases.
func (q *Query) groupSelect(s *sqlBuilder) []string {
	aliases := make([]string, len(q.groups))
	for i, g := range q.groups {
		aliases[i] = "vigil_g" + strconv.Itoa(i)
		s.add("\t" + g.sql + " AS " + aliases[i] + ",\n")
	}
	return aliases
}

func (q *Query) whereClause(s *sqlBuilder) {
	if q.where != nil {
		s.add(" AND ", *q.where)
	}
	// An event without a group value belongs to no group (the detector's rule).
	for _, g := range q.groups {
		if g.k == kString {
			s.add(" AND " + g.sql + " != ''")
		}
	}
}

var cmpSQL = map[rules.CmpOp]string{rules.GT: ">", rules.GE: ">=", rules.LT: "<", rules.LE: "<=", rules.EQ: "="}

// samplesQuery reads the ids of the earliest events of the window, by
// (ts, id), for the groups that fire. It is a query of its own so that the
// main query keeps no per-group sample state: a week's window can hold
// millions of groups, few of which fire.
func (q *Query) samplesQuery() {
	var s sqlBuilder
	s.with(false)
	s.add("SELECT\n")
	q.groupSelect(&s)
	s.add("\tarrayMap(s -> s.2, groupArraySorted("+strconv.Itoa(detector.MaxSamples)+")((ts, "+q.idColumn()+"))) AS vigil_samples\n",
		"FROM "+q.db+"."+q.table+" FINAL\n",
		"WHERE ts >= vigil_start AND ts < vigil_end")
	q.whereClause(&s)
	q.groupFilter(&s)
	if len(q.groups) > 0 {
		var aliases []string
		for i := range q.groups {
			aliases = append(aliases, "vigil_g"+strconv.Itoa(i))
		}
		s.add("\nGROUP BY " + strings.Join(aliases, ", "))
	}
	q.samples, q.samplesArgs = s.b.String(), s.args
}

// groupFilter restricts a query to the groups given as one array per group
// field (groupSlot i); primary key columns among them narrow the read.
func (q *Query) groupFilter(s *sqlBuilder) {
	if len(q.groups) == 0 {
		return
	}
	cols := make([]string, len(q.groups))
	for i, g := range q.groups {
		cols[i] = g.sql
	}
	// Typed arrays: the driver writes [200] for an []int64, which
	// ClickHouse reads as Array(UInt8) and refuses to compare with Int64.
	array := func(i int) []any {
		t := "String"
		switch q.groups[i].k {
		case kInt:
			t = "Int64"
		case kFloat:
			t = "Float64"
		}
		return []any{"CAST(", groupSlot(i), " AS Array(" + t + "))"}
	}
	if len(cols) == 1 {
		s.add(" AND " + cols[0] + " IN (SELECT arrayJoin(")
		s.add(array(0)...)
		s.add("))")
		return
	}
	s.add(" AND (" + strings.Join(cols, ", ") + ") IN (SELECT arrayJoin(arrayZip(")
	for i := range cols {
		if i > 0 {
			s.add(", ")
		}
		s.add(array(i)...)
	}
	s.add(")))")
}

// minEvents is the least number of events in the window that may fire: a
// group exists only once it has an event, and min_events may ask for more.
func (q *Query) minEvents() string {
	return strconv.Itoa(max(1, q.Rule.MinEvents))
}

// thresholdSQL: one aggregation over the window, groups filtered by the
// threshold. FINAL collapses records stored twice (Kafka redelivery) so
// that every aggregate counts an event once.
func (q *Query) thresholdSQL(value sqlExpr) {
	r := q.Rule
	var s sqlBuilder
	s.with(false)
	s.add("SELECT\n")
	groups := q.groupSelect(&s)
	s.add("\tcount() AS vigil_n,\n",
		"\t", value, " AS vigil_value,\n",
		"\tmax("+aliasClass+" = 'PHI') AS vigil_phi,\n",
		"\ttoUnixTimestamp64Nano(max(ts)) AS vigil_at\n",
		"FROM "+q.db+"."+q.table+" FINAL\n",
		"WHERE ts >= vigil_start AND ts < vigil_end")
	q.whereClause(&s)
	s.add("\n")
	if len(groups) > 0 {
		s.add("GROUP BY " + strings.Join(groups, ", ") + "\n")
	}
	s.add("HAVING vigil_n >= " + q.minEvents() + " AND vigil_value " + cmpSQL[r.Threshold.Op] + " ")
	s.add(param(r.Threshold.Value, kFloat), "\n")
	s.add("ORDER BY " + strings.Join(append([]string{"vigil_at"}, groups...), ", "))
	q.SQL, q.args = s.b.String(), s.args
	q.samplesQuery()
}

// anomalySQL: the inner query aggregates each group per step: -1 for the
// current window, 0..k-1 for the baseline steps (window-sized, aligned to
// multiples of the window as in the detector). The outer query folds the
// baseline into a sum and a sum of squares (steps without events add 0,
// as the detector counts them: zero) and keeps the groups whose current
// value reaches min; the bound itself is computed in Go.
func (q *Query) anomalySQL(value sqlExpr) {
	var s sqlBuilder
	s.add("SELECT\n")
	var groups []string
	for i := range q.groups {
		groups = append(groups, "vigil_g"+strconv.Itoa(i))
		s.add("\t" + groups[i] + ",\n")
	}
	s.add("\tsumIf(vigil_v, vigil_step >= 0) AS vigil_sum,\n",
		"\tsumIf(vigil_v * vigil_v, vigil_step >= 0) AS vigil_sq,\n",
		"\ttoUInt8(countIf(vigil_step = 0) > 0) AS vigil_filled,\n",
		"\tanyIf(vigil_cn, vigil_step = -1) AS vigil_n,\n",
		"\tanyIf(vigil_v, vigil_step = -1) AS vigil_value,\n",
		"\tanyIf(vigil_p, vigil_step = -1) AS vigil_phi,\n",
		"\tanyIf(vigil_t, vigil_step = -1) AS vigil_at\n",
		"FROM (\n")
	s.with(true)
	s.add("SELECT\n")
	q.groupSelect(&s)
	step := strconv.FormatInt(int64(q.Rule.Window), 10)
	s.add("\tif(ts >= vigil_start, -1, intDiv(toUnixTimestamp64Nano(ts) - toUnixTimestamp64Nano(vigil_base_start), "+step+")) AS vigil_step,\n",
		"\tcount() AS vigil_cn,\n",
		"\t", value, " AS vigil_v,\n",
		"\tmax("+aliasClass+" = 'PHI') AS vigil_p,\n",
		"\ttoUnixTimestamp64Nano(max(ts)) AS vigil_t\n",
		"FROM "+q.db+"."+q.table+" FINAL\n",
		"WHERE ((ts >= vigil_base_start AND ts < vigil_base_end) OR (ts >= vigil_start AND ts < vigil_end))")
	q.whereClause(&s)
	s.add("\nGROUP BY " + strings.Join(append(append([]string(nil), groups...), "vigil_step"), ", ") + "\n)\n")
	if len(groups) > 0 {
		s.add("GROUP BY " + strings.Join(groups, ", ") + "\n")
	}
	s.add("HAVING countIf(vigil_step = -1) > 0 AND vigil_n >= "+q.minEvents()+" AND vigil_value >= ",
		param(q.Rule.Anomaly.Min, kFloat), "\n")
	s.add("ORDER BY " + strings.Join(append([]string{"vigil_at"}, groups...), ", "))
	q.SQL, q.args = s.b.String(), s.args
	q.priorSQL()
	q.samplesQuery()
}

// priorSQL is the anomaly history check, run only for groups that would
// fire but had no event in the baseline's first step: the detector fires
// only once a group's history covers the whole baseline. It needs no FINAL
// (it asks whether events exist) and reads only the candidate groups.
func (q *Query) priorSQL() {
	var s sqlBuilder
	s.add("WITH\n\tfromUnixTimestamp64Nano(", slotBaseStart, ", 'UTC') AS vigil_base_start,\n")
	s.classification()
	if len(q.groups) == 0 {
		s.add("SELECT 1\nFROM " + q.db + "." + q.table + "\nWHERE ts < vigil_base_start")
		q.whereClause(&s)
		s.add("\nLIMIT 1")
		q.prior, q.priorArgs = s.b.String(), s.args
		return
	}
	s.add("SELECT DISTINCT\n")
	for i, g := range q.groups {
		sep := ",\n"
		if i == len(q.groups)-1 {
			sep = "\n"
		}
		s.add("\t" + g.sql + " AS vigil_g" + strconv.Itoa(i) + sep)
	}
	s.add("FROM " + q.db + "." + q.table + "\nWHERE ts < vigil_base_start")
	q.whereClause(&s)
	q.groupFilter(&s)
	q.prior, q.priorArgs = s.b.String(), s.args
}

// window is one evaluation's time geometry, Unix ns.
type window struct {
	start, end         int64 // the rule's window: [start, end)
	baseStart, baseEnd int64 // anomaly baseline: [baseStart, baseEnd)
	steps              int   // anomaly baseline steps
}

// windowAt aligns the window ending with the event at watermark t exactly
// as the detector aligns an alert's window (detector.AlertWindow). An anomaly baseline is
// the whole window-sized steps (aligned to multiples of the window) that
// end at or before the window's start.
func (q *Query) windowAt(t int64) window {
	r := q.Rule
	var w window
	w.start, w.end = detector.AlertWindow(r.Window, t)
	if r.Kind == rules.Anomaly {
		stepLen := int64(r.Window)
		w.steps = max(1, int(r.Anomaly.Baseline/r.Window))
		last := floorDiv(w.start, stepLen) - 1
		first := last - int64(w.steps) + 1
		w.baseStart, w.baseEnd = first*stepLen, (last+1)*stepLen
	}
	return w
}

// Args returns the values of SQL's placeholders for an evaluation at
// watermark t (Unix ns) with the given namespace classifications.
func (q *Query) Args(t int64, namespaces map[string]string) []any {
	return bind(q.args, q.windowAt(t), namespaces, nil)
}

// bind fills a query's placeholders: static values as they are, slots with
// this evaluation's values.
func bind(args []any, w window, namespaces map[string]string, groups []any) []any {
	keys := make([]string, 0, len(namespaces))
	vals := make([]string, 0, len(namespaces))
	for k, v := range namespaces {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	out := make([]any, len(args))
	for i, a := range args {
		if g, ok := a.(groupSlot); ok {
			out[i] = groups[g]
			continue
		}
		s, ok := a.(slot)
		if !ok {
			out[i] = a
			continue
		}
		switch s {
		case slotStart:
			out[i] = w.start
		case slotEnd:
			out[i] = w.end
		case slotBaseStart:
			out[i] = w.baseStart
		case slotBaseEnd:
			out[i] = w.baseEnd
		case slotNSKeys:
			out[i] = keys
		case slotNSValues:
			out[i] = vals
		}
	}
	return out
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
