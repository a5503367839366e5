package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
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

// TestDaemonRespondsToAnAttack runs `vigil run` with enforcement on and
// every responder pointed at a local server that speaks its system's API:
// a brute force from one address and a burst on one key become incidents,
// a Sentry event, a block in the Cloudflare list and a revoked key — and
// no configured secret appears in the daemon's output.
func TestDaemonRespondsToAnAttack(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	const (
		adminToken = "admin-token-s3cr3t-7781"
		cfToken    = "cf-token-s3cr3t-9912"
		account    = "0123456789abcdef0123456789abcdef"
		zone       = "fedcba9876543210fedcba9876543210"
	)
	admin := admintest.New(t, adminToken)
	admin.AddKey("key_stolen", "active", "WRITE")
	admin.AddKey("key_root", "active", "ADMIN")
	cf := cftest.New(t, cfToken)
	sentry := sentrytest.New(t)
	broker := brokertest.Start(t, map[string]int32{"requests": 1, "audit": 1})
	addr, db := chtest.NewDatabase(t)
	t.Cleanup(func() { dropConn(addr, db) })

	env := enforcementConfig(t, broker.Addr(), addr, db, admin, adminToken, cf, cfToken, account, zone, sentry, "", "json")
	dir, cfgPath := env.dir, env.cfgPath
	var reqs bytes.Buffer
	t0 := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Second)
	line := func(i int, ip, key, perm string, status int) {
		keyFields := ""
		if key != "" {
			keyFields = fmt.Sprintf(`"api_key_id":%q,"key_permission":%q,`, key, perm)
		}
		fmt.Fprintf(&reqs, `{"ts":%q,"request_id":"req_%d","org_id":"org_1",%s"ip":%q,`+
			`"method":"POST","route":"/v1/organizations","operation":"metadata","status":%d}`+"\n",
			t0.Add(time.Duration(i)*100*time.Millisecond).Format(time.RFC3339Nano), i, keyFields, ip, status)
	}
	for i := range 30 {
		line(i, "198.51.100.50", "", "", 401) // brute force from one address
	}
	for i := 30; i < 60; i++ {
		line(i, "203.0.113.8", "key_stolen", "WRITE", 200) // a stolen key in a burst
	}
	for i := 60; i < 90; i++ {
		line(i, "192.168.1.10", "key_root", "ADMIN", 401) // an internal address: never blocked
	}
	itest.Produce(t, broker.Addr(), "requests", reqs.Bytes())

	logPath := filepath.Join(dir, "daemon.log")
	d := startDaemon(t, cfgPath, logPath)
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.tail(60))
		}
	}()
	deadline := time.Now().Add(time.Minute)
	for {
		k, _ := admin.Key("key_stolen")
		items := cf.Items(account, "vigil_blocked")
		if k.Status == "revoked" && len(items) == 1 && len(sentry.Events()) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no response in 1m: key %s, blocks %v, sentry events %d", k.Status, items, len(sentry.Events()))
		}
		if d.cmd.ProcessState != nil {
			t.Fatal("daemon exited")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if items := cf.Items(account, "vigil_blocked"); items[0].IP != "198.51.100.50" || !strings.Contains(items[0].Comment, "vigil incident=inc_") {
		t.Errorf("block item = %+v", items[0])
	}
	if rules := cf.Rules(zone); len(rules) != 1 || rules[0].Expression != "ip.src in $vigil_blocked" {
		t.Errorf("WAF rules = %+v", rules)
	}
	if k, _ := admin.Key("key_root"); k.Status != "active" {
		t.Errorf("ADMIN key status = %s", k.Status)
	}
	// Three incidents: the brute force from the internal address is one
	// too, but its block is refused by the allowlist.
	if n := countQuery(t, addr, db, "SELECT count() FROM "+db+".incidents FINAL"); n != 3 {
		t.Errorf("incidents = %d, want 3", n)
	}
	if n := countQuery(t, addr, db, "SELECT count() FROM "+db+".actions WHERE kind = 'block_ip' AND target = '192.168.1.10' AND guard = 'allowlist'"); n != 1 {
		t.Errorf("allowlist skips of 192.168.1.10 = %d, want 1", n)
	}
	// Every action happened after its incident row was written: the
	// planned row of each action is written after the incident, and
	// the incident's updated_at precedes it.
	if n := countQuery(t, addr, db, "SELECT count() FROM "+db+".actions AS a INNER JOIN (SELECT id, min(updated_at) AS first FROM "+db+
		".incidents GROUP BY id) AS i ON a.incident_id = i.id WHERE a.at < i.first"); n != 0 {
		t.Errorf("%d actions recorded before their incident", n)
	}

	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	d.cmd.Wait()
	log, _ := os.ReadFile(logPath)

	// The on-call commands read the same database.
	cli := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(append(args, "--config", cfgPath), &out, &errb)
		return code, out.String() + errb.String()
	}
	code, out := cli("incidents", "list")
	if code != 0 || strings.Count(out, "inc_") != 3 || !strings.Contains(out, "key-burst") {
		t.Errorf("incidents list: %d\n%s", code, out)
	}
	var keyIncident string
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "key-burst") {
			keyIncident = strings.Fields(line)[0]
		}
	}
	code, out = cli("incidents", "show", keyIncident)
	if code != 0 || !strings.Contains(out, "revoke_key") || !strings.Contains(out, "succeeded") || !strings.Contains(out, "--param_g0=\"key_stolen\"") {
		t.Errorf("incidents show: %d\n%s", code, out)
	}
	if code, out = cli("keys", "restore", "key_stolen", "--incident", keyIncident); code != 0 {
		t.Errorf("keys restore: %d %s", code, out)
	}
	if k, _ := admin.Key("key_stolen"); k.Status != "active" {
		t.Errorf("restored key status = %s", k.Status)
	}
	if code, out = cli("incidents", "show", keyIncident); code != 0 || !strings.Contains(out, "restore_key") {
		t.Errorf("the restore is not in the action log:\n%s", out)
	}
	if code, out = cli("respond", "pause"); code != 0 {
		t.Errorf("respond pause: %d %s", code, out)
	}
	if _, out = cli("respond", "status"); !strings.Contains(out, "paused") {
		t.Errorf("respond status after pause: %s", out)
	}
	if code, out = cli("incidents", "resolve", keyIncident); code != 0 || !strings.Contains(out, "review due") {
		t.Errorf("incidents resolve: %d %s", code, out)
	}
	if code, out = cli("incidents", "resolve", keyIncident); code != 0 || !strings.Contains(out, "was resolved at") {
		t.Errorf("resolving again must keep the review clock: %d %s", code, out)
	}
	if code, out = cli("incidents", "list", "--status", "closed"); code != 2 || !strings.Contains(out, "use open or resolved") {
		t.Errorf("incidents list --status closed: %d %s", code, out)
	}
	// No planted secret in the logs, the commands' output, any row Vigil
	// wrote to ClickHouse, or any event it sent to Sentry.
	var events bytes.Buffer
	for _, e := range sentry.Envelopes() {
		for _, it := range e.Items {
			events.Write(it.Payload)
		}
	}
	rowsWith := func(table, s string) uint64 {
		return countQuery(t, addr, db, "SELECT count() FROM "+db+"."+table+" AS t WHERE position(toString(tuple(t.*)), '"+s+"') > 0")
	}
	if rowsWith("actions", "key_stolen") == 0 { // the search itself works
		t.Fatal("row search found no action naming key_stolen")
	}
	for _, secret := range []string{adminToken, cfToken, sentry.PublicKey()} {
		if bytes.Contains(log, []byte(secret)) || strings.Contains(out, secret) {
			t.Errorf("a configured secret appears in the daemon's or the commands' output")
		}
		if bytes.Contains(events.Bytes(), []byte(secret)) {
			t.Errorf("a configured secret appears in an event sent to Sentry")
		}
		for _, table := range []string{"incidents", "actions", "alerts", "blocks", "dead_letters", "control"} {
			if n := rowsWith(table, secret); n != 0 {
				t.Errorf("a configured secret appears in %d rows of %s", n, table)
			}
		}
	}
}

// enforcement is a daemon set-up with every responder on, pointed at local
// servers that speak each system's API, and two rules: a brute force from
// an address (block_ip) and a burst on a key (revoke_key).
type enforcement struct {
	dir, cfgPath string
}

// enforcementConfig writes the rules, the secrets and vigil.yaml to a
// temporary directory; respExtra adds keys under responders (indented two
// spaces), logFormat is json or text.
func enforcementConfig(t *testing.T, brokerAddr, chAddr, db string, admin *admintest.Server, adminToken string,
	cf *cftest.Server, cfToken, account, zone string, sentry *sentrytest.Server, respExtra, logFormat string) enforcement {
	t.Helper()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("rules.yaml", `rules:
  - id: brute-force
    source: requests
    where: 'status == 401'
    group_by: [ip]
    window: 1m
    aggregate: count
    threshold: '>= 20'
    severity: critical
    actions: [open_incident, block_ip]
  - id: key-burst
    source: requests
    where: 'status == 200'
    group_by: [api_key_id]
    window: 1m
    aggregate: count
    threshold: '>= 20'
    severity: high
    actions: [open_incident, revoke_key]
`)
	cfgPath := write("vigil.yaml", fmt.Sprintf(`kafka:
  brokers: [%q]
  group_id: vigil
  dead_letter_topic: ""
clickhouse:
  addr: [%q]
  database: %s
  batch_size: 500
  batch_interval: 100ms
  max_buffered_events: 2000
rules:
  paths: [rules.yaml]
responders:
  dry_run: false
  retries: {min_backoff: 50ms, max_backoff: 200ms}
%s  sentry:
    dsn_file: sentry.dsn
  admin_api:
    url: %q
    token_file: admin.token
  cloudflare:
    api_token: ${TEST_CF_TOKEN}
    base_url: %q
    account_id: %s
    zone_id: %s
log:
  level: info
  format: %s
`, brokerAddr, chAddr, db, respExtra, admin.URL, cf.URL(), account, zone, logFormat))
	write("sentry.dsn", sentry.DSN()+"\n")
	write("admin.token", adminToken+"\n")
	t.Setenv("TEST_CF_TOKEN", cfToken)
	return enforcement{dir: dir, cfgPath: cfgPath}
}
