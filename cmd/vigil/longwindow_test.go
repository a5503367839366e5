package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/internal/itest"
)

const longWindowRules = `rules:
  - id: slow-scan
    description: Many not-found answers to one address over a week
    source: requests
    where: 'status == 404 && route startsWith "/v1/"'
    group_by: [ip]
    window: 7d
    aggregate: count
    threshold: '>= 20'
    severity: medium
  - id: fast-burst
    source: requests
    group_by: [ip]
    window: 1m
    aggregate: count
    threshold: '> 1000'
    severity: low
`

// A rule whose window exceeds detector.memory_window_limit runs in
// ClickHouse: the daemon stores the events, the scheduled query fires
// once for the address over the threshold across five days, and its
// cooldown holds on the next evaluations.
func TestDaemonLongWindowRules(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.Mkdir(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rulesDir, "long.yaml"), []byte(longWindowRules), 0o644); err != nil {
		t.Fatal(err)
	}
	// 25 not-found answers to one address and 10 to another, spread over
	// five days that end an hour ago.
	var reqs bytes.Buffer
	end := time.Now().Add(-time.Hour).UTC()
	for i, ip := range append(repeat("198.51.100.7", 25), repeat("198.51.100.8", 10)...) {
		ts := end.Add(-time.Duration(i%25) * 5 * time.Hour)
		fmt.Fprintf(&reqs, `{"ts":%q,"request_id":"req_lw%03d","ip":%q,"org_id":"org_1","api_key_id":"key_1","method":"GET","route":"/v1/files/%d","status":404,"latency_ms":3,"bytes_in":0,"bytes_out":10,"user_agent":"ua","operation":"data"}`+"\n",
			ts.Format(time.RFC3339Nano), i, ip, i)
	}
	broker := brokertest.Start(t, map[string]int32{"requests": 2, "audit": 1, "dlq": 1})
	itest.Produce(t, broker.Addr(), "requests", reqs.Bytes())
	addr, db := chtest.NewDatabase(t)
	t.Cleanup(func() { dropConn(addr, db) })
	cfgPath := filepath.Join(dir, "vigil.yaml")
	cfg := replicaConfig(broker.Addr(), addr, db, rulesDir, "single", 1) + `detector:
  memory_window_limit: 1d
  long_window_interval: 1s
`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "daemon.log")
	t.Cleanup(func() { logTailOnFailure(t, logPath, 30) })
	d := startDaemon(t, cfgPath, logPath)

	fired := "SELECT count() FROM " + db + ".alerts FINAL WHERE rule = 'slow-scan'"
	began := time.Now()
	for countQuery(t, addr, db, fired) == 0 {
		if time.Since(began) > 2*time.Minute {
			t.Fatalf("no slow-scan alert 2m after start:\n%s", d.tail(20))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(3 * time.Second) // a few more evaluations, inside the cooldown
	if n := countQuery(t, addr, db, fired); n != 1 {
		t.Errorf("%d slow-scan alerts, want 1", n)
	}
	if n := countQuery(t, addr, db, fired+" AND group_json LIKE '%198.51.100.7%' AND value = 25"); n != 1 {
		t.Errorf("the slow-scan alert is not for 198.51.100.7 with 25 events")
	}
	d.stop(t)
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// A long-window rule whose where cannot become SQL stops the daemon at
// start, naming the rule's file and line and the fix.
func TestDaemonRejectsLongRuleItCannotQuery(t *testing.T) {
	dir := t.TempDir()
	rulesDir := filepath.Join(dir, "rules")
	if err := os.Mkdir(rulesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(longWindowRules, `where: 'status == 404 && route startsWith "/v1/"'`, `where: 'lower(route) == "/v1/x"'`, 1)
	if err := os.WriteFile(filepath.Join(rulesDir, "long.yaml"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(cfgPath, []byte(replicaConfig("127.0.0.1:1", "127.0.0.1:1", "vigil", rulesDir, "single", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := cmdRun([]string{"--config", cfgPath}, &stdout, &stderr); code == 0 {
		t.Fatal("vigil run started with a long-window rule it cannot query")
	}
	for _, want := range []string{"long.yaml:2", "slow-scan", "lower()", "memory_window_limit"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("error does not name %q:\n%s", want, stderr.String())
		}
	}
}
