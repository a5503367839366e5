package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/internal/itest"
	"github.com/vigil-sec/vigil/traffic"
)

// daemonArgsEnv makes the test binary run `vigil` with these arguments
// (JSON array) instead of the tests: the process-level tests start the
// daemon as a child process this way, with no separate build (and, under
// -race, with the race detector on in the daemon too).
const daemonArgsEnv = "VIGIL_TEST_RUN_MAIN_ARGS"

func TestMain(m *testing.M) {
	if js := os.Getenv(daemonArgsEnv); js != "" {
		var args []string
		if err := json.Unmarshal([]byte(js), &args); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		os.Exit(cmdRun(args, os.Stdout, os.Stderr))
	}
	chtest.Main(m)
}

type daemonProc struct {
	cmd *exec.Cmd
	log string
}

func startDaemon(t testing.TB, cfgPath, logPath string) *daemonProc {
	t.Helper()
	args, _ := json.Marshal([]string{"--config", cfgPath})
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), daemonArgsEnv+"="+string(args))
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemonProc{cmd: cmd, log: logPath}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return d
}

// stop sends SIGTERM and fails t unless the daemon exits with status 0
// within 30s (it drains in-flight batches first). Safe from any goroutine.
func (d *daemonProc) stop(t testing.TB) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Error(err)
		return
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- d.cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err != nil {
			t.Errorf("daemon after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-waitErr
		t.Error("daemon did not stop within 30s of SIGTERM")
	}
}

func (d *daemonProc) tail(n int) string {
	b, _ := os.ReadFile(d.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// countQuery runs a one-number query on one connection per test, retrying
// for a while: the test server restarts itself (data kept) should it die.
func countQuery(t *testing.T, addr, db, q string) uint64 {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := tryCount(addr, db, q)
		if err == nil {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		dropConn(addr, db)
		time.Sleep(250 * time.Millisecond)
	}
}

var (
	connMu sync.Mutex
	conns  = map[string]driver.Conn{}
)

func tryCount(addr, db, q string) (uint64, error) {
	connMu.Lock()
	conn := conns[addr+"/"+db]
	connMu.Unlock()
	if conn == nil {
		c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Database: db, Username: "default"}, DialTimeout: 2 * time.Second})
		if err != nil {
			return 0, err
		}
		connMu.Lock()
		conns[addr+"/"+db] = c
		connMu.Unlock()
		conn = c
	}
	rows, err := conn.Query(context.Background(), q)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
	}
	return n, rows.Err()
}

func dropConn(addr, db string) {
	connMu.Lock()
	defer connMu.Unlock()
	if c := conns[addr+"/"+db]; c != nil {
		c.Close()
		delete(conns, addr+"/"+db)
	}
}

// groupLag returns end offset minus the group's committed offset per
// partition of topics (the whole partition when nothing is committed),
// asked from outside the group (OffsetFetch and ListOffsets).
func groupLag(ctx context.Context, addr, group string, topics map[string]int) (map[string]int64, error) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 5 * time.Second, Transport: tr}
	parts := map[string][]int{}
	reqs := map[string][]kafka.OffsetRequest{}
	for topic, n := range topics {
		for p := range n {
			parts[topic] = append(parts[topic], p)
			reqs[topic] = append(reqs[topic], kafka.LastOffsetOf(p))
		}
	}
	of, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: parts})
	if err != nil {
		return nil, err
	}
	if of.Error != nil {
		return nil, of.Error
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
	if err != nil {
		return nil, err
	}
	committed := map[string]int64{}
	for topic, ps := range of.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, p.Error
			}
			committed[fmt.Sprintf("%s/%d", topic, p.Partition)] = p.CommittedOffset
		}
	}
	out := map[string]int64{}
	for topic, ps := range lo.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, p.Error
			}
			k := fmt.Sprintf("%s/%d", topic, p.Partition)
			out[k] = p.LastOffset - max(committed[k], 0)
		}
	}
	return out, nil
}

// evictDeadMembers removes the members of group from the broker, as their
// session timeout would. The daemon uses Kafka's production session timeout
// (30s, not configurable), so without this a restarted daemon waits 30s
// for the killed member's session to expire before it gets partitions.
func evictDeadMembers(ctx context.Context, addr, group string) ([]string, error) {
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 5 * time.Second, Transport: tr}
	dg, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{group}})
	if err != nil {
		return nil, err
	}
	var ids []string
	var members []kafka.LeaveGroupRequestMember
	for _, g := range dg.Groups {
		if g.Error != nil {
			return nil, g.Error
		}
		for _, m := range g.Members {
			ids = append(ids, m.MemberID)
			members = append(members, kafka.LeaveGroupRequestMember{ID: m.MemberID})
		}
	}
	if len(members) == 0 {
		return nil, nil
	}
	res, err := c.LeaveGroup(ctx, &kafka.LeaveGroupRequest{GroupID: group, Members: members})
	if err != nil {
		return ids, err
	}
	if res.Error != nil {
		return ids, res.Error
	}
	for _, m := range res.Members {
		if m.Error != nil {
			return ids, m.Error
		}
	}
	return ids, nil
}

// `vigil run` killed with SIGKILL mid-stream and started again: it resumes
// from the committed offsets by itself, every valid record ends up stored
// exactly once, every invalid one dead-lettered, the group's offsets reach
// the end, and SIGTERM then stops it with status 0.
func TestDaemonSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	start := time.Now()
	// Several partitions, and some records sent twice by the producer.
	topics := map[string]int{"requests": 3, "audit": 2}
	s, broker, produced := streamOnBroker(t, traffic.Config{Duration: 22 * time.Minute, Rate: 30, Seed: 31, InvalidPerMille: 5},
		dupEveryForTest(), topics)
	addr, db := chtest.NewDatabase(t)
	t.Cleanup(func() { dropConn(addr, db) }) // before the database is dropped (cleanups run last first)
	rulesDir, err := filepath.Abs("../../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "vigil.yaml")
	cfg := fmt.Sprintf(`kafka:
  brokers: [%q]
  group_id: vigil
  topics: {requests: requests, audit: audit}
  dead_letter_topic: dlq
clickhouse:
  addr: [%q]
  database: %s
  batch_size: 2000
  batch_interval: 200ms
  max_buffered_events: 6000
rules:
  paths: [%q]
log:
  level: info
  format: text
`, broker.Addr(), addr, db, rulesDir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "daemon.log")
	t.Cleanup(func() { logTailOnFailure(t, logPath, 60) })

	// Generous limits: under -race the whole suite shares two cores, and a
	// loaded CI machine must not fail this test for being slow.
	const patience = 3 * time.Minute
	stored := func() uint64 {
		return countQuery(t, addr, db, "SELECT (SELECT count() FROM "+db+".request_events) + (SELECT count() FROM "+db+".audit_events)")
	}
	// Kill the daemon with SIGKILL several times, each at a random point of
	// the stream (VIGIL_KILLS, default 2; the soak profile uses more), and
	// restart it each time.
	kills := 2
	if v, err := strconv.Atoi(os.Getenv("VIGIL_KILLS")); err == nil && v > 0 {
		kills = v
	}
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("%d kills, seed %d", kills, seed)
	var storedAtKill []uint64
	for k := 1; k <= kills; k++ {
		launched := time.Now()
		d := startDaemon(t, cfgPath, logPath)
		// A kill point between the previous one and the end, spread out.
		target := produced * uint64(k) / uint64(kills+1)
		target += uint64(rng.Int63n(int64(produced/uint64(4*(kills+1)) + 1)))
		for {
			if time.Since(launched) > patience {
				t.Fatalf("daemon %d did not reach %d stored records in %v:\n%s", k, target, patience, d.tail(20))
			}
			if d.cmd.ProcessState != nil {
				t.Fatalf("daemon %d exited early", k)
			}
			if n := countQuery(t, addr, db, "SELECT count() FROM system.tables WHERE database = '"+db+"' AND name = 'audit_events'"); n == 1 {
				if n := stored(); n >= target {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		d.cmd.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lagAtKill, err := groupLag(ctx, broker.Addr(), "vigil", topics)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		storedAtKill = append(storedAtKill, stored())
		t.Logf("kill %d after %v with %d records stored; group lag %v", k, time.Since(start).Round(time.Millisecond), storedAtKill[k-1], lagAtKill)
		ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
		ids, err := evictDeadMembers(ctx, broker.Addr(), "vigil")
		cancel()
		if err != nil {
			t.Logf("evicting the killed member %v failed (the restart waits for its session to expire): %v", ids, err)
		}
	}

	restart := time.Now()
	d2 := startDaemon(t, cfgPath, logPath)
	total := produced
	waitCommitted(t, d2, broker.Addr(), topics, patience)
	caughtUp := time.Since(restart)
	// The responders triage every stored alert into an incident, including
	// alerts the kill left untriaged (the catch-up pass at start).
	untriaged := "SELECT count() FROM " + db + ".alerts FINAL WHERE alert_key NOT IN (SELECT arrayJoin(alert_keys) FROM " + db + ".incidents)"
	for countQuery(t, addr, db, untriaged) != 0 {
		if time.Since(restart) > patience {
			t.Fatalf("alerts without an incident %v after the restart:\n%s", time.Since(restart), d2.tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
	d2.stop(t)

	// End state.
	checkStored(t, addr, db, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	lag, err := groupLag(ctx, broker.Addr(), "vigil", topics)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	for k, l := range lag {
		if l != 0 {
			t.Errorf("%s: committed offset is %d short of the end offset after SIGTERM", k, l)
		}
	}
	rawRows := stored()
	log, _ := os.ReadFile(logPath)
	if n := strings.Count(string(log), "DATA RACE"); n > 0 {
		t.Errorf("the daemon reported %d data races", n)
	}

	// Alerts: the restarted daemon rebuilds its state from the committed
	// history, so its alerts equal replay's of the same partitions.
	got := itest.StoredAlerts(t, addr, db)
	want := replayMerged(t, rulesDir, itest.DumpPartitions(t, broker.Addr(), "requests", topics["requests"], dir),
		itest.DumpPartitions(t, broker.Addr(), "audit", topics["audit"], dir))
	missing, extra := compareAlerts(t, got, want, true)
	// No incident twice: every alert is held by exactly one incident.
	if n := countQuery(t, addr, db, "SELECT count() FROM (SELECT k FROM (SELECT arrayJoin(alert_keys) AS k FROM "+db+
		".incidents FINAL) GROUP BY k HAVING count() > 1)"); n != 0 {
		t.Errorf("%d alerts are held by more than one incident", n)
	}
	incidents := countQuery(t, addr, db, "SELECT count() FROM "+db+".incidents FINAL")
	if called := countQuery(t, addr, db, "SELECT count() FROM "+db+".actions WHERE outcome NOT IN ('dry_run', 'skipped', 'raised')"); called != 0 {
		t.Errorf("%d actions went beyond dry run with responders.dry_run on", called)
	}
	t.Logf("%d incidents from %d alerts", incidents, len(got))
	t.Logf("%d records (%d invalid, %d sent twice, %d TTL-expired), %d rows before merge (%d duplicates), %v stored at the kills, caught up %v after the last restart, total %v",
		total, s.invalid, s.dupReq+s.dupAud, s.expReq+s.expAud, rawRows, rawRows-(s.validReq-s.expReq)-(s.validAud-s.expAud), storedAtKill,
		caughtUp.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	t.Logf("alerts vs replay after the kill: replay %d, stored %d, %d of replay's missing (dormant beyond retention), %d not in replay",
		len(want), len(got), missing, extra)
}
