package main

import (
	"bytes"
	"fmt"
	"math/rand"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/internal/itest"
	"github.com/vigil-sec/vigil/responders/adminapi/admintest"
	"github.com/vigil-sec/vigil/responders/cloudflare/cftest"
	"github.com/vigil-sec/vigil/responders/sentry/sentrytest"
)

// Enforcement survives SIGKILL: the daemon is killed twice while it is
// revoking keys, blocking addresses and notifying Sentry for a series of
// attacks, and restarted each time. In the end every attack has exactly
// one incident, every key was revoked and every address blocked once —
// a call cut off by the kill is answered "already revoked" when the
// restarted daemon resumes it, never applied a second time — and each
// action has exactly one succeeded row in the action log.
func TestDaemonResponsesSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	const (
		attacks    = 8
		adminToken = "admin-token-kill-5521"
		cfToken    = "cf-token-kill-6632"
		account    = "0123456789abcdef0123456789abcdef"
		zone       = "fedcba9876543210fedcba9876543210"
	)
	admin := admintest.New(t, adminToken)
	for i := range attacks {
		admin.AddKey(fmt.Sprintf("key_k%02d", i), "active", "WRITE")
	}
	// Slow answers, so that the kills land while calls are in flight.
	admin.Inject(1000, admintest.Fault{Hang: 150 * time.Millisecond})
	cf := cftest.New(t, cfToken)
	sentry := sentrytest.New(t)
	broker := brokertest.Start(t, map[string]int32{"requests": 2, "audit": 1})
	addr, db := chtest.NewDatabase(t)
	t.Cleanup(func() { dropConn(addr, db) })

	env := enforcementConfig(t, broker.Addr(), addr, db, admin, adminToken, cf, cfToken, account, zone, sentry, "  workers: 2\n", "text")
	dir, cfgPath := env.dir, env.cfgPath
	// One brute force and one key burst per minute of event time.
	var reqs bytes.Buffer
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Minute)
	n := 0
	line := func(at time.Time, ip, key string, status int) {
		keyFields := ""
		if key != "" {
			keyFields = fmt.Sprintf(`"api_key_id":%q,"key_permission":"WRITE",`, key)
		}
		fmt.Fprintf(&reqs, `{"ts":%q,"request_id":"req_%d","org_id":"org_1",%s"ip":%q,`+
			`"method":"POST","route":"/v1/organizations","operation":"metadata","status":%d}`+"\n",
			at.Format(time.RFC3339Nano), n, keyFields, ip, status)
		n++
	}
	ips := make([]string, attacks)
	for i := range attacks {
		ips[i] = fmt.Sprintf("198.51.100.%d", 20+i)
		start := t0.Add(time.Duration(i) * 2 * time.Minute)
		for j := range 25 {
			at := start.Add(time.Duration(j) * 200 * time.Millisecond)
			line(at, ips[i], "", 401)
			line(at.Add(50*time.Millisecond), "203.0.113.8", fmt.Sprintf("key_k%02d", i), 200)
		}
	}
	itest.Produce(t, broker.Addr(), "requests", reqs.Bytes())

	logPath := filepath.Join(dir, "daemon.log")
	t.Cleanup(func() { logTailOnFailure(t, logPath, 60) })
	calls := func() int {
		c := 0
		for _, r := range admin.Requests() {
			if r.Method == http.MethodPatch {
				c++
			}
		}
		return c
	}
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	for k, target := range []int{1 + rng.Intn(3), 4 + rng.Intn(3)} {
		d := startDaemon(t, cfgPath, logPath)
		deadline := time.Now().Add(2 * time.Minute)
		for calls() < target {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: %d revoke calls after 2m, want %d", k+1, calls(), target)
			}
			if d.cmd.ProcessState != nil {
				t.Fatalf("run %d: daemon exited", k+1)
			}
			time.Sleep(10 * time.Millisecond)
		}
		d.cmd.Process.Signal(syscall.SIGKILL)
		d.cmd.Wait()
		t.Logf("killed run %d after %d revoke calls", k+1, calls())
		if _, err := evictDeadMembers(t.Context(), broker.Addr(), "vigil"); err != nil {
			t.Logf("evicting the killed member: %v", err)
		}
	}

	d := startDaemon(t, cfgPath, logPath)
	deadline := time.Now().Add(3 * time.Minute)
	for {
		revoked := 0
		for i := range attacks {
			if k, _ := admin.Key(fmt.Sprintf("key_k%02d", i)); k.Status == "revoked" {
				revoked++
			}
		}
		blocked := len(cf.Items(account, "vigil_blocked"))
		incidents := countQuery(t, addr, db, "SELECT count() FROM "+db+".incidents FINAL")
		succeeded := countQuery(t, addr, db, "SELECT count() FROM "+db+".actions WHERE outcome = 'succeeded' AND kind IN ('revoke_key', 'block_ip', 'open_incident')")
		if revoked == attacks && blocked == attacks && incidents == 2*attacks && succeeded >= 4*attacks {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("after the restarts: %d of %d keys revoked, %d addresses blocked, %d incidents, %d succeeded actions",
				revoked, attacks, blocked, incidents, succeeded)
			t.Logf("succeeded by kind: %s; incidents without open_incident success: %s", stringQuery(t, addr, db,
				"SELECT toString(groupArray(tuple(kind, n))) FROM (SELECT kind, count() AS n FROM "+db+".actions WHERE outcome = 'succeeded' GROUP BY kind)"),
				stringQuery(t, addr, db, "SELECT toString(groupArray(tuple(id, rule))) FROM "+db+".incidents FINAL WHERE id NOT IN (SELECT incident_id FROM "+db+
					".actions WHERE kind = 'open_incident' AND outcome = 'succeeded')"))
			t.Fatalf("actions without success: %d (%s)", countQuery(t, addr, db, "SELECT count() FROM (SELECT incident_id, kind, target FROM "+db+
				".actions GROUP BY incident_id, kind, target HAVING countIf(outcome = 'succeeded') = 0)"), stringQuery(t, addr, db,
				"SELECT toString(groupArray(tuple(kind, target, outcomes))) FROM (SELECT kind, target, groupArray(outcome) AS outcomes FROM "+db+
					".actions GROUP BY incident_id, kind, target HAVING countIf(outcome = 'succeeded') = 0)"))
		}
		if d.cmd.ProcessState != nil {
			t.Fatal("restarted daemon exited")
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()

	// Each key changed state once; any repeat was told it already had.
	applied := map[string]int{}
	repeats := 0
	for _, r := range admin.Requests() {
		if r.Method != http.MethodPatch {
			continue
		}
		switch r.Status {
		case http.StatusOK:
			applied[r.Path]++
		case http.StatusConflict:
			repeats++
		}
	}
	for p, c := range applied {
		if c != 1 {
			t.Errorf("%s revoked %d times", p, c)
		}
	}
	if len(applied) != attacks {
		t.Errorf("%d keys revoked, want %d", len(applied), attacks)
	}
	seen := map[string]int{}
	for _, it := range cf.Items(account, "vigil_blocked") {
		seen[it.IP]++
	}
	for _, ip := range ips {
		if seen[ip] != 1 {
			t.Errorf("%s is in the block list %d times", ip, seen[ip])
		}
	}
	for _, q := range []struct{ what, sql string }{
		{"incidents opened twice for one attack", "SELECT count() FROM (SELECT rule, group_json FROM " + db + ".incidents FINAL GROUP BY rule, group_json HAVING count() > 1)"},
		{"alerts held by two incidents", "SELECT count() FROM (SELECT k FROM (SELECT arrayJoin(alert_keys) AS k FROM " + db + ".incidents FINAL) GROUP BY k HAVING count() > 1)"},
		{"actions that succeeded twice", "SELECT count() FROM (SELECT incident_id, kind, target FROM " + db + ".actions WHERE outcome = 'succeeded' GROUP BY incident_id, kind, target HAVING count() > 1)"},
	} {
		if n := countQuery(t, addr, db, q.sql); n != 0 {
			t.Errorf("%d %s", n, q.what)
		}
	}
	notified := map[string]bool{}
	for _, e := range sentry.Events() {
		if tags, ok := e["tags"].(map[string]any); ok {
			if id, ok := tags["incident_id"].(string); ok {
				notified[id] = true
			}
		}
	}
	t.Logf("%d incidents, %d keys revoked (%d repeated calls answered 409), %d addresses blocked, %d Sentry events for %d incidents",
		2*attacks, len(applied), repeats, len(seen), len(sentry.Events()), len(notified))
}

// stringQuery runs a one-string query.
func stringQuery(t *testing.T, addr, db, q string) string {
	t.Helper()
	connMu.Lock()
	conn := conns[addr+"/"+db]
	connMu.Unlock()
	if conn == nil {
		countQuery(t, addr, db, "SELECT 1") // opens the connection
		connMu.Lock()
		conn = conns[addr+"/"+db]
		connMu.Unlock()
	}
	var s string
	if err := conn.QueryRow(t.Context(), q).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}
