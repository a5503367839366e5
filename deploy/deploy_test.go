package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	dashboardFile = "grafana/vigil.json"
	alertsFile    = "prometheus/vigil-alerts.yaml"
	alertTestFile = "prometheus/vigil-alerts.test.yaml"
	runbookFile   = "prometheus/RUNBOOK.md"
	runbookBase   = "https://github.com/vigil-sec/vigil/blob/main/docs/operations.md"
)

// exported is every metric Vigil exports, by the name it is registered
// under. It is a copy of the daemon's metric list: cmd/vigil's metrics test
// checks this same list against a running daemon's /metrics (and compares
// MetricNames with it), so a metric renamed there fails one of the two tests.
var exported = []string{
	"vigil_build_info",
	"vigil_ingest_records_consumed_total",
	"vigil_ingest_records_invalid_total",
	"vigil_ingest_partition_lag_records",
	"vigil_ingest_committed_offset",
	"vigil_pipeline_batch_size_records",
	"vigil_pipeline_buffered_records",
	"vigil_pipeline_buffer_capacity_records",
	"vigil_clickhouse_insert_duration_seconds",
	"vigil_clickhouse_insert_errors_total",
	"vigil_clickhouse_up",
	"vigil_detector_events_total",
	"vigil_detector_evaluation_duration_seconds",
	"vigil_detector_groups",
	"vigil_detector_group_evictions_total",
	"vigil_detector_late_events_total",
	"vigil_detector_alerts_total",
	"vigil_detector_shadow_alerts_total",
	"vigil_responders_queue_length",
	"vigil_responders_queue_dropped_total",
	"vigil_responders_incidents_opened_total",
	"vigil_responders_incidents_open",
	"vigil_responders_actions_total",
	"vigil_responders_guard_skips_total",
	"vigil_responders_breaker_open",
	"vigil_responders_paused",
	"vigil_responders_blocks_active",
	"vigil_responders_edge_items",
	"vigil_responders_leader",
	"vigil_responders_edge_drift_total",
	"vigil_responders_watch_active",
	"vigil_rules_loaded",
	"vigil_rules_reloads_total",
	"vigil_rules_last_reload_successful",
	"vigil_rules_last_reload_success_timestamp_seconds",
}

// histograms are the exported histograms: each is scraped as NAME_bucket
// (with an le label), NAME_sum and NAME_count, never as NAME itself.
var histograms = []string{
	"vigil_pipeline_batch_size_records",
	"vigil_clickhouse_insert_duration_seconds",
	"vigil_detector_evaluation_duration_seconds",
}

// metricLabels are the labels of each exported metric; job and instance are
// added by the scrape (scrapeLabels). Metrics without labels are absent.
var metricLabels = map[string][]string{
	"vigil_build_info":                         {"version", "goversion"},
	"vigil_ingest_records_consumed_total":      {"source"},
	"vigil_ingest_records_invalid_total":       {"source", "reason"},
	"vigil_ingest_partition_lag_records":       {"topic", "partition"},
	"vigil_ingest_committed_offset":            {"topic", "partition"},
	"vigil_clickhouse_insert_duration_seconds": {"table"},
	"vigil_clickhouse_insert_errors_total":     {"table", "kind"},
	"vigil_detector_events_total":              {"source"},
	"vigil_detector_groups":                    {"rule"},
	"vigil_detector_group_evictions_total":     {"rule"},
	"vigil_detector_late_events_total":         {"rule"},
	"vigil_detector_alerts_total":              {"rule", "severity"},
	"vigil_detector_shadow_alerts_total":       {"rule", "severity"},
	"vigil_responders_incidents_opened_total":  {"severity"},
	"vigil_responders_actions_total":           {"kind", "outcome"},
	"vigil_responders_guard_skips_total":       {"guard"},
	"vigil_responders_watch_active":            {"kind", "target"},
	"vigil_rules_reloads_total":                {"result"},
}

// Label values that are a fixed set, per metric and label: a matcher on one
// of these labels must name a value from the set.
var (
	sources    = []string{"requests", "audit"}
	severities = []string{"critical", "high", "medium", "low"}
)

var labelValues = map[string]map[string][]string{
	"vigil_ingest_records_consumed_total": {"source": sources},
	"vigil_ingest_records_invalid_total": {
		"source": sources,
		// The daemon's reason codes (metrics.ReasonCodes, docs/operations.md).
		"reason": {"malformed_json", "missing_field", "duplicate_field", "bad_value", "too_large", "future", "clickhouse_rejected"},
	},
	"vigil_clickhouse_insert_errors_total":    {"kind": {"retryable", "bad_data"}},
	"vigil_detector_events_total":             {"source": sources},
	"vigil_detector_alerts_total":             {"severity": severities},
	"vigil_detector_shadow_alerts_total":      {"severity": severities},
	"vigil_responders_incidents_opened_total": {"severity": severities},
	"vigil_responders_actions_total": {
		"kind": {"open_incident", "revoke_key", "block_ip", "watch", "isolate_namespace",
			"unblock_ip", "restore_key", "lift_isolation", "guard_alert"},
		"outcome": {"planned", "dry_run", "skipped", "succeeded", "retried", "failed", "raised"},
	},
	"vigil_responders_guard_skips_total": {"guard": {"paused", "not_configured", "invalid_target",
		"allowlist", "admin_key", "in_force", "incident_cap", "rate_cap", "breaker", "no_target", "unknown_org"}},
	"vigil_responders_watch_active": {"kind": {"key", "namespace"}},
	"vigil_rules_reloads_total":     {"result": {"success", "failure"}},
}

// scrapeLabels are added to every series by Prometheus.
var scrapeLabels = []string{"job", "instance"}

// requiredAlerts must exist in the alerting rules.
var requiredAlerts = []string{
	"VigilConsumerLagGrowing",
	"VigilClickHouseInsertFailures",
	"VigilClickHouseBadData",
	"VigilDeadLettersSpiking",
	"VigilBreakerOpen",
	"VigilRespondersPaused",
	"VigilReloadFailed",
	"VigilNoEvents",
	"VigilResponderQueueDropping",
	"VigilActionsFailing",
	"VigilEdgeDrift",
	"VigilDown",
}

var severityLevels = []string{"critical", "warning", "info"}

// series is every series name Vigil's scrape can hold, with the labels it
// can carry (scrape labels included).
func series() map[string][]string {
	s := map[string][]string{}
	for _, m := range exported {
		labels := append(slices.Clone(metricLabels[m]), scrapeLabels...)
		if !slices.Contains(histograms, m) {
			s[m] = labels
			continue
		}
		s[m+"_bucket"] = append(slices.Clone(labels), "le")
		s[m+"_sum"] = labels
		s[m+"_count"] = labels
	}
	return s
}

// baseName maps a series name to the exported metric it belongs to.
func baseName(series string) string {
	for _, h := range histograms {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if series == h+suffix {
				return h
			}
		}
	}
	return series
}

func TestExportedTables(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range exported {
		if !regexp.MustCompile(`^vigil_[a-z0-9_]+$`).MatchString(m) || seen[m] {
			t.Errorf("exported: %q is not a vigil_ name or is listed twice", m)
		}
		seen[m] = true
	}
	for _, h := range histograms {
		if !seen[h] {
			t.Errorf("histograms: %s is not in exported", h)
		}
	}
	for m := range metricLabels {
		if !seen[m] {
			t.Errorf("metricLabels: %s is not in exported", m)
		}
	}
	for m, byLabel := range labelValues {
		for l := range byLabel {
			if !slices.Contains(metricLabels[m], l) {
				t.Errorf("labelValues: %s has no label %s", m, l)
			}
		}
	}
}

// --- A small PromQL scanner -------------------------------------------------
//
// Enough of PromQL to find, in the expressions these assets use, the metric
// names (with their label matchers) and the label lists of by/without/on/
// ignoring/group_left/group_right. It is not a validator: promtool parses
// everything (TestPromtool).

type matcher struct{ label, op, value string }

type selector struct {
	name     string
	matchers []matcher
}

type scanned struct {
	selectors []selector
	grouping  []string // every label named in a grouping or matching clause
}

var (
	aggregators = []string{"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
		"count_values", "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
	groupingKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right"}
	keywords         = []string{"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
)

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isIdent(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }

func scanPromQL(expr string) (scanned, error) {
	var out scanned
	i := 0
	skipSpace := func() {
		for i < len(expr) && strings.ContainsRune(" \t\r\n", rune(expr[i])) {
			i++
		}
	}
	ident := func() string {
		start := i
		for i < len(expr) && isIdent(expr[i]) {
			i++
		}
		return expr[start:i]
	}
	str := func() (string, error) {
		q := expr[i]
		i++
		var b strings.Builder
		for i < len(expr) && expr[i] != q {
			if expr[i] == '\\' && q != '`' && i+1 < len(expr) {
				i++
			}
			b.WriteByte(expr[i])
			i++
		}
		if i >= len(expr) {
			return "", fmt.Errorf("unterminated string in %q", expr)
		}
		i++
		return b.String(), nil
	}
	matchers := func() ([]matcher, error) { // at '{'
		i++
		var ms []matcher
		for {
			skipSpace()
			if i < len(expr) && expr[i] == '}' {
				i++
				return ms, nil
			}
			if i >= len(expr) || !isIdentStart(expr[i]) {
				return nil, fmt.Errorf("bad label matcher at %d in %q", i, expr)
			}
			m := matcher{label: ident()}
			skipSpace()
			for _, op := range []string{"=~", "!~", "!=", "="} {
				if strings.HasPrefix(expr[i:], op) {
					m.op = op
					i += len(op)
					break
				}
			}
			skipSpace()
			if m.op == "" || i >= len(expr) || !strings.ContainsRune("\"'`", rune(expr[i])) {
				return nil, fmt.Errorf("bad label matcher %q at %d in %q", m.label, i, expr)
			}
			v, err := str()
			if err != nil {
				return nil, err
			}
			m.value = v
			ms = append(ms, m)
			skipSpace()
			if i < len(expr) && expr[i] == ',' {
				i++
			}
		}
	}
	labelList := func() error { // at '('
		i++
		for {
			skipSpace()
			if i < len(expr) && expr[i] == ')' {
				i++
				return nil
			}
			if i >= len(expr) || !isIdentStart(expr[i]) {
				return fmt.Errorf("bad label list at %d in %q", i, expr)
			}
			out.grouping = append(out.grouping, ident())
			skipSpace()
			if i < len(expr) && expr[i] == ',' {
				i++
			}
		}
	}
	for i < len(expr) {
		c := expr[i]
		switch {
		case strings.ContainsRune(" \t\r\n", rune(c)):
			i++
		case c == '#': // comment to the end of the line
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case strings.ContainsRune("\"'`", rune(c)):
			if _, err := str(); err != nil {
				return out, err
			}
		case c == '[': // range or subquery: durations only
			end := strings.IndexByte(expr[i:], ']')
			if end < 0 {
				return out, fmt.Errorf("unterminated [ in %q", expr)
			}
			i += end + 1
		case c == '{': // a selector without a name
			ms, err := matchers()
			if err != nil {
				return out, err
			}
			out.selectors = append(out.selectors, selector{matchers: ms})
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(expr) && expr[i+1] >= '0' && expr[i+1] <= '9':
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.') { // numbers and durations
				i++
			}
		case isIdentStart(c):
			name := ident()
			skipSpace()
			next := byte(0)
			if i < len(expr) {
				next = expr[i]
			}
			lower := strings.ToLower(name)
			switch {
			case slices.Contains(groupingKeywords, lower):
				if next == '(' {
					if err := labelList(); err != nil {
						return out, err
					}
				}
			case slices.Contains(keywords, lower), slices.Contains(aggregators, lower), next == '(':
				// an operator, an aggregation or a function: not a metric
			default:
				sel := selector{name: name}
				if next == '{' {
					ms, err := matchers()
					if err != nil {
						return out, err
					}
					sel.matchers = ms
				}
				out.selectors = append(out.selectors, sel)
			}
		default:
			i++
		}
	}
	return out, nil
}

func TestScanPromQL(t *testing.T) {
	got, err := scanPromQL(`histogram_quantile(0.99, sum by (table, le) (rate(vigil_x_bucket{job=~"$job", kind="a|b"}[5m]))) / on (job) group_left (instance) max(up) > 0.5 and ignoring(x) vigil_y offset 5m`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range got.selectors {
		names = append(names, s.name)
	}
	if !slices.Equal(names, []string{"vigil_x_bucket", "up", "vigil_y"}) {
		t.Errorf("selectors %q", names)
	}
	if !slices.Equal(got.grouping, []string{"table", "le", "job", "instance", "x"}) {
		t.Errorf("grouping %q", got.grouping)
	}
	if m := got.selectors[0].matchers; len(m) != 2 || m[1] != (matcher{"kind", "=", "a|b"}) {
		t.Errorf("matchers %+v", m)
	}
}

// checkExpr checks that expr names only known series (vigil series and the
// extra names allowed), with labels they carry and label values from their
// fixed sets, and groups only by labels of the series it names. It returns
// the labels those series can carry.
func checkExpr(expr string, extra map[string][]string) (labels []string, problems []string) {
	all := series()
	for name, l := range extra {
		all[name] = l
	}
	sc, err := scanPromQL(expr)
	if err != nil {
		return nil, []string{err.Error()}
	}
	if len(sc.selectors) == 0 {
		problems = append(problems, "names no metric")
	}
	avail := map[string]bool{}
	for _, sel := range sc.selectors {
		have, ok := all[sel.name]
		if !ok {
			problems = append(problems, fmt.Sprintf("names %q, which Vigil does not export (allowed: the exported table, histograms as _bucket/_sum/_count)", sel.name))
			continue
		}
		for _, l := range have {
			avail[l] = true
		}
		for _, m := range sel.matchers {
			if m.label == "__name__" {
				continue
			}
			if !slices.Contains(have, m.label) {
				problems = append(problems, fmt.Sprintf("%s has no label %q", sel.name, m.label))
				continue
			}
			fixed := labelValues[baseName(sel.name)][m.label]
			if fixed == nil || strings.HasPrefix(m.op, "!") {
				continue
			}
			values := []string{m.value}
			if m.op == "=~" {
				if !regexp.MustCompile(`^[a-z_]+(\|[a-z_]+)*$`).MatchString(m.value) {
					continue // a real regexp: not checked
				}
				values = strings.Split(m.value, "|")
			}
			for _, v := range values {
				if !slices.Contains(fixed, v) {
					problems = append(problems, fmt.Sprintf("%s{%s} has no value %q (values: %s)", sel.name, m.label, v, strings.Join(fixed, ", ")))
				}
			}
		}
	}
	for _, l := range sc.grouping {
		if !avail[l] {
			problems = append(problems, fmt.Sprintf("groups or matches by %q, a label none of its metrics has", l))
		}
	}
	for l := range avail {
		labels = append(labels, l)
	}
	sort.Strings(labels)
	return labels, problems
}

// --- The dashboard -------------------------------------------------------------

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type target struct {
	Expr         string      `json:"expr"`
	LegendFormat string      `json:"legendFormat"`
	RefID        string      `json:"refId"`
	Datasource   *datasource `json:"datasource"`
}

type panel struct {
	ID          int                      `json:"id"`
	Type        string                   `json:"type"`
	Title       string                   `json:"title"`
	Datasource  *datasource              `json:"datasource"`
	GridPos     struct{ H, W, X, Y int } `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []target `json:"targets"`
	Panels  []panel  `json:"panels"` // a collapsed row's panels
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	Definition string          `json:"definition"`
	Datasource *datasource     `json:"datasource"`
}

type dashboard struct {
	Title         string `json:"title"`
	UID           string `json:"uid"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) (dashboard, []panel) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var flat []panel
	for _, p := range d.Panels {
		flat = append(flat, p)
		flat = append(flat, p.Panels...)
	}
	return d, flat
}

const dsVar = "${datasource}"

func TestDashboard(t *testing.T) {
	d, panels := loadDashboard(t)
	if d.Title != "Vigil — overview" || d.UID == "" || d.SchemaVersion < 36 {
		t.Errorf("title %q, uid %q, schemaVersion %d: want \"Vigil — overview\", a uid, schemaVersion ≥ 36", d.Title, d.UID, d.SchemaVersion)
	}
	vars := map[string]variable{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v
	}
	if v := vars["datasource"]; v.Type != "datasource" || string(v.Query) != `"prometheus"` {
		t.Errorf("want a datasource variable of type prometheus, got %+v", v)
	}
	for _, name := range []string{"job", "instance"} {
		v, ok := vars[name]
		if !ok || v.Type != "query" || v.Datasource == nil || v.Datasource.UID != dsVar {
			t.Errorf("want a %s query variable on %s, got %+v", name, dsVar, v)
			continue
		}
		for _, m := range metricNameRE.FindAllString(v.Definition+string(v.Query), -1) {
			if _, ok := series()[m]; !ok {
				t.Errorf("variable %s names %s, which Vigil does not export", name, m)
			}
		}
	}

	ids := map[int]string{}
	occupied := map[[2]int]string{}
	for _, p := range panels {
		name := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID <= 0 || ids[p.ID] != "" {
			t.Errorf("%s: id missing or already used by %s", name, ids[p.ID])
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24 columns", name, g)
		}
	cells:
		for y := g.Y; y < g.Y+g.H; y++ {
			for x := g.X; x < g.X+g.W; x++ {
				if other, ok := occupied[[2]int{x, y}]; ok {
					t.Errorf("%s overlaps %s at x=%d y=%d", name, other, x, y)
					break cells
				}
				occupied[[2]int{x, y}] = name
			}
		}
		if p.Type == "row" { // a row holds panels, not queries
			continue
		}
		if p.Title == "" {
			t.Errorf("%s: no title", name)
		}
		if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != dsVar {
			t.Errorf("%s: datasource %+v, want prometheus %s", name, p.Datasource, dsVar)
		}
		if !slices.Contains([]string{"ops", "s", "short", "percentunit"}, p.FieldConfig.Defaults.Unit) {
			t.Errorf("%s: unit %q, want ops, s, short or percentunit", name, p.FieldConfig.Defaults.Unit)
		}
		if len(p.Targets) == 0 {
			t.Errorf("%s: no target", name)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId %q missing or repeated", name, tg.RefID)
			}
			refs[tg.RefID] = true
			if tg.Datasource != nil && tg.Datasource.UID != dsVar {
				t.Errorf("%s %s: target datasource %+v, want %s", name, tg.RefID, tg.Datasource, dsVar)
			}
		}
	}
}

func TestDashboardQueries(t *testing.T) {
	_, panels := loadDashboard(t)
	used := map[string]bool{}
	for _, p := range panels {
		for _, tg := range p.Targets {
			t.Run(fmt.Sprintf("%d_%s", p.ID, tg.RefID), func(t *testing.T) {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Fatalf("panel %q: empty expr", p.Title)
				}
				labels, problems := checkExpr(tg.Expr, nil)
				for _, pr := range problems {
					t.Errorf("panel %q: %s\n%s", p.Title, pr, tg.Expr)
				}
				sc, _ := scanPromQL(tg.Expr)
				for _, sel := range sc.selectors {
					used[baseName(sel.name)] = true
					var filters []string
					for _, m := range sel.matchers {
						filters = append(filters, m.label+m.op+m.value)
					}
					for _, want := range []string{"job=~$job", "instance=~$instance"} {
						if !slices.Contains(filters, want) {
							t.Errorf("panel %q: %s is not filtered by %s", p.Title, sel.name, want)
						}
					}
				}
				for _, m := range regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`).FindAllStringSubmatch(tg.LegendFormat, -1) {
					if !slices.Contains(labels, m[1]) {
						t.Errorf("panel %q: legend %q uses label %s, which its series do not carry", p.Title, tg.LegendFormat, m[1])
					}
				}
			})
		}
	}
	// Every exported metric is on the dashboard.
	for _, m := range exported {
		if !used[m] {
			t.Errorf("no dashboard panel shows %s", m)
		}
	}
	// Breaker, kill switch and reload status are stat panels.
	for _, m := range []string{"vigil_responders_breaker_open", "vigil_responders_paused", "vigil_rules_last_reload_successful"} {
		found := false
		for _, p := range panels {
			for _, tg := range p.Targets {
				found = found || p.Type == "stat" && strings.Contains(tg.Expr, m)
			}
		}
		if !found {
			t.Errorf("no stat panel shows %s", m)
		}
	}
}

// --- The alerting rules --------------------------------------------------------

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

func loadAlerts(t *testing.T) []rule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var rules []rule
	for _, g := range f.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("%s: group %q has no name or no rule", alertsFile, g.Name)
		}
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rule", alertsFile)
	}
	return rules
}

var promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

// upSeries is the one non-Vigil series the alerts may use.
var upSeries = map[string][]string{"up": scrapeLabels}

func TestAlertRules(t *testing.T) {
	rules := loadAlerts(t)
	names := map[string]bool{}
	for _, r := range rules {
		t.Run(r.Alert, func(t *testing.T) {
			if r.Alert == "" || r.Record != "" {
				t.Fatalf("rule %q/%q: only alerting rules belong in %s", r.Alert, r.Record, alertsFile)
			}
			if names[r.Alert] || !regexp.MustCompile(`^Vigil[A-Z][A-Za-z]+$`).MatchString(r.Alert) {
				t.Errorf("alert name %q repeated or not VigilCamelCase", r.Alert)
			}
			names[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Error("no expr")
			}
			if !promDuration.MatchString(r.For) {
				t.Errorf("for %q: want a Prometheus duration", r.For)
			}
			if !slices.Contains(severityLevels, r.Labels["severity"]) {
				t.Errorf("labels.severity %q, want one of %v", r.Labels["severity"], severityLevels)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if strings.TrimSpace(r.Annotations[a]) == "" {
					t.Errorf("no %s annotation", a)
				}
			}
			if want := runbookBase + "#" + strings.ToLower(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("runbook_url %q, want %q", r.Annotations["runbook_url"], want)
			}
			labels, problems := checkExpr(r.Expr, upSeries)
			for _, p := range problems {
				t.Errorf("expr: %s\n%s", p, r.Expr)
			}
			if strings.Contains(r.Expr, "up{") && !strings.Contains(r.Expr, `up{job="vigil"}`) {
				t.Errorf("expr uses up without job=\"vigil\"")
			}
			for k, v := range r.Annotations {
				for _, m := range regexp.MustCompile(`\$labels\.(\w+)`).FindAllStringSubmatch(v, -1) {
					if !slices.Contains(labels, m[1]) {
						t.Errorf("annotation %s uses $labels.%s, which its series do not carry", k, m[1])
					}
				}
			}
		})
	}
	for _, a := range requiredAlerts {
		if !names[a] {
			t.Errorf("%s: no alert %s", alertsFile, a)
		}
	}

	// Every alert has a runbook section under the heading its anchor comes from.
	b, err := os.ReadFile(runbookFile)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^### (\S+)\s*$`).FindAllStringSubmatch(string(b), -1) {
		sections[m[1]] = true
		if !names[m[1]] {
			t.Errorf("%s: section %s is not an alert", runbookFile, m[1])
		}
	}
	for n := range names {
		if !sections[n] {
			t.Errorf("%s: no section \"### %s\" (anchor #%s)", runbookFile, n, strings.ToLower(n))
		}
	}
}

// --- The promtool unit tests ------------------------------------------------------

type unitTestFile struct {
	RuleFiles          []string `yaml:"rule_files"`
	EvaluationInterval string   `yaml:"evaluation_interval"`
	Tests              []struct {
		Interval    string `yaml:"interval"`
		InputSeries []struct {
			Series string `yaml:"series"`
			Values string `yaml:"values"`
		} `yaml:"input_series"`
		AlertRuleTest []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels      map[string]string `yaml:"exp_labels"`
				ExpAnnotations map[string]string `yaml:"exp_annotations"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func TestAlertUnitTests(t *testing.T) {
	rules := loadAlerts(t)
	byName := map[string]rule{}
	for _, r := range rules {
		byName[r.Alert] = r
	}
	b, err := os.ReadFile(alertTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var f unitTestFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertTestFile, err)
	}
	if !slices.Equal(f.RuleFiles, []string{filepath.Base(alertsFile)}) {
		t.Errorf("rule_files %q, want [%s]", f.RuleFiles, filepath.Base(alertsFile))
	}
	fires, quiet := map[string]int{}, map[string]int{}
	for i, tc := range f.Tests {
		if len(tc.InputSeries) == 0 || len(tc.AlertRuleTest) == 0 {
			t.Errorf("test %d: no input_series or no alert_rule_test", i)
		}
		for _, s := range tc.InputSeries {
			if _, problems := checkExpr(s.Series, upSeries); len(problems) > 0 {
				t.Errorf("test %d: series %s: %s", i, s.Series, strings.Join(problems, "; "))
			}
		}
		for _, c := range tc.AlertRuleTest {
			r, ok := byName[c.Alertname]
			if !ok {
				t.Errorf("test %d: no alert named %q", i, c.Alertname)
				continue
			}
			if !promDuration.MatchString(c.EvalTime) {
				t.Errorf("test %d %s: eval_time %q", i, c.Alertname, c.EvalTime)
			}
			if len(c.ExpAlerts) == 0 {
				quiet[c.Alertname]++
				continue
			}
			fires[c.Alertname]++
			for _, e := range c.ExpAlerts {
				if e.ExpLabels["severity"] != r.Labels["severity"] {
					t.Errorf("test %d %s at %s: exp_labels.severity %q, the rule says %q", i, c.Alertname, c.EvalTime, e.ExpLabels["severity"], r.Labels["severity"])
				}
				for _, a := range []string{"summary", "description", "runbook_url"} {
					if e.ExpAnnotations[a] == "" {
						t.Errorf("test %d %s at %s: exp_annotations has no %s", i, c.Alertname, c.EvalTime, a)
					}
				}
				if e.ExpAnnotations["runbook_url"] != r.Annotations["runbook_url"] {
					t.Errorf("test %d %s: runbook_url %q, the rule says %q", i, c.Alertname, e.ExpAnnotations["runbook_url"], r.Annotations["runbook_url"])
				}
			}
		}
	}
	for _, r := range rules {
		if fires[r.Alert] == 0 {
			t.Errorf("%s: no promtool case where %s fires", alertTestFile, r.Alert)
		}
		if quiet[r.Alert] == 0 {
			t.Errorf("%s: no promtool case where %s does not fire", alertTestFile, r.Alert)
		}
	}
}

// --- MetricNames ------------------------------------------------------------------

func TestMetricNames(t *testing.T) {
	names, err := MetricNames()
	if err != nil {
		t.Fatal(err)
	}
	if !sort.StringsAreSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("MetricNames is not sorted and distinct: %q", names)
	}
	for _, n := range names {
		if !slices.Contains(exported, n) {
			t.Errorf("the assets name %s, which is not in the exported table", n)
		}
	}
	// The dashboard shows every metric, so the assets name them all.
	if len(names) != len(exported) {
		t.Errorf("MetricNames has %d names, exported %d", len(names), len(exported))
	}
	for in, want := range map[string]string{
		"vigil_clickhouse_insert_duration_seconds_bucket": "vigil_clickhouse_insert_duration_seconds",
		"vigil_pipeline_batch_size_records_count":         "vigil_pipeline_batch_size_records",
		"vigil_detector_evaluation_duration_seconds_sum":  "vigil_detector_evaluation_duration_seconds",
		"vigil_rules_loaded":                              "vigil_rules_loaded",
	} {
		if got := stripHistogramSuffix(in); got != want {
			t.Errorf("stripHistogramSuffix(%s) = %s, want %s", in, got, want)
		}
	}
}

// --- promtool ---------------------------------------------------------------------

// TestPromtool runs scripts/promtool.sh (promtool check rules + the unit tests;
// the script installs Debian's prometheus package when promtool is missing),
// then has promtool parse every dashboard query. It always runs under CI.
func TestPromtool(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: not running promtool")
	}
	if _, err := exec.LookPath("promtool"); err != nil && os.Getenv("CI") == "" {
		t.Skip("promtool is not on PATH: run `bash scripts/promtool.sh` (it installs Debian's prometheus package), or set CI=1 to let this test do it")
	}
	start := time.Now()
	out, err := exec.Command("bash", "../scripts/promtool.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/promtool.sh: %v\n%s", err, out)
	}
	t.Logf("scripts/promtool.sh (%s):\n%s", time.Since(start).Round(time.Millisecond), out)

	// The dashboard's queries, with Grafana's variables filled in, as
	// recording rules: promtool parses each one.
	_, panels := loadDashboard(t)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
		"${job}", ".+", "$job", ".+", "${instance}", ".+", "$instance", ".+")
	type recording struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var recs []recording
	for _, p := range panels {
		for _, tg := range p.Targets {
			recs = append(recs, recording{fmt.Sprintf("dashboard:panel_%d_%s", p.ID, tg.RefID), vars.Replace(tg.Expr)})
		}
	}
	doc := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": recs}}}
	b, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool rejects a dashboard query: %v\n%s", err, out)
	}
}
