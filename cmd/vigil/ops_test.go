package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/deploy"
	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/internal/itest"
	"github.com/vigil-sec/vigil/responders/sentry/sentrytest"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// scrape returns the samples of /metrics as "name{labels}" → value.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, _ := strconv.ParseFloat(line[i+1:], 64)
		out[line[:i]] = v
	}
	return out
}

// names returns the metric names of a scrape, histogram suffixes stripped.
func names(samples map[string]float64) map[string]bool {
	out := map[string]bool{}
	for s := range samples {
		name, _, _ := strings.Cut(s, "{")
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suf)
		}
		out[name] = true
	}
	return out
}

// TestOperationsListener runs the daemon with its operations listener:
// probes answer, every metric the dashboard and the alert rules use is
// exported, no secret leaks into /metrics, and rules reload from
// /-/reload, from a file change and from SIGHUP — a bad file keeping the
// old rules and setting the failed-reload metric.
func TestOperationsListener(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	broker := brokertest.Start(t, map[string]int32{"requests": 1, "audit": 1})
	addr, db := chtest.NewDatabase(t)
	t.Cleanup(func() { dropConn(addr, db) })
	sentry := sentrytest.New(t)
	ops := freeAddr(t)
	base := "http://" + ops
	dir := t.TempDir()
	goodRules := `rules:
  - {id: brute-force, source: requests, where: 'status == 401', group_by: [ip], window: 1m, aggregate: count, threshold: '>= 10', severity: medium}
  - {id: brute-tighter, mode: shadow, source: requests, where: 'status == 401', group_by: [ip], window: 1m, aggregate: count, threshold: '>= 5', severity: high}
`
	rulesPath := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rulesPath, []byte(goodRules), 0o644)
	os.WriteFile(filepath.Join(dir, "dsn"), []byte(sentry.DSN()), 0o600)
	cfgPath := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`kafka: {brokers: [%q], dead_letter_topic: ""}
clickhouse: {addr: [%q], database: %s, batch_size: 100, batch_interval: 100ms, max_buffered_events: 1000}
rules: {paths: [rules.yaml]}
responders:
  sentry: {dsn_file: dsn}
ops: {addr: %q, watch_interval: 200ms}
log: {level: info, format: text}
`, broker.Addr(), addr, db, ops)), 0o644)
	logPath := filepath.Join(dir, "daemon.log")
	d := startDaemon(t, cfgPath, logPath)
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.tail(40))
		}
	}()
	waitHTTP := func(path string, want int) string {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			resp, err := http.Get(base + path)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == want {
					return string(b)
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: no %d within a minute (%v)", path, want, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitHTTP("/healthz", 200)
	waitHTTP("/readyz", 200)

	var reqs bytes.Buffer
	t0 := time.Now().UTC().Add(-5 * time.Minute).Truncate(time.Second)
	for i := range 12 {
		fmt.Fprintf(&reqs, `{"ts":%q,"request_id":"req_%d","org_id":"o","ip":"198.51.100.4","method":"GET","route":"/x","operation":"data","status":401}`+"\n",
			t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), i)
	}
	reqs.WriteString("{not json\n")
	itest.Produce(t, broker.Addr(), "requests", reqs.Bytes())
	deadline := time.Now().Add(time.Minute)
	var samples map[string]float64
	for {
		samples = scrape(t, base)
		if samples[`vigil_detector_alerts_total{rule="brute-force",severity="medium"}`] == 1 &&
			samples[`vigil_detector_shadow_alerts_total{rule="brute-tighter",severity="high"}`] == 1 &&
			samples[`vigil_responders_incidents_opened_total{severity="medium"}`] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alert and incident in the metrics within a minute")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The shadow rule's alert is stored, marked, and opened no incident.
	if n := countQuery(t, addr, db, "SELECT count() FROM "+db+".alerts FINAL WHERE rule = 'brute-tighter' AND shadow"); n != 1 {
		t.Errorf("stored shadow alerts = %d, want 1", n)
	}
	if n := countQuery(t, addr, db, "SELECT count() FROM "+db+".incidents FINAL"); n != 1 {
		t.Errorf("incidents = %d, want 1 (none for the shadow rule)", n)
	}
	if samples[`vigil_responders_incidents_opened_total{severity="high"}`] != 0 {
		t.Error("the shadow rule opened an incident")
	}
	if v := samples[`vigil_ingest_records_invalid_total{reason="malformed_json",source="requests"}`]; v != 1 {
		t.Errorf("invalid malformed_json = %v, want 1", v)
	}
	if v := samples[`vigil_ingest_records_consumed_total{source="requests"}`]; v != 13 {
		t.Errorf("consumed = %v, want 13", v)
	}
	exported := names(samples)
	used, err := deploy.MetricNames()
	if err != nil {
		t.Fatal(err)
	}
	// Series that exist only while something is in force (a watch, here
	// none: the daemon runs in dry run).
	onlyWhileActive := map[string]bool{"vigil_responders_watch_active": true}
	for _, n := range used {
		if !exported[n] && !onlyWhileActive[n] {
			t.Errorf("%s is used by the dashboard or the alert rules but not exported", n)
		}
	}
	// docs/operations.md's metrics table and the daemon agree both ways.
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	section := string(doc)
	section = section[strings.Index(section, "## Metrics"):]
	section = section[:strings.Index(section[3:], "\n## ")+3]
	documented := map[string]bool{}
	for _, line := range strings.Split(section, "\n") {
		if strings.HasPrefix(line, "| `vigil_") {
			documented[strings.Trim(strings.Fields(line)[1], "`")] = true
		}
	}
	for n := range documented {
		if !exported[n] && !onlyWhileActive[n] {
			t.Errorf("docs/operations.md documents %s, which the daemon does not export", n)
		}
	}
	for n := range exported {
		if strings.HasPrefix(n, "vigil_") && !documented[n] {
			t.Errorf("%s is exported but not in docs/operations.md's metrics table", n)
		}
	}
	var raw bytes.Buffer
	for k := range samples {
		raw.WriteString(k)
	}
	if strings.Contains(raw.String(), sentry.PublicKey()) {
		t.Error("the Sentry DSN's key appears in /metrics")
	}

	// A bad rule file is rejected with file:line:col; the old rules stay.
	os.WriteFile(rulesPath, []byte(goodRules+"  - {id: Bad, source: nowhere}\n"), 0o644)
	resp, err := http.Post(base+"/-/reload", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(body), "rules.yaml:4:") {
		t.Errorf("reload of a bad file: %d %q, want 500 with rules.yaml:4:col", resp.StatusCode, body)
	}
	samples = scrape(t, base)
	if samples["vigil_rules_last_reload_successful"] != 0 || samples["vigil_rules_loaded"] != 2 {
		t.Errorf("after a failed reload: last_reload_successful %v, loaded %v; want 0 and 2",
			samples["vigil_rules_last_reload_successful"], samples["vigil_rules_loaded"])
	}

	// A fixed file is picked up by the watcher.
	os.WriteFile(rulesPath, []byte(goodRules+"  - {id: second, source: audit, where: 'action == \"x\"', severity: low, new_value: {field: ip, per: [actor_id]}}\n"), 0o644)
	deadline = time.Now().Add(30 * time.Second)
	for samples = scrape(t, base); samples["vigil_rules_loaded"] != 3 || samples["vigil_rules_last_reload_successful"] != 1; samples = scrape(t, base) {
		if time.Now().After(deadline) {
			t.Fatalf("the watcher did not reload the fixed file: %v rules", samples["vigil_rules_loaded"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	// SIGHUP reloads too.
	before := samples[`vigil_rules_reloads_total{result="success"}`]
	d.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(30 * time.Second)
	for scrape(t, base)[`vigil_rules_reloads_total{result="success"}`] != before+1 {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload")
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	d.cmd.Wait()
	if log, _ := os.ReadFile(logPath); bytes.Contains(log, []byte(sentry.PublicKey())) {
		t.Error("the Sentry DSN's key appears in the daemon's log")
	}
}
