package storage

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/responders"
	"github.com/vigil-sec/vigil/rules"
)

// The same records, written through the store API to one server and to a
// cluster of two shards, give the same answers to every query the daemon
// uses; on the cluster the rows are spread over both shards, the copies
// and versions of each row on one, and a retried insert stays exactly-once.
func TestClusterGivesTheAnswersOfOneServer(t *testing.T) {
	began := time.Now()
	c := chtest.StartCluster(t, 2)
	t.Logf("cluster started in %v", time.Since(began).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const db = "vigil_cluster"
	shards := make([]driver.Conn, len(c.Shards))
	for i, sh := range c.Shards {
		shards[i] = chtest.Open(t, sh.Addr.Native, "default")
		// Without merges a retried insert that was not dropped stays visible.
		if err := shards[i].Exec(ctx, "SYSTEM STOP MERGES"); err != nil {
			t.Fatal(err)
		}
	}

	// Two daemons start at once, one on each shard, and both migrate.
	began = time.Now()
	cfg := Config{Database: db, Username: "default", Cluster: c.Name, Shards: c.Natives()}
	stores := make([]*Store, len(c.Shards))
	errs := make(chan error, len(stores))
	for i := range stores {
		go func() {
			cfg := cfg
			cfg.Addr = []string{c.Shards[i].Addr.Native}
			s, err := Open(ctx, cfg)
			stores[i] = s
			errs <- err
		}()
	}
	for range stores {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
	}
	for _, s := range stores {
		t.Cleanup(func() { s.Close() })
	}
	if err := stores[0].Migrate(ctx); err != nil {
		t.Fatalf("migrating again: %v", err)
	}
	t.Logf("migrated by two stores at once, then again, in %v", time.Since(began).Round(time.Millisecond))
	for i, sh := range shards {
		if n := shardCount(t, sh, "SELECT count() FROM "+db+".schema_migrations FINAL"); n != uint64(len(migrations)) {
			t.Errorf("shard %d: %d migrations recorded, want %d", i+1, n, len(migrations))
		}
		for _, tab := range tableNames() {
			q := fmt.Sprintf("SELECT engine FROM system.tables WHERE database = '%s' AND name = '%s'", db, tab)
			if e := shardString(t, sh, q); e != "Distributed" {
				t.Errorf("shard %d: %s has engine %q, want Distributed", i+1, tab, e)
			}
			if e := shardString(t, sh, strings.Replace(q, tab, tab+localSuffix, 1)); !strings.HasSuffix(e, "MergeTree") {
				t.Errorf("shard %d: %s_local has engine %q", i+1, tab, e)
			}
		}
	}

	t.Run("a single server's database is refused", func(t *testing.T) {
		one := Config{Addr: []string{c.Shards[0].Addr.Native}, Database: "vigil_one", Username: "default"}
		s, err := Open(ctx, one)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		one.Cluster, one.Shards = c.Name, c.Natives()
		if s, err := Open(ctx, one); err == nil || !strings.Contains(err.Error(), "single-server tables") {
			if s != nil {
				s.Close()
			}
			t.Errorf("a cluster store on a single-server database: %v", err)
		}
	})

	single, _, _ := openStore(t)
	f := newFixture(t)
	f.write(t, single)
	began = time.Now()
	f.write(t, stores[0])
	t.Logf("fixture written to the cluster in %v", time.Since(began).Round(time.Millisecond))

	t.Run("rows are spread over the shards, copies together", func(t *testing.T) {
		for _, k := range []struct{ table, key string }{
			{"request_events", "request_id"}, {"audit_events", "event_id"}, {"alerts", "alert_key"},
			{"incidents", "id"}, {"actions", "(kind, target)"}, {"blocks", "(prefix, blocked_at)"},
		} {
			var sum uint64
			for i, sh := range shards {
				n := shardCount(t, sh, fmt.Sprintf("SELECT uniqExact(%s) FROM %s.%s_local", k.key, db, k.table))
				if n == 0 {
					t.Errorf("%s: shard %d holds no rows", k.table, i+1)
				}
				sum += n
			}
			// A key counted on both shards would make the sum larger.
			if all := count(t, stores[0], fmt.Sprintf("SELECT uniqExact(%s) FROM %s.%s", k.key, db, k.table)); sum != all {
				t.Errorf("%s: %d distinct keys per shard together, %d in all: copies of a row are on both shards", k.table, sum, all)
			}
		}
		// 1000 records, 750 requests; a retried batch (same token) is
		// dropped, a re-formed one (100..599, another token) is stored again
		// and collapses under FINAL.
		for _, k := range []struct {
			table          string
			stored, unique uint64
		}{{"request_events", 750 + 375, 750}, {"audit_events", 250 + 125, 250}} {
			var stored uint64
			for _, sh := range shards {
				stored += shardCount(t, sh, fmt.Sprintf("SELECT count() FROM %s.%s_local", db, k.table))
			}
			if stored != k.stored {
				t.Errorf("%s: %d rows stored on the shards, want %d (the retried batch must be dropped)", k.table, stored, k.stored)
			}
			if n := count(t, stores[0], fmt.Sprintf("SELECT count() FROM %s.%s FINAL", db, k.table)); n != k.unique {
				t.Errorf("%s: count() FINAL = %d, want %d", k.table, n, k.unique)
			}
		}
	})

	t.Run("the daemon's queries answer as on one server", func(t *testing.T) {
		want := f.answers(t, single)
		for i, s := range stores {
			got := f.answers(t, s)
			for _, k := range sortedKeys(want) {
				if got[k] != want[k] {
					t.Errorf("through shard %d, %s:\n got %s\nwant %s", i+1, k, got[k], want[k])
				}
			}
		}
		// The comparisons are worth something only if the answers are not empty.
		for _, k := range []string{"Replay", "History", "PendingAlerts", "UnplannedAlerts", "OpenIncidents", "ActiveBlocks", "UnsentNotifications"} {
			if want[k] == "" || want[k] == "[]" {
				t.Errorf("%s is empty on one server: the fixture does not exercise it", k)
			}
		}
	})

	t.Run("an insert while a shard is down fails, and its retry is stored once", func(t *testing.T) {
		recs := records(200, "late")
		for i := range recs {
			recs[i].Event.ID = "late_" + recs[i].Event.ID
		}
		if err := c.Shards[1].Stop(); err != nil {
			t.Fatal(err)
		}
		err := stores[0].InsertEvents(ctx, recs, Token("late"))
		if err == nil {
			t.Fatal("an insert with a shard down was acknowledged")
		}
		if !IsRetryable(err) {
			t.Errorf("an unreachable shard is not retryable: %v", err)
		}
		t.Logf("with shard 2 down: %.200v", err)
		if err := c.Shards[1].Start(); err != nil {
			t.Fatal(err)
		}
		if err := stores[0].InsertEvents(ctx, recs, Token("late")); err != nil {
			t.Fatal(err)
		}
		if err := stores[0].InsertEvents(ctx, recs, Token("late")); err != nil {
			t.Fatal(err)
		}
		var stored uint64
		for i, sh := range c.Shards {
			conn := shards[i]
			if i == 1 { // restarted: its old connections are gone
				conn = chtest.Open(t, sh.Addr.Native, "default")
			}
			stored += shardCount(t, conn, "SELECT count() FROM "+db+".request_events_local WHERE startsWith(request_id, 'late_')")
			stored += shardCount(t, conn, "SELECT count() FROM "+db+".audit_events_local WHERE startsWith(event_id, 'late_')")
		}
		if stored != uint64(len(recs)) {
			t.Errorf("%d rows stored for %d records inserted after a failure and retried", stored, len(recs))
		}
	})
}

// Rows that are copies or versions of each other have the same sorting
// key; ReplacingMergeTree collapses them only on one shard. So a sharding
// key may only read sorting-key columns.
func TestShardKeysReadOnlySortingKeyColumns(t *testing.T) {
	orderBy := regexp.MustCompile(`ORDER BY \(?([^)\n]*)\)?`)
	for _, tab := range append(tables(), migrationsTable) {
		m := orderBy.FindStringSubmatch(tab.clauses)
		if m == nil {
			t.Errorf("%s: no ORDER BY in %q", tab.name, tab.clauses)
			continue
		}
		sorting := strings.Split(m[1], ", ")
		key := strings.TrimSuffix(strings.TrimPrefix(tab.shardKey, "cityHash64("), ")")
		for _, col := range strings.Split(key, ", ") {
			if !slices.Contains(sorting, col) {
				t.Errorf("%s: sharding key %s reads %s, which is not in the sorting key (%s)", tab.name, tab.shardKey, col, m[1])
			}
		}
	}
}

// The ON CLUSTER layout needs Keeper, which the test servers lack: its
// statements are only parsed (EXPLAIN AST), and their shape checked.
func TestOnClusterStatementsParse(t *testing.T) {
	addr, db := chtest.NewDatabase(t)
	conn := chtest.Open(t, addr, db)
	l := layout{db: db, cluster: "vigil", onCluster: true,
		ttl: strings.NewReplacer("{requests_ttl_days}", "90", "{audit_ttl_days}", "365")}
	var stmts []string
	for _, m := range migrations {
		for _, d := range m.ddl {
			stmts = append(stmts, d.statements(l)...)
		}
	}
	stmts = append(stmts, migrationsTable.statements(l)...)
	for _, q := range stmts {
		if !strings.Contains(q, " ON CLUSTER 'vigil' ") {
			t.Errorf("not ON CLUSTER: %s", q)
		}
		if strings.HasPrefix(q, "CREATE") && !strings.Contains(q, "Replicated") && !strings.Contains(q, "Distributed(") {
			t.Errorf("a shard table that is not replicated: %s", q)
		}
		rows, err := conn.Query(context.Background(), "EXPLAIN AST "+q)
		if err != nil {
			t.Errorf("%v\n%s", err, q)
			continue
		}
		rows.Close()
	}
}

func tableNames() []string {
	var out []string
	for _, tab := range tables() {
		out = append(out, tab.name)
	}
	return out
}

func shardCount(t *testing.T, conn driver.Conn, q string) uint64 {
	t.Helper()
	var n uint64
	if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

func shardString(t *testing.T, conn driver.Conn, q string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// fixture is what the cluster test writes to each store: events with a
// retried and a re-formed batch, alerts fired twice, incidents in two
// versions holding some of the alerts, actions and a block ledger.
type fixture struct {
	base      time.Time // wall clock of the run: the daemon's queries look back from now
	recs      []Record
	alerts    []*detector.Alert
	incidents [][2]*responders.Incident // two versions each
	actions   []responders.ActionRecord
	blocks    [][]responders.BlockRecord // written in turn: later versions replace earlier ones
}

func newFixture(t *testing.T) *fixture {
	base := time.Now().UTC().Truncate(time.Millisecond)
	f := &fixture{base: base, recs: records(1000, "requests")}

	rs, errs := rules.Parse("r.yaml", []byte("rules:\n  - id: r\n    source: requests\n    group_by: [ip]\n    window: 1m\n    threshold: '>= 1'\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	en := detector.NewEngine(rs, detector.Config{})
	for i := range 24 {
		e := &event.Event{Source: event.Requests, TS: t0.Add(time.Duration(i) * time.Second).UnixNano(), ID: fmt.Sprintf("a_%d", i),
			OrgID: "org_1", IP: fmt.Sprintf("198.51.100.%d", i), Method: "GET", Route: "/v1/x", Status: 200}
		en.Process(e, func(a *detector.Alert) { f.alerts = append(f.alerts, a) })
	}
	if len(f.alerts) != 24 {
		t.Fatalf("%d alerts, want 24", len(f.alerts))
	}

	for i := range 8 {
		at := base.Add(time.Duration(i) * time.Second)
		v1 := &responders.Incident{ID: fmt.Sprintf("inc_%d", i), Rule: "r", Severity: 2, SeverityName: "high", Status: "open",
			Source: "requests", Group: []string{"ip=198.51.100." + fmt.Sprint(2*i)}, AlertKeys: []string{f.alerts[2*i].Key()},
			Alerts: 1, FirstEvent: t0, LastEvent: t0.Add(time.Minute), OpenedAt: at, UpdatedAt: at.Add(time.Minute),
			Labels: map[string]string{"team": "edge"}}
		v2 := *v1
		v2.UpdatedAt, v2.Notes = at.Add(2*time.Minute), []string{"second version"}
		if i%3 == 0 {
			v2.Status, v2.ResolvedAt = "resolved", v2.UpdatedAt
		}
		f.incidents = append(f.incidents, [2]*responders.Incident{v1, &v2})
		// Incidents 0..3 have a notification planned, 0 and 1 sent; the
		// even ones a block planned: 5 and 7 have nothing planned.
		if i < 4 {
			f.actions = append(f.actions, responders.ActionRecord{At: at, IncidentID: v1.ID, Kind: responders.OpenIncident,
				Target: "webhook", Outcome: "planned", Attempt: 1})
		}
		if i < 2 {
			f.actions = append(f.actions, responders.ActionRecord{At: at.Add(time.Second), IncidentID: v1.ID, Kind: responders.OpenIncident,
				Target: "webhook", Outcome: "succeeded", Attempt: 1, Detail: "sent"})
		}
		if i%2 == 0 {
			f.actions = append(f.actions, responders.ActionRecord{At: at.Add(2 * time.Second), IncidentID: v1.ID, Kind: responders.BlockIP,
				Target: fmt.Sprintf("198.51.100.%d/32", 2*i), Outcome: "planned", Attempt: 1, ExpiresAt: at.Add(time.Hour)})
		}
	}

	var active, removed []responders.BlockRecord
	for i := range 12 {
		b := responders.BlockRecord{Prefix: fmt.Sprintf("203.0.113.%d/32", i), IncidentID: fmt.Sprintf("inc_%d", i%8),
			BlockedAt: base.Add(time.Duration(i) * time.Second), ExpiresAt: base.Add(time.Hour + time.Duration(i)*time.Second),
			Offense: 1, Status: responders.BlockActive}
		active = append(active, b)
		if i%4 == 0 {
			b.Status = responders.BlockRemoved
			removed = append(removed, b)
		}
	}
	f.blocks = [][]responders.BlockRecord{active, removed}
	return f
}

func (f *fixture) write(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(s.InsertEvents(ctx, f.recs, Token("a")))
	check(s.InsertEvents(ctx, f.recs, Token("a")))          // the same batch retried
	check(s.InsertEvents(ctx, f.recs[100:600], Token("b"))) // re-formed after a restart
	dls := []DeadLetter{{Source: event.Requests, Origin: Origin{"requests", 1, 42}, Reason: "bad", Raw: []byte(`{"x":1}`), ReceivedAt: t0}}
	check(s.InsertDeadLetters(ctx, dls))
	check(s.InsertDeadLetters(ctx, dls))
	check(s.InsertAlerts(ctx, f.alerts))
	check(s.InsertAlerts(ctx, f.alerts)) // re-fired after a restart
	for _, v := range f.incidents {
		check(s.WriteIncident(ctx, v[0]))
	}
	for _, v := range f.incidents {
		check(s.WriteIncident(ctx, v[1]))
	}
	check(s.WriteActions(ctx, f.actions))
	for _, b := range f.blocks {
		check(s.WriteBlocks(ctx, b))
	}
	check(s.SetPaused(ctx, true))
}

// answers asks every read the daemon and the CLI make, each rendered as
// text; rows of queries without an ORDER BY are sorted.
func (f *fixture) answers(t *testing.T, s *Store) map[string]string {
	t.Helper()
	ctx := context.Background()
	since := f.base.Add(-time.Hour)
	out := map[string]string{}
	put := func(name string, v any, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = fmt.Sprintf("%+v", v)
	}
	for _, q := range []string{
		"SELECT count() FROM %s.request_events FINAL", "SELECT uniqExact(request_id) FROM %s.request_events",
		"SELECT count() FROM %s.audit_events FINAL", "SELECT count() FROM %s.dead_letters FINAL",
		"SELECT count() FROM %s.alerts FINAL", "SELECT count() FROM %s.incidents FINAL",
		"SELECT count() FROM %s.blocks FINAL", "SELECT count() FROM %s.actions",
	} {
		out[q] = fmt.Sprint(count(t, s, fmt.Sprintf(q, s.db)))
	}

	var replay []string
	committed := map[string]map[int]int64{"requests": {0: 900, 1: 600, 2: 300}}
	n, err := s.Replay(ctx, committed, time.Hour, func(evs []event.Event, origins []Origin) {
		var b strings.Builder
		for i := range evs {
			fmt.Fprintf(&b, "%s@%d/%d ", evs[i].ID, origins[i].Partition, origins[i].Offset)
		}
		replay = append(replay, b.String())
	})
	put("Replay", fmt.Sprint(n, replay), err)

	var history []string
	_, err = s.History(ctx, t0.Add(-time.Hour), t0.Add(time.Hour), func(evs []event.Event) error {
		for i := range evs {
			history = append(history, evs[i].ID)
		}
		return nil
	})
	put("History", history, err)

	pending, err := s.PendingAlerts(ctx, since)
	put("PendingAlerts", pending, err)
	unplanned, err := s.UnplannedAlerts(ctx, since)
	put("UnplannedAlerts", unplanned, err)
	open, err := s.OpenIncidents(ctx, since)
	put("OpenIncidents", incidentList(open), err)
	all, err := s.Incidents(ctx, "", 0)
	put("Incidents", incidentList(all), err)
	resolved, err := s.Incidents(ctx, "resolved", 2)
	put("Incidents resolved", incidentList(resolved), err)
	one, err := s.Incident(ctx, "inc_3")
	put("Incident", incidentList([]*responders.Incident{one}), err)
	ev, err := s.Evidence(ctx, "requests", []string{"req_1", "req_2", "req_500"}, t0.Add(-time.Minute), t0.Add(time.Minute))
	put("Evidence requests", ev, err)
	ev, err = s.Evidence(ctx, "audit", []string{"evt_3", "evt_7"}, t0.Add(-time.Minute), t0.Add(time.Minute))
	put("Evidence audit", ev, err)
	acts, err := s.Actions(ctx, "inc_0")
	put("Actions", acts, err)
	latest, err := s.LatestActions(ctx, []string{responders.BlockIP, responders.OpenIncident})
	put("LatestActions", sortedActions(latest), err)
	unsent, err := s.UnsentNotifications(ctx, since)
	put("UnsentNotifications", sortedActions(unsent), err)
	blocks, err := s.ActiveBlocks(ctx)
	put("ActiveBlocks", blocks, err)
	offenses, err := s.Offenses(ctx, "203.0.113.4/32", since)
	put("Offenses", offenses, err)
	paused, err := s.Paused(ctx)
	put("Paused", paused, err)
	return out
}

func incidentList(incs []*responders.Incident) []responders.Incident {
	out := make([]responders.Incident, len(incs))
	for i, inc := range incs {
		out[i] = *inc
	}
	return out
}

func sortedActions(recs []responders.ActionRecord) []responders.ActionRecord {
	slices.SortFunc(recs, func(a, b responders.ActionRecord) int {
		return strings.Compare(a.IncidentID+a.Kind+a.Target, b.IncidentID+b.Kind+b.Target)
	})
	return recs
}
