package responders_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/metrics"
	"github.com/vigil-sec/vigil/responders"
	"github.com/vigil-sec/vigil/responders/adminapi"
	"github.com/vigil-sec/vigil/responders/adminapi/admintest"
	"github.com/vigil-sec/vigil/responders/cloudflare"
	"github.com/vigil-sec/vigil/responders/cloudflare/cftest"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

func TestMain(m *testing.M) { chtest.Main(m) }

const (
	adminToken = "adm-secret-token-1"
	cfToken    = "cf-secret-token-1"
	account    = "0123456789abcdef0123456789abcdef"
	zone       = "fedcba9876543210fedcba9876543210"
)

var t0 = time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)

// env is one test's world: a real ClickHouse database, the admin API and
// Cloudflare test servers, and the real clients pointed at them.
type env struct {
	store *storage.Store
	admin *admintest.Server
	cf    *cftest.Server
	sys   responders.Systems
	rules map[string]*rules.Rule
}

const ruleYAML = `rules:
  - id: brute
    source: requests
    group_by: [ip]
    window: 1m
    aggregate: count
    threshold: '> 5'
    severity: critical
    actions: [block_ip]
  - id: key-abuse
    source: requests
    group_by: [api_key_id]
    window: 1m
    aggregate: count
    threshold: '> 5'
    severity: high
    actions: [revoke_key]
  - id: admin-abuse
    source: requests
    group_by: [api_key_id]
    window: 1m
    aggregate: count
    threshold: '> 5'
    severity: high
    allow_admin_revoke: true
    actions: [revoke_key]
  - id: exfil
    source: requests
    group_by: [org_id]
    window: 1m
    aggregate: count
    threshold: '> 5'
    severity: critical
    actions: [isolate_namespace, watch]
`

func newEnv(t *testing.T) *env {
	t.Helper()
	addr, db := chtest.NewDatabase(t)
	store, err := storage.Open(context.Background(), storage.Config{Addr: []string{addr}, Database: db, Username: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	e := &env{store: store, admin: admintest.New(t, adminToken), cf: cftest.New(t, cfToken), rules: map[string]*rules.Rule{}}
	rs, errs := rules.Parse("test.yaml", []byte(ruleYAML))
	if errs.Err() != nil {
		t.Fatal(errs.Err())
	}
	for _, r := range rs {
		e.rules[r.ID] = r
	}
	keys, err := adminapi.New(adminapi.Config{BaseURL: e.admin.URL, Token: adminToken, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := cloudflare.New(cloudflare.Config{APIToken: cfToken, BaseURL: e.cf.URL(), AccountID: account, ZoneID: zone,
		MaxRetries: -1, BulkPollInterval: 10 * time.Millisecond, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.sys = responders.Systems{Keys: keys, Blocker: cf}
	return e
}

// config is fast for tests; the kill switch is polled only every second,
// so few idle queries are in flight when a test stops its responder.
func (e *env) config() responders.Config {
	return responders.Config{RetryMin: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, MaxAttempts: 3,
		ExpiryInterval: 50 * time.Millisecond, ReconcileInterval: time.Hour, ControlInterval: time.Second}
}

// start runs a responder until the test ends or stop is called.
func (e *env) start(t *testing.T, cfg responders.Config, store responders.Store) (*responders.Responder, func()) {
	t.Helper()
	if store == nil {
		store = e.store
	}
	r := responders.New(cfg, store, e.sys, func(id string) *rules.Rule { return e.rules[id] })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once atomic.Bool
	stop := func() {
		if once.Swap(true) {
			return
		}
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return r, stop
}

// event stores one request event and returns its id.
func (e *env) event(t *testing.T, id, ip, key, perm, org, ns string) {
	t.Helper()
	ev := event.Event{Source: event.Requests, TS: t0.UnixNano(), ID: id, OrgID: org, APIKeyID: key, KeyPermission: perm,
		IP: ip, Method: "GET", Route: "/v1/x", Operation: "data", Status: 401, Namespace: ns}
	if err := e.store.InsertEvents(context.Background(), []storage.Record{{Event: &ev}}, ""); err != nil {
		t.Fatal(err)
	}
}

func alert(rule, field, value string, at time.Time, samples ...string) responders.Alert {
	return responders.Alert{
		Key: fmt.Sprintf("%s\x1f%s=%s\x1f%d", rule, field, value, at.UnixNano()), Rule: rule, Severity: 1, Source: "requests",
		Group: []responders.GroupValue{{Field: field, Value: value}}, Value: 6, Threshold: "> 5",
		WindowStart: at.Add(-time.Minute), WindowEnd: at, At: at, SampleIDs: samples, Actions: nil,
	}
}

func withActions(a responders.Alert, actions ...string) responders.Alert {
	a.Actions = actions
	return a
}

// waitFor polls cond until it holds or 15 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// outcomes returns the incident's action log as "kind target outcome[/guard]".
func (e *env) outcomes(t *testing.T, incident string) []string {
	t.Helper()
	acts, err := e.store.Actions(context.Background(), incident)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range acts {
		s := a.Kind + " " + a.Target + " " + a.Outcome
		if a.Guard != "" {
			s += "/" + a.Guard
		}
		out = append(out, s)
	}
	return out
}

func (e *env) onlyIncident(t *testing.T) *responders.Incident {
	t.Helper()
	var incs []*responders.Incident
	waitFor(t, "an incident", func() bool {
		var err error
		incs, err = e.store.Incidents(context.Background(), "", 10)
		return err == nil && len(incs) > 0
	})
	if len(incs) != 1 {
		t.Fatalf("incidents = %d, want 1", len(incs))
	}
	return incs[0]
}

func has(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// failingStore fails incident writes while fail is set, checking on every
// failure that no responder has called out yet.
type failingStore struct {
	*storage.Store
	fail     atomic.Bool
	attempts atomic.Int32
	check    func()
}

func (f *failingStore) WriteIncident(ctx context.Context, inc *responders.Incident) error {
	f.attempts.Add(1)
	if f.fail.Load() {
		f.check()
		return errors.New("clickhouse: connection refused")
	}
	return f.Store.WriteIncident(ctx, inc)
}

func TestNoActionRunsBeforeTheIncidentIsWritten(t *testing.T) {
	e := newEnv(t)
	e.admin.AddKey("key_1", "active", "WRITE")
	e.event(t, "req_1", "198.51.100.7", "key_1", "WRITE", "org_1", "")
	fs := &failingStore{Store: e.store}
	fs.fail.Store(true)
	fs.check = func() {
		if n := len(e.admin.Requests()); n != 0 {
			t.Errorf("admin API called %d times before the incident was written", n)
		}
	}
	cfg := e.config()
	r, _ := e.start(t, cfg, fs)
	r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_1", t0, "req_1"), responders.RevokeKey))
	waitFor(t, "three failed incident writes", func() bool { return fs.attempts.Load() >= 3 })
	if inc, _ := e.store.Incidents(context.Background(), "", 10); len(inc) != 0 {
		t.Fatal("incident stored although every write failed")
	}
	fs.fail.Store(false)
	waitFor(t, "the key revoked", func() bool { k, _ := e.admin.Key("key_1"); return k.Status == "revoked" })
	inc := e.onlyIncident(t)
	if inc.Severity != 1 || !has(inc.Keys, "key_1") || !has(inc.Addresses, "198.51.100.7") || !has(inc.Orgs, "org_1") {
		t.Errorf("incident = %+v", inc)
	}
	if !strings.Contains(inc.Query, "request_events") || inc.QueryParams["g0"] != "key_1" {
		t.Errorf("evidence query = %q %v", inc.Query, inc.QueryParams)
	}
	waitFor(t, "the revoke recorded", func() bool { return has(e.outcomes(t, inc.ID), "revoke_key key_1 succeeded") })
	if got := e.outcomes(t, inc.ID); !has(got, "revoke_key key_1 planned") {
		t.Errorf("action log = %v, want a planned row before the call", got)
	}
}

func TestGuardsKeepAllowlistedAddressesAndAdminKeys(t *testing.T) {
	e := newEnv(t)
	e.admin.AddKey("key_admin", "active", "ADMIN")
	e.admin.AddKey("key_allowed", "active", "WRITE")
	e.event(t, "req_a", "203.0.113.9", "key_admin", "ADMIN", "org_1", "")
	cfg := e.config()
	cfg.AllowKeys = []string{"key_allowed"}
	cfg.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}
	r, _ := e.start(t, cfg, nil)
	cases := []struct {
		alert responders.Alert
		want  string
	}{
		{alert("brute", "ip", "10.1.2.3", t0), "block_ip 10.1.2.3 skipped/allowlist"},
		{alert("brute", "ip", "169.254.169.254", t0), "block_ip 169.254.169.254 skipped/allowlist"},
		{alert("brute", "ip", "127.0.0.1", t0), "block_ip 127.0.0.1 skipped/allowlist"},
		{alert("brute", "ip", "fe80::1", t0), "block_ip fe80::1 skipped/allowlist"},
		{alert("brute", "ip", "198.19.4.4", t0), "block_ip 198.19.4.4 skipped/allowlist"},
		{alert("brute", "ip", "not-an-ip", t0), "block_ip not-an-ip skipped/invalid_target"},
		{alert("key-abuse", "api_key_id", "key_admin", t0, "req_a"), "revoke_key key_admin skipped/admin_key"},
		{alert("key-abuse", "api_key_id", "key_allowed", t0), "revoke_key key_allowed skipped/allowlist"},
	}
	for _, c := range cases {
		a := c.alert
		a.Actions = []string{strings.Fields(c.want)[0]}
		r.Enqueue(a)
	}
	for _, c := range cases {
		waitFor(t, c.want, func() bool {
			incs, _ := e.store.Incidents(context.Background(), "", 100)
			for _, inc := range incs {
				if has(e.outcomes(t, inc.ID), c.want) {
					return true
				}
			}
			return false
		})
	}
	if n := len(e.admin.Requests()); n != 0 {
		t.Errorf("admin API called %d times", n)
	}
	if n := e.cf.Count("POST /accounts/{account_id}/rules/lists/{list_id}/items"); n != 0 {
		t.Errorf("Cloudflare list written %d times", n)
	}
	// With allow_admin_revoke the same ADMIN key is revoked.
	r.Enqueue(withActions(alert("admin-abuse", "api_key_id", "key_admin", t0, "req_a"), responders.RevokeKey))
	waitFor(t, "the ADMIN key revoked", func() bool { k, _ := e.admin.Key("key_admin"); return k.Status == "revoked" })
}

func TestRateCapAndBreakerTrip(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.PerMinute = map[string]int{responders.BlockIP: 3}
	cfg.BreakerActions = 1000
	r, _ := e.start(t, cfg, nil)
	for i := range 10 {
		r.Enqueue(withActions(alert("brute", "ip", fmt.Sprintf("203.0.113.%d", i+1), t0), responders.BlockIP))
	}
	waitFor(t, "10 incidents", func() bool { incs, _ := e.store.Incidents(context.Background(), "", 100); return len(incs) == 10 })
	var blocked, capped, raised int
	waitFor(t, "3 blocks", func() bool { return len(e.cf.Items(account, "vigil_blocked")) == 3 })
	incs, _ := e.store.Incidents(context.Background(), "", 100)
	for _, inc := range incs {
		for _, o := range e.outcomes(t, inc.ID) {
			switch {
			case strings.HasSuffix(o, " planned") && strings.HasPrefix(o, "block_ip"):
				blocked++
			case strings.HasSuffix(o, "skipped/rate_cap"):
				capped++
			case strings.HasPrefix(o, "guard_alert"):
				raised++
			}
		}
	}
	if blocked != 3 || capped != 7 || raised != 1 {
		t.Errorf("blocked %d, capped %d, guard alerts %d; want 3, 7, 1", blocked, capped, raised)
	}

	// The breaker: at most 2 actions a minute, whatever the caps say.
	e2 := newEnv(t)
	cfg = e2.config()
	cfg.BreakerActions = 2
	r2, _ := e2.start(t, cfg, nil)
	for i := range 5 {
		r2.Enqueue(withActions(alert("brute", "ip", fmt.Sprintf("198.51.100.%d", i+1), t0), responders.BlockIP))
	}
	waitFor(t, "breaker skips", func() bool {
		incs, _ := e2.store.Incidents(context.Background(), "", 100)
		n := 0
		for _, inc := range incs {
			for _, o := range e2.outcomes(t, inc.ID) {
				if strings.HasSuffix(o, "skipped/breaker") {
					n++
				}
			}
		}
		return n == 3
	})
	waitFor(t, "2 blocks", func() bool { return len(e2.cf.Items(account, "vigil_blocked")) == 2 })
}

func TestDryRunNeverCallsOut(t *testing.T) {
	e := newEnv(t)
	e.admin.AddKey("key_1", "active", "WRITE")
	notified := &countingNotifier{}
	e.sys.Notifiers = map[string]responders.Notifier{"webhook": notified}
	cfg := e.config()
	cfg.DryRun = true
	// A cap the second alert trips: its guard alert is recorded, not sent.
	cfg.PerMinute = map[string]int{responders.RevokeKey: 1}
	r, _ := e.start(t, cfg, nil)
	r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_1", t0), responders.RevokeKey, responders.BlockIP))
	r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_2", t0), responders.RevokeKey))
	r.Enqueue(withActions(alert("exfil", "namespace", "ns_1", t0), responders.IsolateNamespace))
	waitFor(t, "dry-run rows", func() bool {
		incs, _ := e.store.Incidents(context.Background(), "", 10)
		var out []string
		for _, inc := range incs {
			out = append(out, e.outcomes(t, inc.ID)...)
		}
		// Isolation is not configured here: skipped as such even in a dry run.
		return has(out, "revoke_key key_1 dry_run") && has(out, "isolate_namespace ns_1 skipped/not_configured") &&
			has(out, "revoke_key key_2 skipped/rate_cap") && has(out, "guard_alert rate_cap:revoke_key raised/rate_cap")
	})
	time.Sleep(100 * time.Millisecond)
	if n := len(e.admin.Requests()); n != 0 {
		t.Errorf("dry run called the admin API %d times", n)
	}
	if n := notified.calls.Load(); n != 0 {
		t.Errorf("dry run called the notifier %d times", n)
	}
	if n := len(e.cf.Requests()); n != 0 {
		t.Errorf("dry run called Cloudflare %d times", n)
	}
}

func TestAlertsJoinTheOpenIncidentWithinTheCooldown(t *testing.T) {
	e := newEnv(t)
	r, _ := e.start(t, e.config(), nil)
	// The rule's cooldown is its window, 1m. The second alert's window
	// starts inside the cooldown after the first: it joins. The third
	// comes an hour later: a new incident.
	r.Enqueue(alert("brute", "ip", "203.0.113.5", t0))
	r.Enqueue(alert("brute", "ip", "203.0.113.5", t0.Add(61*time.Second)))
	r.Enqueue(alert("brute", "ip", "203.0.113.5", t0.Add(time.Hour)))
	r.Enqueue(alert("brute", "ip", "203.0.113.5", t0)) // a redelivered alert is absorbed
	waitFor(t, "two incidents", func() bool {
		incs, _ := e.store.Incidents(context.Background(), "", 10)
		return len(incs) == 2 && incs[0].Alerts+incs[1].Alerts == 3
	})
}

func TestCrashBetweenSendAndRecordDoesNotDoubleApply(t *testing.T) {
	e := newEnv(t)
	e.admin.AddKey("key_1", "revoked", "WRITE") // the call went out before the crash…
	ctx := context.Background()
	// …but only the planned row was written.
	if err := e.store.WriteActions(ctx, []responders.ActionRecord{{At: time.Now(), IncidentID: "inc_crashed", Kind: responders.RevokeKey,
		Target: "key_1", Outcome: responders.Planned}}); err != nil {
		t.Fatal(err)
	}
	r, _ := e.start(t, e.config(), nil)
	waitFor(t, "the planned revoke re-checked", func() bool { return has(e.outcomes(t, "inc_crashed"), "revoke_key key_1 succeeded") })
	// A new alert about the same key does not revoke it again: it is in force.
	r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_1", t0), responders.RevokeKey))
	inc := e.onlyIncident(t)
	waitFor(t, "in_force skip", func() bool { return has(e.outcomes(t, inc.ID), "revoke_key key_1 skipped/in_force") })
	patches := 0
	for _, req := range e.admin.Requests() {
		if req.Method == "PATCH" && req.Status == 200 {
			patches++
		}
	}
	if patches != 0 {
		t.Errorf("key status changed %d times after the restart, want 0", patches)
	}
}

func TestExpiredBlocksAreRemovedAfterARestart(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.BlockTTL = 300 * time.Millisecond
	cfg.ExpiryInterval = time.Hour // this run never expires anything
	r, stop := e.start(t, cfg, nil)
	r.Enqueue(withActions(alert("brute", "ip", "2001:db8:1:2::99", t0), responders.BlockIP))
	waitFor(t, "the /64 blocked", func() bool {
		items := e.cf.Items(account, "vigil_blocked")
		return len(items) == 1 && items[0].IP == "2001:db8:1:2::/64"
	})
	inc := e.onlyIncident(t)
	waitFor(t, "the block recorded", func() bool { return has(e.outcomes(t, inc.ID), "block_ip 2001:db8:1:2::/64 succeeded") })
	stop()
	time.Sleep(400 * time.Millisecond)
	e.start(t, e.config(), nil) // the restarted daemon expires due blocks at start
	waitFor(t, "the block removed", func() bool { return len(e.cf.Items(account, "vigil_blocked")) == 0 })
	waitFor(t, "the unblock recorded", func() bool { return has(e.outcomes(t, inc.ID), "unblock_ip 2001:db8:1:2::/64 succeeded") })
	if blocks, _ := e.store.ActiveBlocks(context.Background()); len(blocks) != 0 {
		t.Errorf("ledger still holds %v", blocks)
	}
	// A second offence of the same range is blocked twice as long.
	if n, _ := e.store.Offenses(context.Background(), "2001:db8:1:2::/64", time.Now().Add(-time.Hour)); n != 1 {
		t.Errorf("offenses = %d, want 1", n)
	}
}

func TestUnconfiguredIsolationTellsAHuman(t *testing.T) {
	e := newEnv(t)
	e.event(t, "req_p", "203.0.113.77", "key_9", "READ", "org_1", "ns_phi")
	r, _ := e.start(t, e.config(), nil)
	a := withActions(alert("exfil", "org_id", "org_1", t0, "req_p"), responders.IsolateNamespace, responders.Watch)
	a.PHI = true
	r.Enqueue(a)
	inc := e.onlyIncident(t)
	waitFor(t, "the skip recorded", func() bool {
		return has(e.outcomes(t, inc.ID), "isolate_namespace org_1/ns_phi skipped/not_configured")
	})
	if len(inc.Notes) != 1 || !strings.Contains(inc.Notes[0], "a human must isolate org_1/ns_phi") {
		t.Errorf("notes = %q", inc.Notes)
	}
	if !inc.PHI || !inc.NotificationDue.Equal(inc.OpenedAt.Add(60*24*time.Hour)) {
		t.Errorf("PHI clock: phi %v, due %v, opened %v", inc.PHI, inc.NotificationDue, inc.OpenedAt)
	}
	got := e.outcomes(t, inc.ID)
	if !has(got, "watch key:key_9 succeeded") || !has(got, "watch namespace:org_1/ns_phi succeeded") {
		t.Errorf("watch rows = %v", got)
	}
}

func TestStoredAlertsWithoutIncidentAreTriagedAtStart(t *testing.T) {
	e := newEnv(t)
	ipField, _ := event.Lookup(event.Requests, "ip")
	stored := &detector.Alert{Rule: e.rules["brute"], Severity: 1, Group: []detector.GroupValue{{Field: ipField, Value: "203.0.113.44"}},
		Value: 6, Threshold: "> 5", WindowStart: t0.Add(-time.Minute).UnixNano(), WindowEnd: t0.UnixNano(), At: t0.UnixNano(),
		SampleIDs: []string{}, Actions: []string{responders.BlockIP}}
	// The daemon stored the alert and stopped before triaging it.
	if err := e.store.InsertAlerts(context.Background(), []*detector.Alert{stored}); err != nil {
		t.Fatal(err)
	}
	e.start(t, e.config(), nil)
	waitFor(t, "the stored alert blocked", func() bool { return len(e.cf.Items(account, "vigil_blocked")) == 1 })
	inc := e.onlyIncident(t)
	if inc.AlertKeys[0] != stored.Key() {
		t.Errorf("incident holds %q, want %q", inc.AlertKeys, stored.Key())
	}
}

// A stop after a joined alert's incident update but before its plan must
// not lose the targets that alert added: the next start plans it.
func TestJoinedAlertLeftUnplannedIsPlannedAtStart(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.event(t, "req_a", "198.51.100.1", "", "", "org_1", "ns_a")
	// The joined alert's sample, inside its window.
	later := event.Event{Source: event.Requests, TS: t0.Add(time.Minute).UnixNano(), ID: "req_b", OrgID: "org_1", IP: "198.51.100.2",
		Method: "GET", Route: "/v1/x", Operation: "data", Status: 200, Namespace: "ns_b"}
	if err := e.store.InsertEvents(ctx, []storage.Record{{Event: &later}}, ""); err != nil {
		t.Fatal(err)
	}
	orgField, _ := event.Lookup(event.Requests, "org_id")
	stored := func(at time.Time, sample string) *detector.Alert {
		return &detector.Alert{Rule: e.rules["exfil"], Severity: 2, Group: []detector.GroupValue{{Field: orgField, Value: "org_1"}},
			Value: 6, Threshold: "> 5", WindowStart: at.Add(-time.Minute).UnixNano(), WindowEnd: at.UnixNano(), At: at.UnixNano(),
			SampleIDs: []string{sample}, Actions: []string{responders.IsolateNamespace, responders.Watch}}
	}
	// The second alert joins the first's incident (within the cooldown)
	// and brings a new namespace.
	first, joined := stored(t0, "req_a"), stored(t0.Add(61*time.Second), "req_b")
	if err := e.store.InsertAlerts(ctx, []*detector.Alert{first, joined}); err != nil {
		t.Fatal(err)
	}
	// The first start triages both but cannot write the joined alert's plan.
	lost := &planFailingStore{Store: e.store, key: joined.Key()}
	_, stop := e.start(t, e.config(), lost)
	waitFor(t, "the joined alert's plan attempted", func() bool { return lost.failed.Load() > 0 })
	stop()
	inc := e.onlyIncident(t)
	if inc.Alerts != 2 {
		t.Fatalf("incident holds %d alerts, want 2", inc.Alerts)
	}
	if has(e.outcomes(t, inc.ID), "watch namespace:org_1/ns_b succeeded") {
		t.Fatal("the joined alert's plan was written despite the failing store")
	}
	e.start(t, e.config(), nil)
	waitFor(t, "the joined alert planned after the restart", func() bool {
		out := e.outcomes(t, inc.ID)
		return has(out, "watch namespace:org_1/ns_b succeeded") && has(out, "isolate_namespace org_1/ns_b skipped/not_configured")
	})
}

// planFailingStore fails every action log write of one alert's plan.
type planFailingStore struct {
	*storage.Store
	key    string
	failed atomic.Int32
}

func (f *planFailingStore) WriteActions(ctx context.Context, recs []responders.ActionRecord) error {
	for _, r := range recs {
		if r.AlertKey == f.key {
			f.failed.Add(1)
			return errors.New("clickhouse: connection refused")
		}
	}
	return f.Store.WriteActions(ctx, recs)
}

// An alert after its incident was resolved (by an operator, another
// process) opens a new incident instead of reopening the resolved one and
// losing its review clock.
func TestAlertAfterResolutionOpensANewIncident(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := e.config()
	cfg.ControlInterval, cfg.RefreshInterval = 20*time.Millisecond, 50*time.Millisecond
	r, _ := e.start(t, cfg, nil)
	r.Enqueue(alert("brute", "ip", "203.0.113.5", t0))
	first := e.onlyIncident(t)
	resolvedAt := time.Now().UTC().Truncate(time.Millisecond)
	first.Status, first.ResolvedAt, first.UpdatedAt, first.ReviewDue = "resolved", resolvedAt, resolvedAt, resolvedAt.Add(72*time.Hour)
	if err := e.store.WriteIncident(ctx, first); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a few refreshes
	// Within the cooldown: it would have joined the incident were it open.
	r.Enqueue(alert("brute", "ip", "203.0.113.5", t0.Add(61*time.Second)))
	waitFor(t, "a second incident", func() bool {
		incs, _ := e.store.Incidents(ctx, "", 10)
		return len(incs) == 2
	})
	got, err := e.store.Incident(ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != "resolved" || got.Alerts != 1 || !got.ReviewDue.Equal(resolvedAt.Add(72*time.Hour)) {
		t.Errorf("the resolved incident changed: status %s, %d alerts, review due %v", got.Status, got.Alerts, got.ReviewDue)
	}
}

func TestReconcileRepairsDrift(t *testing.T) {
	e := newEnv(t)
	cfg := e.config()
	cfg.ReconcileInterval = 100 * time.Millisecond
	r, _ := e.start(t, cfg, nil)
	r.Enqueue(withActions(alert("brute", "ip", "203.0.113.60", t0), responders.BlockIP))
	waitFor(t, "the block", func() bool { return len(e.cf.Items(account, "vigil_blocked")) == 1 })
	// Someone removes Vigil's item by hand, and adds a Vigil-looking item
	// that no block holds.
	e.cf.RemoveItem(account, "vigil_blocked", "203.0.113.60")
	e.cf.AddItem(account, "vigil_blocked", "203.0.113.61", "vigil incident=inc_gone expires=2026-01-01T00:00:00Z")
	waitFor(t, "the drift repaired", func() bool {
		items := e.cf.Items(account, "vigil_blocked")
		return len(items) == 1 && items[0].IP == "203.0.113.60"
	})
	waitFor(t, "the repairs counted", func() bool { return r.Stats.Drift.Load() >= 2 })
}

func TestRetryableFailuresAreRetriedAndRecorded(t *testing.T) {
	e := newEnv(t)
	e.admin.AddKey("key_1", "active", "WRITE")
	e.admin.AddKey("key_gone", "active", "WRITE")
	e.admin.Inject(2, admintest.Fault{Status: 429, RetryAfter: "1"})
	r, _ := e.start(t, e.config(), nil)
	r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_1", t0), responders.RevokeKey))
	inc := e.onlyIncident(t)
	waitFor(t, "the key revoked", func() bool { return has(e.outcomes(t, inc.ID), "revoke_key key_1 succeeded") })
	got := e.outcomes(t, inc.ID)
	retried := 0
	for _, o := range got {
		if o == "revoke_key key_1 retried" {
			retried++
		}
	}
	if retried != 2 {
		t.Errorf("action log = %v, want 2 retries", got)
	}
	// A 404 is final: one attempt, failed.
	r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_missing", t0), responders.RevokeKey))
	waitFor(t, "the 404 recorded", func() bool {
		incs, _ := e.store.Incidents(context.Background(), "", 10)
		for _, inc := range incs {
			if has(e.outcomes(t, inc.ID), "revoke_key key_missing failed") {
				return true
			}
		}
		return false
	})
}

// A flood of alerts does not become a flood of blocks: with the default
// caps at most 60 blocks a minute go out and the rest are skipped;
// internal addresses in the flood are never blocked.
func TestAlertFloodIsHeldByTheCaps(t *testing.T) {
	e := newEnv(t)
	r, _ := e.start(t, e.config(), nil)
	const flood = 150
	for i := range flood {
		ip := fmt.Sprintf("198.51.%d.%d", 100+i/250, i%250+1)
		if i%10 == 0 {
			ip = fmt.Sprintf("10.9.%d.%d", i/250, i%250+1)
		}
		r.Enqueue(withActions(alert("brute", "ip", ip, t0), responders.BlockIP))
	}
	deadline := time.Now().Add(90 * time.Second)
	for r.Stats.Incidents.Load() < flood {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d incidents triaged in 90s", r.Stats.Incidents.Load(), flood)
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, "the blocks sent", func() bool { return len(e.cf.Items(account, "vigil_blocked")) == 60 })
	// Blocks waiting together are merged into one list write.
	n := e.cf.Count("POST /accounts/{account_id}/rules/lists/{list_id}/items")
	t.Logf("%d list writes for 60 blocks", n)
	if n >= 60 {
		t.Errorf("%d list writes for 60 blocks: not merged", n)
	}
	time.Sleep(200 * time.Millisecond)
	items := e.cf.Items(account, "vigil_blocked")
	if len(items) != 60 {
		t.Errorf("%d blocks at the edge, want the per-minute cap of 60", len(items))
	}
	for _, it := range items {
		if strings.HasPrefix(it.IP, "10.") {
			t.Errorf("internal address %s blocked", it.IP)
		}
	}
	g := r.Gauges()
	if g.ActiveBlocks != 60 {
		t.Errorf("ledger holds %d blocks, want 60", g.ActiveBlocks)
	}
}

// Faults of the edge and the admin API — a hang past the client's
// timeout, a 503, a malformed answer — are retried with backoff or end
// as a recorded failure; nothing is lost and nothing hangs.
func TestDependencyFaultsAreRetriedOrRecorded(t *testing.T) {
	e := newEnv(t)
	e.admin.AddKey("key_1", "active", "WRITE")
	e.admin.AddKey("key_2", "active", "WRITE")
	e.cf.HangNext(1, 3*time.Second) // the client gives up after 2 s; the retry succeeds
	e.admin.Inject(1, admintest.Fault{Status: 503})
	r, _ := e.start(t, e.config(), nil)
	r.Enqueue(withActions(alert("brute", "ip", "203.0.113.70", t0), responders.BlockIP))
	r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_1", t0), responders.RevokeKey))
	waitFor(t, "the block after the hang", func() bool { return len(e.cf.Items(account, "vigil_blocked")) == 1 })
	waitFor(t, "the revoke after the 503", func() bool { k, _ := e.admin.Key("key_1"); return k.Status == "revoked" })
	e.admin.Inject(1, admintest.Fault{Malformed: true})
	r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_2", t0), responders.RevokeKey))
	waitFor(t, "the malformed answer recorded", func() bool {
		incs, _ := e.store.Incidents(context.Background(), "", 10)
		for _, inc := range incs {
			for _, o := range e.outcomes(t, inc.ID) {
				if strings.HasPrefix(o, "revoke_key key_2 ") && (strings.HasSuffix(o, " failed") || strings.HasSuffix(o, " succeeded")) {
					return true
				}
			}
		}
		return false
	})
}

// countingNotifier counts notifications.
type countingNotifier struct{ calls atomic.Int32 }

func (n *countingNotifier) Notify(context.Context, *responders.Incident) error {
	n.calls.Add(1)
	return nil
}

// operator is the responder an undo command (`vigil ips unblock`, `vigil
// keys restore`) builds: another process, with its own edge client.
func (e *env) operator(t *testing.T) *responders.Responder {
	t.Helper()
	cf, err := cloudflare.New(cloudflare.Config{APIToken: cfToken, BaseURL: e.cf.URL(), AccountID: account, ZoneID: zone,
		MaxRetries: -1, BulkPollInterval: 10 * time.Millisecond, RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sys := e.sys
	sys.Blocker = cf
	return responders.New(e.config(), e.store, sys, func(string) *rules.Rule { return nil })
}

const itemsRead = "GET /accounts/{account_id}/rules/lists/{list_id}/items"

func TestOperatorUnblockHoldsAgainstARunningDaemon(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cfg := e.config()
	cfg.ReconcileInterval = 100 * time.Millisecond
	r, _ := e.start(t, cfg, nil)
	r.Enqueue(withActions(alert("brute", "ip", "203.0.113.80", t0), responders.BlockIP))
	waitFor(t, "the block", func() bool { return len(e.cf.Items(account, "vigil_blocked")) == 1 })
	inc := e.onlyIncident(t)
	waitFor(t, "the block recorded", func() bool { return has(e.outcomes(t, inc.ID), "block_ip 203.0.113.80/32 succeeded") })

	if err := e.operator(t).Undo(ctx, responders.Unblock, "203.0.113.80", inc.ID); err != nil {
		t.Fatal(err)
	}
	reads := e.cf.Count(itemsRead)
	waitFor(t, "two reconcile passes", func() bool { return e.cf.Count(itemsRead) >= reads+2 })
	if items := e.cf.Items(account, "vigil_blocked"); len(items) != 0 {
		t.Fatalf("the daemon put the unblocked address back: %v", items)
	}
	if g := r.Gauges(); g.ActiveBlocks != 0 {
		t.Errorf("the daemon holds %d blocks, want 0", g.ActiveBlocks)
	}

	// A new attack from the address is blocked again, not skipped as in force.
	r.Enqueue(withActions(alert("brute", "ip", "203.0.113.80", t0.Add(time.Hour)), responders.BlockIP))
	waitFor(t, "the address blocked again", func() bool { return len(e.cf.Items(account, "vigil_blocked")) == 1 })
}

func TestKillSwitchStopsActionsAlreadyUnderWay(t *testing.T) {
	t.Run("a retry waiting out a 429 is not sent", func(t *testing.T) {
		e := newEnv(t)
		ctx := context.Background()
		e.admin.AddKey("key_1", "active", "WRITE")
		e.admin.Inject(1, admintest.Fault{Status: 429, RetryAfter: "2"})
		cfg := e.config()
		cfg.ControlInterval = 50 * time.Millisecond
		r, stop := e.start(t, cfg, nil)
		r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_1", t0), responders.RevokeKey))
		inc := e.onlyIncident(t)
		waitFor(t, "the 429 recorded", func() bool { return has(e.outcomes(t, inc.ID), "revoke_key key_1 retried") })
		if err := e.store.SetPaused(ctx, true); err != nil { // vigil respond pause
			t.Fatal(err)
		}
		waitFor(t, "the retry skipped", func() bool { return has(e.outcomes(t, inc.ID), "revoke_key key_1 skipped/paused") })
		if n := len(e.admin.Requests()); n != 1 {
			t.Errorf("admin API called %d times, want only the first attempt", n)
		}
		if k, _ := e.admin.Key("key_1"); k.Status != "active" {
			t.Errorf("key status %q, want active", k.Status)
		}

		// The skip ended the action: after a resume and a restart it is
		// not re-sent, and a new alert revokes the key.
		stop()
		if err := e.store.SetPaused(ctx, false); err != nil {
			t.Fatal(err)
		}
		r, _ = e.start(t, e.config(), nil)
		r.Enqueue(withActions(alert("key-abuse", "api_key_id", "key_1", t0.Add(time.Hour)), responders.RevokeKey))
		waitFor(t, "the key revoked by the new incident", func() bool {
			incs, _ := e.store.Incidents(ctx, "", 10)
			for _, i := range incs {
				if i.ID != inc.ID && has(e.outcomes(t, i.ID), "revoke_key key_1 succeeded") {
					return true
				}
			}
			return false
		})
		if got := e.outcomes(t, inc.ID); has(got, "revoke_key key_1 succeeded") {
			t.Errorf("the paused revoke was sent after the restart: %v", got)
		}
	})
	t.Run("a revoke a crash left planned is not resumed", func(t *testing.T) {
		e := newEnv(t)
		ctx := context.Background()
		e.admin.AddKey("key_1", "active", "WRITE")
		if err := e.store.WriteActions(ctx, []responders.ActionRecord{{At: time.Now(), IncidentID: "inc_crashed", Kind: responders.RevokeKey,
			Target: "key_1", Outcome: responders.Planned}}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.SetPaused(ctx, true); err != nil {
			t.Fatal(err)
		}
		e.start(t, e.config(), nil)
		waitFor(t, "the resumed revoke skipped", func() bool { return has(e.outcomes(t, "inc_crashed"), "revoke_key key_1 skipped/paused") })
		if n := len(e.admin.Requests()); n != 0 {
			t.Errorf("admin API called %d times while paused", n)
		}
	})
}

func TestBlockNotAppliedIsNoOffense(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r, _ := e.start(t, e.config(), nil)
	const ip, prefix = "203.0.113.90", "203.0.113.90/32"
	offenses := func() int {
		t.Helper()
		n, err := e.store.Offenses(ctx, prefix, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// Unblocking a range that is not blocked leaves no ledger row.
	if err := e.operator(t).Undo(ctx, responders.Unblock, ip, "inc_none"); err != nil {
		t.Fatal(err)
	}
	if n := offenses(); n != 0 {
		t.Errorf("after unblocking an address never blocked: offenses = %d, want 0", n)
	}

	// Every attempt of the block fails.
	e.cf.Inject(3, cftest.Fault{Endpoint: "POST /accounts/{account_id}/rules/lists/{list_id}/items", Status: 503})
	r.Enqueue(withActions(alert("brute", "ip", ip, t0), responders.BlockIP))
	inc := e.onlyIncident(t)
	waitFor(t, "the block failed", func() bool { return has(e.outcomes(t, inc.ID), "block_ip "+prefix+" failed") })
	if blocks, err := e.store.ActiveBlocks(ctx); err != nil || len(blocks) != 0 {
		t.Errorf("ledger holds %v (%v), want no active block", blocks, err)
	}
	if n := offenses(); n != 0 {
		t.Errorf("after a failed block: offenses = %d, want 0", n)
	}

	// The next block of the range is a first offense.
	r.Enqueue(withActions(alert("brute", "ip", ip, t0.Add(time.Hour)), responders.BlockIP))
	waitFor(t, "the block", func() bool { return len(e.cf.Items(account, "vigil_blocked")) == 1 })
	blocks, err := e.store.ActiveBlocks(ctx)
	if err != nil || len(blocks) != 1 || blocks[0].Offense != 1 {
		t.Errorf("ledger holds %+v (%v), want one active block, offense 1", blocks, err)
	}
}

// withIsolation configures namespace isolation by the org's path, the
// template that needs every namespace's org.
func (e *env) withIsolation(t *testing.T) {
	t.Helper()
	c, err := adminapi.New(adminapi.Config{BaseURL: e.admin.URL, Token: adminToken, Timeout: 2 * time.Second,
		Isolate: &adminapi.IsolateConfig{Path: "/v1/organizations/{org_id}/namespaces/{namespace_id}",
			Body: `{"status":"isolated"}`, LiftBody: `{"status":"active"}`}})
	if err != nil {
		t.Fatal(err)
	}
	e.sys.Keys, e.sys.Isolator = c, c
}

func (e *env) namespaceStatus(t *testing.T, id string) string {
	t.Helper()
	ns, ok := e.admin.Namespace(id)
	if !ok {
		t.Fatalf("no namespace %s in the admin API", id)
	}
	return ns.Status
}

func TestNamespacesOfSeveralOrgsAreIsolatedEachInItsOrg(t *testing.T) {
	e := newEnv(t)
	e.withIsolation(t)
	e.admin.AddNamespace("org_1", "ns_a", "active")
	e.admin.AddNamespace("org_2", "ns_b", "active")
	e.admin.AddNamespace("org_3", "ns_c", "active")
	// One address attacks three namespaces: two orgs the events name, one
	// they do not.
	e.event(t, "req_a", "203.0.113.60", "", "", "org_1", "ns_a")
	e.event(t, "req_b", "203.0.113.60", "", "", "org_2", "ns_b")
	e.event(t, "req_c", "203.0.113.60", "", "", "", "ns_c")
	r, _ := e.start(t, e.config(), nil)
	r.Enqueue(withActions(alert("brute", "ip", "203.0.113.60", t0, "req_a", "req_b", "req_c"), responders.IsolateNamespace, responders.Watch))
	inc := e.onlyIncident(t)
	want := []string{
		"isolate_namespace org_1/ns_a succeeded",
		"isolate_namespace org_2/ns_b succeeded",
		"isolate_namespace ns_c skipped/unknown_org",
		"watch namespace:org_1/ns_a succeeded",
		"watch namespace:org_2/ns_b succeeded",
		"watch namespace:ns_c succeeded",
	}
	waitFor(t, "the isolations recorded", func() bool {
		out := e.outcomes(t, inc.ID)
		for _, w := range want {
			if !has(out, w) {
				return false
			}
		}
		return true
	})
	var paths []string
	for _, req := range e.admin.Requests() {
		paths = append(paths, req.Method+" "+req.Path)
	}
	if len(paths) != 2 || !has(paths, "PATCH /v1/organizations/org_1/namespaces/ns_a") || !has(paths, "PATCH /v1/organizations/org_2/namespaces/ns_b") {
		t.Errorf("admin API requests = %q, want one PATCH per namespace under its own org", paths)
	}
	for id, status := range map[string]string{"ns_a": "isolated", "ns_b": "isolated", "ns_c": "active"} {
		if got := e.namespaceStatus(t, id); got != status {
			t.Errorf("%s is %s, want %s", id, got, status)
		}
	}
	inc = e.onlyIncident(t)
	if inc.NamespaceOrgs["ns_a"] != "org_1" || inc.NamespaceOrgs["ns_b"] != "org_2" || len(inc.NamespaceOrgs) != 2 {
		t.Errorf("stored namespace orgs = %v, want ns_a in org_1 and ns_b in org_2 only", inc.NamespaceOrgs)
	}
	if len(inc.Notes) != 1 || !strings.Contains(inc.Notes[0], "a human must isolate ns_c") {
		t.Errorf("notes = %q, want one telling a human to isolate ns_c", inc.Notes)
	}
}

func TestLiftEndsTheIsolationInEitherNamespaceForm(t *testing.T) {
	for _, tt := range []struct {
		name, given string
	}{
		{"a bare namespace takes its org from the incident", "ns_1"},
		{"a namespace given with its org", "org_1/ns_1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			e.withIsolation(t)
			e.admin.AddNamespace("org_1", "ns_1", "active")
			e.event(t, "req_1", "203.0.113.61", "", "", "org_1", "ns_1")
			r, reads := e.startRefreshing(t)
			r.Enqueue(withActions(alert("exfil", "org_id", "org_1", t0, "req_1"), responders.IsolateNamespace))
			inc := e.onlyIncident(t)
			waitFor(t, "the isolation", func() bool { return has(e.outcomes(t, inc.ID), "isolate_namespace org_1/ns_1 succeeded") })

			if err := e.operator(t).Undo(ctx, responders.LiftIsolation, tt.given, inc.ID); err != nil {
				t.Fatal(err)
			}
			if got := e.namespaceStatus(t, "ns_1"); got != "active" {
				t.Fatalf("after the lift ns_1 is %s, want active", got)
			}
			if out := e.outcomes(t, inc.ID); !has(out, "lift_isolation org_1/ns_1 succeeded") {
				t.Errorf("action log = %v, want the lift recorded as org_1/ns_1", out)
			}

			// Once the daemon has re-read the action log, a new attack on the
			// namespace isolates it again, not skipped as in force.
			reads.waitForRereads(t)
			r.Enqueue(withActions(alert("exfil", "org_id", "org_1", t0.Add(time.Hour), "req_1"), responders.IsolateNamespace))
			waitFor(t, "the namespace isolated again", func() bool { return e.namespaceStatus(t, "ns_1") == "isolated" })
		})
	}
}

// actionReadCounter counts the reads of what is in force.
type actionReadCounter struct {
	*storage.Store
	n atomic.Int32
}

// startRefreshing starts a responder that re-reads what operators change
// every 100 ms, through a store that counts those reads.
func (e *env) startRefreshing(t *testing.T) (*responders.Responder, *actionReadCounter) {
	t.Helper()
	cfg := e.config()
	cfg.ControlInterval, cfg.RefreshInterval = 50*time.Millisecond, 100*time.Millisecond
	reads := &actionReadCounter{Store: e.store}
	r, _ := e.start(t, cfg, reads)
	return r, reads
}

// waitForRereads waits until the daemon has re-read the action log twice
// more: what an operator wrote before the call is then in its view.
func (c *actionReadCounter) waitForRereads(t *testing.T) {
	t.Helper()
	n := c.n.Load()
	waitFor(t, "the daemon to re-read the action log", func() bool { return c.n.Load() >= n+2 })
}

func (c *actionReadCounter) LatestActions(ctx context.Context, kinds []string) ([]responders.ActionRecord, error) {
	c.n.Add(1)
	return c.Store.LatestActions(ctx, kinds)
}

// watchSeries reads vigil_responders_watch_active as "kind target" → value.
func watchSeries(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "vigil_responders_watch_active" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["kind"]+" "+labels["target"]] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestWatchIsExportedWhileInForce(t *testing.T) {
	e := newEnv(t)
	e.event(t, "req_w", "203.0.113.62", "key_w", "READ", "org_1", "ns_w")
	reg := prometheus.NewRegistry()
	cfg := e.config()
	cfg.Metrics = metrics.New(reg, "test")
	cfg.WatchTTL = 2 * time.Second
	r, _ := e.start(t, cfg, nil)
	r.Enqueue(withActions(alert("exfil", "org_id", "org_1", t0, "req_w"), responders.Watch))
	inc := e.onlyIncident(t)
	waitFor(t, "the watches", func() bool {
		out := e.outcomes(t, inc.ID)
		return has(out, "watch key:key_w succeeded") && has(out, "watch namespace:org_1/ns_w succeeded")
	})
	want := map[string]float64{"key key_w": 1, "namespace org_1/ns_w": 1}
	if got := watchSeries(t, reg); !maps.Equal(got, want) {
		t.Errorf("while the watches are in force: %v, want %v", got, want)
	}
	waitFor(t, "the watches to lapse", func() bool { return len(watchSeries(t, reg)) == 0 })
}

// Versions before namespace targets carried the org stored them bare.
func TestIsolationStoredWithoutItsOrgHoldsUntilLifted(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.withIsolation(t)
	e.admin.AddNamespace("org_1", "ns_1", "isolated")
	if err := e.store.WriteActions(ctx, []responders.ActionRecord{{At: time.Now(), IncidentID: "inc_old", Kind: responders.IsolateNamespace,
		Target: "ns_1", Outcome: responders.Succeeded}}); err != nil {
		t.Fatal(err)
	}
	e.event(t, "req_1", "203.0.113.63", "", "", "org_1", "ns_1")
	r, reads := e.startRefreshing(t)
	r.Enqueue(withActions(alert("exfil", "org_id", "org_1", t0, "req_1"), responders.IsolateNamespace))
	inc := e.onlyIncident(t)
	waitFor(t, "the isolation skipped", func() bool { return has(e.outcomes(t, inc.ID), "isolate_namespace org_1/ns_1 skipped/in_force") })

	if err := e.operator(t).Undo(ctx, responders.LiftIsolation, "org_1/ns_1", "inc_old"); err != nil {
		t.Fatal(err)
	}
	reads.waitForRereads(t)
	r.Enqueue(withActions(alert("exfil", "org_id", "org_1", t0.Add(time.Hour), "req_1"), responders.IsolateNamespace))
	waitFor(t, "the namespace isolated again", func() bool { return e.namespaceStatus(t, "ns_1") == "isolated" })
}
