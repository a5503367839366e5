package pipeline

import (
	"bytes"
	"context"
	"github.com/vigil-sec/vigil/internal/itest"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/replay"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
	"github.com/vigil-sec/vigil/traffic"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func queryInts(t *testing.T, addr, db, q string) uint64 {
	t.Helper()
	conn := chtest.Open(t, addr, db)
	rows, err := conn.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		rows.Scan(&n)
	}
	return n
}

// The daemon's data path end to end against a real broker and a real
// ClickHouse: every valid record stored once, every invalid one
// dead-lettered, offsets committed to the end, and the stored alerts equal
// to `vigil replay` over the same records.
func TestPipelineStoresEverythingAndAlertsLikeReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	var reqs, auds bytes.Buffer
	man, err := traffic.Generate(traffic.Config{Duration: 30 * time.Minute, Rate: 40, Seed: 11,
		Attacks: traffic.AttackNames(), InvalidPerMille: 5}, &reqs, &auds)
	if err != nil {
		t.Fatal(err)
	}
	broker := brokertest.Start(t, map[string]int32{"requests": 1, "audit": 1, "dlq": 1})
	// One valid record dated far ahead of the clock: dead-lettered, not evaluated.
	replayReqs := append([]byte(nil), reqs.Bytes()...)
	reqs.WriteString(`{"ts":"2200-01-01T00:00:00Z","request_id":"req_future","org_id":"o","ip":"192.0.2.1","method":"GET","route":"/x","operation":"data","status":401}` + "\n")
	nReq := itest.Produce(t, broker.Addr(), "requests", reqs.Bytes())
	nAud := itest.Produce(t, broker.Addr(), "audit", auds.Bytes())
	invalid := int(man.InvalidRequests+man.InvalidAudit) + 1 // + the future record

	set, err := rules.LoadFiles("../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	addr, db := chtest.NewDatabase(t)
	ctx := context.Background()
	store, err := storage.Open(ctx, storage.Config{Addr: []string{addr}, Database: db, Username: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	icfg := testIngest(broker.Addr(), "vigil")
	icfg.DeadLetterTopic = "dlq"
	consumer, err := ingest.NewConsumer(icfg)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	dlq, err := ingest.NewDeadLetterWriter(icfg)
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()
	det := detector.New(set.Rules, detector.Config{Shards: 2})
	defer det.Close()
	// Small batches, two inserted at once, every other one slowed down so
	// that later batches' inserts finish first: what follows the inserts
	// must still go in batch order.
	slow := &overlapStore{Store: store}
	pl := New(Config{BatchSize: 5000, BatchInterval: 300 * time.Millisecond, MaxBuffered: 50000}, consumer, slow, dlq, det)

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pl.Run(runCtx) }()
	deadline := time.Now().Add(2 * time.Minute)
	for pl.Stats.Consumed.Load() < uint64(nReq+nAud) || pl.Stats.Batches.Load() == 0 || pl.Stats.Stored.Load()+pl.Stats.Invalid.Load() < uint64(nReq+nAud) || !drained(t, consumer) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: consumed %d stored %d invalid %d of %d", pl.Stats.Consumed.Load(), pl.Stats.Stored.Load(), pl.Stats.Invalid.Load(), nReq+nAud)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	if n := slow.most.Load(); n != 2 {
		t.Errorf("at most %d events inserts ran at once, want 2 (the default)", n)
	}
	lag, err := consumer.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for topic, parts := range lag {
		for p, l := range parts {
			if l != 0 && topic != "dlq" {
				t.Errorf("lag %s/%d = %d after the drain, want 0", topic, p, l)
			}
		}
	}
	// Records older than the retention are dropped by the TTL at insert.
	wantReq := uint64(nReq) - man.InvalidRequests - 1 - itest.Expired(reqs.Bytes(), event.Requests, 90*24*time.Hour)
	wantAud := uint64(nAud) - man.InvalidAudit - itest.Expired(auds.Bytes(), event.Audit, 365*24*time.Hour)
	if n := queryInts(t, addr, db, "SELECT uniqExact(request_id) FROM "+db+".request_events"); n != wantReq {
		t.Errorf("%d distinct requests stored, want %d", n, wantReq)
	}
	if n := queryInts(t, addr, db, "SELECT uniqExact(event_id) FROM "+db+".audit_events"); n != wantAud {
		t.Errorf("%d distinct audit events stored, want %d", n, wantAud)
	}
	if n := queryInts(t, addr, db, "SELECT count() FROM "+db+".dead_letters FINAL"); n != uint64(invalid) {
		t.Errorf("%d dead letters, want %d", n, invalid)
	}

	// The same records through replay give the same alerts.
	dir := t.TempDir()
	writeFile(t, dir+"/r.jsonl", replayReqs)
	writeFile(t, dir+"/a.jsonl", auds.Bytes())
	rdet := detector.New(set.Rules, detector.Config{})
	var want []string
	if _, err := replay.Run(replay.Options{Requests: []string{dir + "/r.jsonl"}, Audit: []string{dir + "/a.jsonl"}}, rdet,
		func(a *detector.Alert) { want = append(want, string(a.AppendJSON(nil))) }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(want)
	got := itest.StoredAlerts(t, addr, db)
	if len(want) == 0 {
		t.Fatal("the generated attacks fired no alert in replay")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stored alerts differ from replay's:\n got %d:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
}

// testIngest is the consumer configuration of the integration tests: both
// topics, and group timings short enough for tests (the dev broker accepts
// 100 ms sessions; MaxWait under 250 ms only adds i/o-timeout noise).
func testIngest(addr, group string) ingest.Config {
	return ingest.Config{Brokers: []string{addr}, GroupID: group,
		Topics:         map[string]event.Source{"requests": event.Requests, "audit": event.Audit},
		SessionTimeout: time.Second, HeartbeatInterval: 200 * time.Millisecond, RebalanceTimeout: 2 * time.Second,
		MaxWait: 250 * time.Millisecond}
}

// overlapStore slows every other events insert down and records how many
// ran at once.
type overlapStore struct {
	*storage.Store
	calls, running, most atomic.Int32
}

func (s *overlapStore) InsertEvents(ctx context.Context, recs []storage.Record, token string) error {
	n := s.running.Add(1)
	defer s.running.Add(-1)
	for m := s.most.Load(); n > m && !s.most.CompareAndSwap(m, n); m = s.most.Load() {
	}
	if s.calls.Add(1)%2 == 1 {
		time.Sleep(150 * time.Millisecond)
	}
	return s.Store.InsertEvents(ctx, recs, token)
}
