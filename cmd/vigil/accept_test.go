package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/internal/itest"
	"github.com/vigil-sec/vigil/traffic"
)

// The daemon's acceptance run: about a million records over both topics
// and several partitions, some invalid, some sent twice. After the daemon
// drains: every valid record stored exactly once, every invalid one
// dead-lettered, committed offsets equal end offsets, and the stored
// alerts equal `vigil replay --merge` over the same records read back from
// each partition. Under the race detector the traffic is smaller; make
// test runs the full size without it.
func TestDaemonAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	start := time.Now()
	dur, rate := 100*time.Minute, 225.0 // ≈ 1.05M records
	if raceEnabled {
		dur, rate = 30*time.Minute, 30
	}
	topics := map[string]int{"requests": 4, "audit": 2}
	s, broker, produced := streamOnBroker(t, traffic.Config{Duration: dur, Rate: rate, Seed: 41, InvalidPerMille: 3}, 1000, topics)
	t.Logf("produced %d records (%d invalid, %d duplicates) in %v", produced, s.invalid, s.dupReq+s.dupAud, time.Since(start).Round(time.Millisecond))

	addr, db := chtest.NewDatabase(t)
	t.Cleanup(func() { dropConn(addr, db) })
	rulesDir, err := filepath.Abs("../../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(cfgPath, []byte(fmt.Sprintf(`kafka:
  brokers: [%q]
  group_id: vigil
  topics: {requests: requests, audit: audit}
  dead_letter_topic: dlq
clickhouse:
  addr: [%q]
  database: %s
rules:
  paths: [%q]
log:
  level: info
  format: text
`, broker.Addr(), addr, db, rulesDir)), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "daemon.log")
	t.Cleanup(func() { logTailOnFailure(t, logPath, 40) })
	launched := time.Now()
	d := startDaemon(t, cfgPath, logPath)
	took := waitCommitted(t, d, broker.Addr(), topics, 10*time.Minute)
	d.stop(t)
	checkStored(t, addr, db, s)
	rows := countQuery(t, addr, db, "SELECT (SELECT count() FROM "+db+".request_events) + (SELECT count() FROM "+db+".audit_events)")

	reqFiles := itest.DumpPartitions(t, broker.Addr(), "requests", topics["requests"], dir)
	audFiles := itest.DumpPartitions(t, broker.Addr(), "audit", topics["audit"], dir)
	want := replayMerged(t, rulesDir, reqFiles, audFiles)
	got := itest.StoredAlerts(t, addr, db)
	missing, extra := compareAlerts(t, got, want, false)
	if len(want) == 0 {
		t.Error("replay found no alerts: the traffic's attacks should fire")
	}
	t.Logf("%d records in %v from start to every offset committed (%.0f records/s), %d rows before merge; alerts: replay %d, stored %d, missing %d, extra %d; total %v",
		produced, took.Round(time.Millisecond), float64(produced)/took.Seconds(), rows, len(want), len(got), missing, extra, time.Since(launched).Round(time.Millisecond))
}
