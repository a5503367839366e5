package longrules

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// *storage.Store is what the daemon passes as RunnerConfig.Store.
var _ Querier = (*storage.Store)(nil)

// t0 is a round event time the tests build their data around.
var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

func parseRules(t *testing.T, yaml string) []*rules.Rule {
	t.Helper()
	rs, errs := rules.Parse("rules/test.yaml", []byte(yaml))
	if len(errs) > 0 {
		t.Fatalf("rules: %v", errs)
	}
	return rs
}

func openStore(t *testing.T) (*storage.Store, string) {
	t.Helper()
	addr, db := chtest.NewDatabase(t)
	s, err := storage.Open(context.Background(), storage.Config{Addr: []string{addr}, Database: db, Username: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, db
}

// req is a request log line at ts with the given fields over defaults; a
// nil value removes a field.
func req(ts time.Time, id string, kv ...any) string {
	m := map[string]any{"ts": ts.Format(time.RFC3339Nano), "request_id": id, "org_id": "org_1",
		"ip": "198.51.100.1", "method": "GET", "route": "/v1/x", "operation": "data", "status": 200}
	return line(m, kv)
}

// audit is an audit event line, as req.
func audit(ts time.Time, id string, kv ...any) string {
	m := map[string]any{"ts": ts.Format(time.RFC3339Nano), "event_id": id, "org_id": "org_1", "actor_id": "user_1",
		"actor_type": "user", "action": "document.read", "resource_type": "document", "status": "success"}
	return line(m, kv)
}

func line(m map[string]any, kv []any) string {
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(m, k)
		} else {
			m[k] = kv[i+1]
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return string(b)
}

var batch atomic.Int64

// insert decodes JSON lines of src as the daemon does and stores them.
func insert(t *testing.T, s *storage.Store, src event.Source, lines ...string) []event.Event {
	t.Helper()
	var d event.Decoder
	evs := make([]event.Event, 0, len(lines))
	recs := make([]storage.Record, 0, len(lines))
	for _, l := range lines {
		var e event.Event
		if err := d.Decode(src, []byte(l), &e); err != nil {
			t.Fatalf("decode %s: %v", l, err)
		}
		evs = append(evs, e.Clone())
	}
	for i := range evs {
		recs = append(recs, storage.Record{Event: &evs[i]})
	}
	if err := s.InsertEvents(context.Background(), recs, storage.Token(t.Name(), fmt.Sprint(batch.Add(1)))); err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestSplitKeepsShortRulesInMemory(t *testing.T) {
	rs := parseRules(t, `rules:
  - id: hour-count
    source: requests
    window: 1h
    threshold: '> 5'
  - id: week-count
    source: requests
    window: 7d
    threshold: '> 5'
  - id: day-count
    source: requests
    window: 24h
    threshold: '> 5'
  - id: minute-spike
    source: requests
    window: 1m
    aggregate: count
    anomaly: {baseline: 1h, z: 6, min: 200}
  - id: hour-spike-week-baseline
    source: requests
    window: 1h
    aggregate: count
    anomaly: {baseline: 7d, z: 6, min: 200}
  - id: spike-just-over
    source: requests
    window: 1h
    aggregate: count
    anomaly: {baseline: 23h1m, z: 6, min: 200}
  - id: new-address
    source: audit
    new_value: {field: ip, per: [api_key_id], remember: 30d}
  - id: dormant-key
    source: requests
    dormant: {field: api_key_id, idle: 90d}
  - id: create-then-delete
    source: audit
    sequence:
      by: [actor_id]
      within: 48h
      steps:
        - where: 'action == "api_key.create"'
        - where: 'action endsWith ".delete"'
`)
	ids := func(rs []*rules.Rule) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		limit          time.Duration
		inMemory, long string
	}{
		{24 * time.Hour, "hour-count,day-count,minute-spike,new-address,dormant-key,create-then-delete",
			"week-count,hour-spike-week-baseline,spike-just-over"},
		{0, ids(rs), ""},
		{-time.Hour, ids(rs), ""},
	} {
		mem, long := Split(rs, tc.limit)
		if ids(mem) != tc.inMemory || ids(long) != tc.long {
			t.Errorf("Split(limit %v):\n in memory %s\n long      %s\nwant\n in memory %s\n long      %s",
				tc.limit, ids(mem), ids(long), tc.inMemory, tc.long)
		}
	}
}

func TestCompileRejectsWhatClickHouseCannotRun(t *testing.T) {
	const tail = " cannot run in ClickHouse (" + supported + ")"
	for _, tc := range []struct {
		name, rule, want string
	}{
		{"a builtin function", `    where: 'lower(route) startsWith "/admin"'`,
			`rules/test.yaml:2: rule "r": where: function lower()` + tail},
		{"the modulo operator", `    where: 'bytes_in % 2 == 0'`,
			`rules/test.yaml:2: rule "r": where: operator %` + tail},
		{"a conditional", `    where: '(status > 500 ? bytes_in : bytes_out) > 10'`,
			`rules/test.yaml:2: rule "r": where: conditional (status > 500 ? bytes_in : bytes_out)` + tail},
		{"a list that is not literal", `    where: 'route in [path, "/x"]'`,
			`rules/test.yaml:2: rule "r": where: in with a non-literal element path` + tail},
		{"a builtin inside ratio", `    aggregate: 'ratio(len(route) > 10)'`,
			`rules/test.yaml:2: rule "r": aggregate: function len()` + tail},
		{"nil", `    where: 'route + "" != nil'`,
			`rules/test.yaml:2: rule "r": where: nil` + tail},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := parseRules(t, "rules:\n  - id: r\n    source: requests\n    window: 7d\n    threshold: '> 1'\n"+tc.rule+"\n")
			q, err := Compile(rs[0], "vigil")
			if err == nil {
				t.Fatalf("compiled:\n%s", q.SQL)
			}
			if err.Error() != tc.want {
				t.Errorf("error\n %s\nwant\n %s", err, tc.want)
			}
		})
	}

	t.Run("member access into changes", func(t *testing.T) {
		rs := parseRules(t, "rules:\n  - id: role-change\n    source: audit\n    where: 'changes.role == \"owner\"'\n    window: 30d\n    threshold: '> 1'\n")
		_, err := Compile(rs[0], "vigil")
		want := `rules/test.yaml:2: rule "role-change": where: member access changes.role` + tail
		if err == nil || err.Error() != want {
			t.Errorf("error\n %v\nwant\n %s", err, want)
		}
	})
	t.Run("a kind evaluated in memory", func(t *testing.T) {
		rs := parseRules(t, "rules:\n  - id: dormant-key\n    source: requests\n    dormant: {field: api_key_id, idle: 90d}\n")
		_, err := Compile(rs[0], "vigil")
		want := `rules/test.yaml:2: rule "dormant-key": kind: dormant rules are evaluated in memory, not in ClickHouse`
		if err == nil || err.Error() != want {
			t.Errorf("error\n %v\nwant\n %s", err, want)
		}
	})
	t.Run("every failure of a set at once", func(t *testing.T) {
		rs := parseRules(t, `rules:
  - id: a
    source: requests
    where: 'lower(route) == "x"'
    window: 7d
    threshold: '> 1'
  - id: b
    source: requests
    where: 'status >= 500'
    window: 7d
    threshold: '> 1'
  - id: c
    source: requests
    where: 'bytes_in % 2 == 0'
    window: 7d
    threshold: '> 1'
`)
		_, err := CompileAll(rs, "vigil")
		if err == nil || !strings.Contains(err.Error(), `rule "a"`) || !strings.Contains(err.Error(), `rule "c"`) ||
			strings.Contains(err.Error(), `rule "b"`) {
			t.Errorf("CompileAll: %v", err)
		}
	})
}

// Strings from rules reach ClickHouse only as placeholder values.
func TestCompileKeepsRuleStringsOutOfTheSQL(t *testing.T) {
	rs := parseRules(t, `rules:
  - id: r
    source: requests
    where: 'route == "x'' OR 1=1 --" || user_agent matches "\\d+''"'
    window: 7d
    threshold: '> 1'
`)
	q, err := Compile(rs[0], "vigil")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(q.SQL, "1=1") || strings.Contains(q.SQL, `\d`) {
		t.Errorf("a string of the rule is in the SQL text:\n%s", q.SQL)
	}
}
