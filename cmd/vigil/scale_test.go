package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/internal/itest"
	"github.com/vigil-sec/vigil/pipeline"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/traffic"
)

// Three keyed replicas share a stream whose attacks are spread over every
// input partition; one is killed with SIGKILL mid-stream and a fourth
// joins. The alerts stored equal `vigil replay --merge` of the input
// partitions, no alert or incident is stored twice, and every record is
// stored once (docs/scaling.md).
func TestKeyedReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	start := time.Now()
	inputs := map[string]int{"requests": 4, "audit": 2}
	s, broker, total := streamOnBroker(t, traffic.Config{Duration: 12 * time.Minute, Rate: 30, Seed: 47, InvalidPerMille: 5},
		dupEveryForTest(), inputs)
	addr, db := chtest.NewDatabase(t)
	t.Cleanup(func() { dropConn(addr, db) })
	rulesDir, err := filepath.Abs("../../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	set, err := rules.LoadFiles(rulesDir)
	if err != nil {
		t.Fatal(err)
	}
	const partitions = 6
	repartition := map[string]int{}
	for _, f := range pipeline.Families(set.Rules, "vigil-", map[event.Source]string{event.Requests: "requests", event.Audit: "audit"}, nil) {
		repartition[f.Topic] = partitions
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vigil.yaml")
	cfg := replicaConfig(broker.Addr(), addr, db, rulesDir, "keyed", partitions)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var replicas []*daemonProc
	launch := func() *daemonProc {
		logPath := filepath.Join(dir, fmt.Sprintf("replica-%d.log", len(replicas)+1))
		t.Cleanup(func() { logTailOnFailure(t, logPath, 30) })
		d := startDaemon(t, cfgPath, logPath)
		replicas = append(replicas, d)
		return d
	}
	for range 3 {
		launch()
	}
	const patience = 4 * time.Minute
	stored := func() uint64 {
		if countQuery(t, addr, db, "SELECT count() FROM system.tables WHERE database = '"+db+"' AND name = 'audit_events'") == 0 {
			return 0
		}
		return countQuery(t, addr, db, "SELECT (SELECT count() FROM "+db+".request_events) + (SELECT count() FROM "+db+".audit_events)")
	}
	for stored() < total*2/5 {
		if time.Since(start) > patience {
			t.Fatalf("%d of %d records stored after %v", stored(), total, patience)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Mid-stream: one replica dies without a word, another joins.
	victim := replicas[1]
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.cmd.Wait()
	t.Logf("replica 2 killed after %v with %d of %d records stored", time.Since(start).Round(time.Millisecond), stored(), total)
	launch()

	// Drained: the routers have read every input record, and the
	// detectors every routed one.
	live := []*daemonProc{replicas[0], replicas[2], replicas[3]}
	drained := time.Now()
	groups := map[string]map[string]int{"vigil-router": inputs, "vigil": repartition}
	for {
		behind := lagging(broker.Addr(), groups)
		if len(behind) == 0 {
			break
		}
		for _, d := range live {
			if d.cmd.ProcessState != nil {
				t.Fatalf("a replica exited:\n%s", d.tail(20))
			}
		}
		if time.Since(drained) > patience {
			t.Fatalf("not drained %v after the kill: %v", patience, behind)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("drained %v after the kill", time.Since(drained).Round(time.Millisecond))
	// The elected responder triages every replica's alerts.
	untriaged := "SELECT count() FROM " + db + ".alerts FINAL WHERE alert_key NOT IN (SELECT arrayJoin(alert_keys) FROM " + db + ".incidents)"
	for countQuery(t, addr, db, untriaged) != 0 {
		if time.Since(drained) > patience {
			t.Fatalf("alerts without an incident %v after draining", time.Since(drained))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var stopping sync.WaitGroup
	for _, d := range live {
		stopping.Go(func() { d.stop(t) })
	}
	stopping.Wait()

	checkStored(t, addr, db, s)
	routed := checkRouted(t, broker.Addr(), repartition)
	t.Logf("%d records routed for %d input records: fan-out %.2f", routed, total, float64(routed)/float64(total))
	got := itest.StoredAlerts(t, addr, db)
	want := replayMerged(t, rulesDir, itest.DumpPartitions(t, broker.Addr(), "requests", inputs["requests"], dir),
		itest.DumpPartitions(t, broker.Addr(), "audit", inputs["audit"], dir))
	missing, extra := compareAlerts(t, got, want, true)
	if n := countQuery(t, addr, db, "SELECT count() FROM (SELECT k FROM (SELECT arrayJoin(alert_keys) AS k FROM "+db+
		".incidents FINAL) GROUP BY k HAVING count() > 1)"); n != 0 {
		t.Errorf("%d alerts are held by more than one incident", n)
	}
	if n := countQuery(t, addr, db, "SELECT toUInt64(count() - uniqExact(rule, group_json, window_start)) FROM "+db+".alerts FINAL"); n != 0 {
		t.Errorf("%d alerts stored twice", n)
	}
	var races int
	for _, d := range replicas {
		b, _ := os.ReadFile(d.log)
		races += strings.Count(string(b), "DATA RACE")
	}
	if races > 0 {
		t.Errorf("the replicas reported %d data races", races)
	}
	incidents := countQuery(t, addr, db, "SELECT count() FROM "+db+".incidents FINAL")
	t.Logf("%d records (%d invalid, %d sent twice) over %d input partitions and %d repartition topics of %d partitions; %d alerts (replay %d, %d missing, %d extra), %d incidents; total %v",
		total, s.invalid, s.dupReq+s.dupAud, inputs["requests"]+inputs["audit"], len(repartition), partitions,
		len(got), len(want), missing, extra, incidents, time.Since(start).Round(time.Millisecond))
}

// checkRouted checks the routers' contract: within a repartition
// partition, each input partition's records (a record routed twice
// counted once) keep their input order, and their merge times never go
// back.
func checkRouted(t *testing.T, addr string, topics map[string]int) (records int) {
	t.Helper()
	type origin struct {
		topic     string
		partition int
	}
	for topic, n := range topics {
		for p := range n {
			next, at := map[origin]int64{}, map[origin]int64{}
			bad := 0
			err := ingest.ReadPartition(context.Background(), ingest.Config{Brokers: []string{addr}}, topic, p, 0, -1, func(m ingest.Message) error {
				if m.Progress != nil {
					return nil
				}
				records++
				o := origin{m.OriginTopic, m.OriginPartition}
				if m.OriginTopic == "" || m.MergeTS == 0 {
					bad++
					return nil
				}
				if m.OriginOffset < next[o] {
					return nil // routed again after a rebalance
				}
				if m.MergeTS < at[o] {
					bad++
				}
				next[o], at[o] = m.OriginOffset+1, m.MergeTS
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if bad > 0 {
				t.Errorf("%s/%d: %d records out of their input partition's order or without origin", topic, p, bad)
			}
		}
	}
	return records
}

// replicaConfig is a daemon configuration for the scaling tests: mode
// single or keyed, short group timings, no ops listener (several run on
// one host).
func replicaConfig(broker, chAddr, db, rulesDir, mode string, partitions int) string {
	return fmt.Sprintf(`kafka:
  brokers: [%q]
  group_id: vigil
  topics: {requests: requests, audit: audit}
  dead_letter_topic: dlq
  session_timeout: 6s
  heartbeat_interval: 1s
clickhouse:
  addr: [%q]
  database: %s
  batch_size: 2000
  batch_interval: 200ms
  max_buffered_events: 6000
rules:
  paths: [%q]
scaling:
  mode: %s
  partitions: %d
ops:
  addr: ""
log:
  level: info
  format: text
`, broker, chAddr, db, rulesDir, mode, partitions)
}

// BenchmarkReplicas measures throughput with 1, 2 and 3 keyed replicas
// (and one single-mode daemon, the baseline) on one stream: the time from
// starting the replicas to every record being stored and evaluated
// (router and detector groups at the end offsets), over the records.
// docs/scaling.md has the figures and the model for more replicas.
func BenchmarkReplicas(b *testing.B) {
	var reqs, auds bytes.Buffer
	if _, err := traffic.Generate(traffic.Config{Duration: 30 * time.Minute, Rate: 65, Seed: 3, Attacks: traffic.AttackNames()}, &reqs, &auds); err != nil {
		b.Fatal(err)
	}
	rulesDir, err := filepath.Abs("../../configs/rules")
	if err != nil {
		b.Fatal(err)
	}
	set, err := rules.LoadFiles(rulesDir)
	if err != nil {
		b.Fatal(err)
	}
	const partitions = 6
	for _, bc := range []struct {
		mode     string
		replicas int
	}{{"single", 1}, {"keyed", 1}, {"keyed", 2}, {"keyed", 3}} {
		b.Run(fmt.Sprintf("%s-%d", bc.mode, bc.replicas), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				broker := brokertest.Start(b, map[string]int32{"requests": 6, "audit": 6, "dlq": 1})
				n := itest.Produce(b, broker.Addr(), "requests", reqs.Bytes()) + itest.Produce(b, broker.Addr(), "audit", auds.Bytes())
				chAddr, db := chtest.NewDatabase(b)
				dir := b.TempDir()
				cfgPath := filepath.Join(dir, "vigil.yaml")
				if err := os.WriteFile(cfgPath, []byte(replicaConfig(broker.Addr(), chAddr, db, rulesDir, bc.mode, partitions)), 0o644); err != nil {
					b.Fatal(err)
				}
				groups := map[string]map[string]int{"vigil": {"requests": 6, "audit": 6}}
				if bc.mode == "keyed" {
					groups = map[string]map[string]int{"vigil-router": {"requests": 6, "audit": 6}, "vigil": {}}
					for _, f := range pipeline.Families(set.Rules, "vigil-", map[event.Source]string{event.Requests: "requests", event.Audit: "audit"}, nil) {
						groups["vigil"][f.Topic] = partitions
					}
				}
				b.StartTimer()
				var ds []*daemonProc
				for i := range bc.replicas {
					ds = append(ds, startDaemon(b, cfgPath, filepath.Join(dir, fmt.Sprintf("replica-%d.log", i))))
				}
				for len(lagging(broker.Addr(), groups)) > 0 {
					for _, d := range ds {
						if d.cmd.ProcessState != nil {
							b.Fatalf("a replica exited:\n%s", d.tail(20))
						}
					}
					time.Sleep(100 * time.Millisecond)
				}
				b.StopTimer()
				b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
				for _, d := range ds {
					d.stop(b)
				}
				b.StartTimer()
			}
		})
	}
}

// lagging returns the partitions whose group has not committed their end
// (group/topic/partition → records behind, -1 when the broker did not
// answer); empty when every group is drained.
func lagging(addr string, groups map[string]map[string]int) map[string]int64 {
	behind := map[string]int64{}
	for group, topics := range groups {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lag, err := groupLag(ctx, addr, group, topics)
		cancel()
		if err != nil {
			behind[group] = -1
		}
		for k, l := range lag {
			if l != 0 {
				behind[group+"/"+k] = l
			}
		}
	}
	return behind
}
