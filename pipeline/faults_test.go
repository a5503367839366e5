package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/devbroker"
	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/internal/itest"
	"github.com/vigil-sec/vigil/replay"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
	"github.com/vigil-sec/vigil/traffic"
)

// Fault tests: the daemon's data path keeps its guarantees when ClickHouse
// or the broker goes away mid-stream and comes back, with no operator
// action. They run in CI, so outages are kept short (see the constants).

// Outage lengths: short in CI, longer in the soak profile
// (VIGIL_CH_OUTAGE=60s, VIGIL_BROKER_OUTAGE=30s make soak).
var (
	// chOutage is how long ClickHouse is down in
	// TestClickHouseOutageMidStream; 10s is enough for several retries with
	// backoff and for the queue to fill.
	chOutage = envDuration("VIGIL_CH_OUTAGE", 10*time.Second)
	// brokerOutage is how long the broker is down in
	// TestBrokerRestartMidStream.
	brokerOutage = envDuration("VIGIL_BROKER_OUTAGE", 2*time.Second)
)

func envDuration(name string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(name)); err == nil && d > 0 {
		return d
	}
	return def
}

const (
	faultBatch       = 2000
	faultMaxBuffered = 3 * faultBatch
	faultPartitions  = 3
)

// faultData is ~60k generated records (a few per mille invalid) split in
// two halves per topic, with what must end up in ClickHouse.
type faultData struct {
	reqs, auds       [2][]byte // halves
	valid            uint64    // valid records
	wantReq, wantAud uint64    // distinct records ClickHouse keeps (valid minus TTL-expired)
	invalid          uint64
	total            uint64
	nReq, nAud       uint64
}

func makeFaultData(t *testing.T, seed uint64) *faultData {
	t.Helper()
	var reqs, auds bytes.Buffer
	man, err := traffic.Generate(traffic.Config{Duration: 22 * time.Minute, Rate: 28, Seed: seed,
		Attacks: traffic.AttackNames(), InvalidPerMille: 5}, &reqs, &auds)
	if err != nil {
		t.Fatal(err)
	}
	d := &faultData{nReq: man.Requests, nAud: man.Audit, invalid: man.InvalidRequests + man.InvalidAudit}
	d.total = d.nReq + d.nAud
	d.valid = d.total - d.invalid
	d.reqs = splitLines(reqs.Bytes())
	d.auds = splitLines(auds.Bytes())
	d.wantReq = man.Requests - man.InvalidRequests - itest.Expired(reqs.Bytes(), event.Requests, 90*24*time.Hour)
	d.wantAud = man.Audit - man.InvalidAudit - itest.Expired(auds.Bytes(), event.Audit, 365*24*time.Hour)
	if d.total < 50000 || d.invalid == 0 {
		t.Fatalf("generated %d records, %d invalid: want ~60k with some invalid", d.total, d.invalid)
	}
	return d
}

// produce writes the given halves of the data (0, 1 or both) to the
// request and audit topics.
func (d *faultData) produce(ctx context.Context, addr string, halves ...int) error {
	for _, topic := range []struct {
		name string
		data [2][]byte
	}{{"requests", d.reqs}, {"audit", d.auds}} {
		for _, h := range halves {
			if _, err := itest.ProduceLines(ctx, addr, topic.name, topic.data[h]); err != nil {
				return err
			}
		}
	}
	return nil
}

// splitLines cuts data in two at a line boundary near the middle.
func splitLines(data []byte) [2][]byte {
	mid := len(data) / 2
	i := bytes.IndexByte(data[mid:], '\n')
	if i < 0 {
		return [2][]byte{data, nil}
	}
	return [2][]byte{data[:mid+i+1], data[mid+i+1:]}
}

// witnessStore wraps the real store and remembers every Kafka offset whose
// insert (events or dead letters) ClickHouse acknowledged, so the test can
// check at any moment, even while ClickHouse is down, that no committed
// offset covers a record that is not stored.
type witnessStore struct {
	*storage.Store
	mu     sync.Mutex
	stored map[storage.Origin]bool // Origin with the offset
}

func (w *witnessStore) InsertEvents(ctx context.Context, recs []storage.Record, token string) error {
	err := w.Store.InsertEvents(ctx, recs, token)
	if err == nil {
		w.mu.Lock()
		for _, r := range recs {
			w.stored[r.Origin] = true
		}
		w.mu.Unlock()
	}
	return err
}

func (w *witnessStore) InsertDeadLetters(ctx context.Context, dls []storage.DeadLetter) error {
	err := w.Store.InsertDeadLetters(ctx, dls)
	if err == nil {
		w.mu.Lock()
		for _, d := range dls {
			w.stored[d.Origin] = true
		}
		w.mu.Unlock()
	}
	return err
}

// checkCommitted fails unless, for every committed offset c of a partition,
// every offset below c (topics are fresh, so offsets start at 0) was
// acknowledged by ClickHouse.
func (w *witnessStore) checkCommitted(t *testing.T, committed map[string]map[int]int64, when string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for topic, parts := range committed {
		for p, c := range parts {
			for off := int64(0); off < c; off++ {
				if !w.stored[storage.Origin{Topic: topic, Partition: int32(p), Offset: off}] {
					t.Errorf("%s: %s/%d committed at %d but offset %d was never stored", when, topic, p, c, off)
					break
				}
			}
		}
	}
}

// storedEnds asks ClickHouse for max(offset)+1 per topic/partition over the
// events and dead-letter tables.
func storedEnds(t *testing.T, addr, db string) map[string]map[int]int64 {
	t.Helper()
	conn := chtest.Open(t, addr, db)
	q := fmt.Sprintf(`SELECT topic, partition, max(offset) + 1 FROM (
		SELECT toString(topic) AS topic, partition, offset FROM %[1]s.request_events
		UNION ALL SELECT toString(topic), partition, offset FROM %[1]s.audit_events
		UNION ALL SELECT toString(topic), partition, offset FROM %[1]s.dead_letters) GROUP BY topic, partition`, db)
	rows, err := conn.Query(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]map[int]int64{}
	for rows.Next() {
		var topic string
		var p uint32
		var end uint64
		if err := rows.Scan(&topic, &p, &end); err != nil {
			t.Fatal(err)
		}
		if out[topic] == nil {
			out[topic] = map[int]int64{}
		}
		out[topic][int(p)] = int64(end)
	}
	return out
}

type faultRig struct {
	consumer *ingest.Consumer
	store    *witnessStore
	pl       *Pipeline
	cancel   context.CancelFunc
	done     chan error
}

func startFaultPipeline(t *testing.T, brokerAddr, chAddr, db string) *faultRig {
	return startFaultPipelineWith(t, brokerAddr, chAddr, db, nil)
}

// startFaultPipelineWith is startFaultPipeline with the store wrapped
// (nil: the witness store itself).
func startFaultPipelineWith(t *testing.T, brokerAddr, chAddr, db string, wrap func(*witnessStore) Store) *faultRig {
	t.Helper()
	set, err := rules.LoadFiles("../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := storage.Open(ctx, storage.Config{Addr: []string{chAddr}, Database: db, Username: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ws := &witnessStore{Store: st, stored: map[storage.Origin]bool{}}
	log := slog.New(slog.NewTextHandler(&tlogWriter{t: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	icfg := testIngest(brokerAddr, "vigil")
	icfg.DeadLetterTopic, icfg.Logger = "dlq", slog.New(slog.DiscardHandler)
	consumer, err := ingest.NewConsumer(icfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { consumer.Close() })
	dlq, err := ingest.NewDeadLetterWriter(icfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dlq.Close() })
	det := detector.New(set.Rules, detector.Config{Shards: 2})
	t.Cleanup(det.Close)
	// RetryMax 2s (default 10s) keeps the recovery after the outage short.
	var store Store = ws
	if wrap != nil {
		store = wrap(ws)
	}
	pl := New(Config{BatchSize: faultBatch, BatchInterval: 200 * time.Millisecond, MaxBuffered: faultMaxBuffered,
		RetryMax: 2 * time.Second, Logger: log}, consumer, store, dlq, det)
	runCtx, cancel := context.WithCancel(ctx)
	r := &faultRig{consumer: consumer, store: ws, pl: pl, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- pl.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// waitBatches waits until n batches were stored, at most 40s after start.
func (r *faultRig) waitBatches(t *testing.T, n uint64, start time.Time) {
	t.Helper()
	for r.pl.Stats.Batches.Load() < n {
		if time.Since(start) > 40*time.Second {
			t.Fatal("no batch stored")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *faultRig) buffered() int64 {
	s := &r.pl.Stats
	return int64(s.Consumed.Load()) - int64(s.Stored.Load()) - int64(s.Invalid.Load())
}

// waitLagZero waits until the group has committed every input partition to
// its end and at least total records went through, then stops the pipeline.
func (r *faultRig) waitLagZero(t *testing.T, total uint64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s := &r.pl.Stats
		if s.Stored.Load()+s.Invalid.Load() >= total {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			lag, err := r.consumer.Lag(ctx)
			cancel()
			if err == nil && sumLag(lag) == 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			lag, err := r.consumer.Lag(ctx)
			cancel()
			t.Fatalf("no zero lag after %v: consumed %d stored %d invalid %d of %d; lag %v (%v)", timeout,
				s.Consumed.Load(), s.Stored.Load(), s.Invalid.Load(), total, lag, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("pipeline: %v", err)
	}
	r.done <- nil // for the cleanup
}

func sumLag(lag map[string]map[int]int64) int64 {
	var n int64
	for _, parts := range lag {
		for _, l := range parts {
			n += l
		}
	}
	return n
}

// checkEndState: every valid record stored exactly once (distinct = FINAL
// count = valid minus TTL-expired), every invalid one dead-lettered, every
// committed offset covered by stored records, and the stored alerts equal
// `vigil replay --merge` over the partitions read back from the broker.
func checkEndState(t *testing.T, d *faultData, r *faultRig, brokerAddr, addr, db string) {
	t.Helper()
	checkAlertsMatchReplay(t, brokerAddr, addr, db)
	for _, c := range []struct {
		q    string
		want uint64
	}{
		{"SELECT uniqExact(request_id) FROM " + db + ".request_events", d.wantReq},
		{"SELECT count() FROM " + db + ".request_events FINAL", d.wantReq},
		{"SELECT uniqExact(event_id) FROM " + db + ".audit_events", d.wantAud},
		{"SELECT count() FROM " + db + ".audit_events FINAL", d.wantAud},
		{"SELECT count() FROM " + db + ".dead_letters FINAL", d.invalid},
	} {
		if n := queryInts(t, addr, db, c.q); n != c.want {
			t.Errorf("%s = %d, want %d", c.q, n, c.want)
		}
	}
	committed := r.consumer.Committed()
	r.store.checkCommitted(t, committed, "end")
	ends := storedEnds(t, addr, db)
	for topic, parts := range committed {
		for p, c := range parts {
			if ends[topic][p] < c {
				t.Errorf("end: %s/%d committed at %d, ClickHouse holds offsets only up to %d", topic, p, c, ends[topic][p])
			}
		}
	}
}

// checkAlertsMatchReplay compares the stored alerts with replay's over the
// fault tests' topics as the broker holds them.
func checkAlertsMatchReplay(t *testing.T, brokerAddr, addr, db string) {
	t.Helper()
	dir := t.TempDir()
	reqs := itest.DumpPartitions(t, brokerAddr, "requests", faultPartitions, dir)
	auds := itest.DumpPartitions(t, brokerAddr, "audit", faultPartitions, dir)
	set, err := rules.LoadFiles("../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	det := detector.New(set.Rules, detector.Config{})
	defer det.Close()
	var want []string
	if _, err := replay.Run(replay.Options{Requests: reqs, Audit: auds, MergeFiles: true}, det,
		func(a *detector.Alert) { want = append(want, string(a.AppendJSON(nil))) }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(want)
	got := itest.StoredAlerts(t, addr, db)
	if len(want) == 0 {
		t.Error("replay fired no alert: the traffic's attacks should")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stored alerts differ from replay --merge of the same partitions:\n got %d:\n%s\nwant %d:\n%s",
			len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
}

type tlogWriter struct {
	t  *testing.T
	mu sync.Mutex
}

var _ io.Writer = (*tlogWriter)(nil)

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t.Log(string(bytes.TrimSuffix(p, []byte("\n"))))
	return len(p), nil
}

// ClickHouse goes down for chOutage while records keep arriving: the
// pipeline holds at most MaxBuffered (+ one batch) records, commits nothing
// it has not stored, and once ClickHouse is back it drains by itself to
// zero lag with every record stored once.
func TestClickHouseOutageMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	start := time.Now()
	d := makeFaultData(t, 21)
	inst, err := chtest.StartInstance(t.TempDir())
	if err != nil {
		t.Fatalf("starting a ClickHouse of our own: %v", err)
	}
	t.Cleanup(func() { inst.Stop() })
	addr, db := inst.Addr.Native, "vigil_faults"
	broker := brokertest.Start(t, map[string]int32{"requests": faultPartitions, "audit": faultPartitions, "dlq": 1})
	ctx := context.Background()
	if err := d.produce(ctx, broker.Addr(), 0); err != nil {
		t.Fatal(err)
	}
	r := startFaultPipeline(t, broker.Addr(), addr, db)

	// Let some batches be stored, then pull the plug.
	r.waitBatches(t, 3, start)
	r.store.checkCommitted(t, r.consumer.Committed(), "before the outage")
	storedBefore := r.pl.Stats.Stored.Load() + r.pl.Stats.Invalid.Load()
	t.Logf("stopping ClickHouse after %d batches (%d records stored)", r.pl.Stats.Batches.Load(), storedBefore)
	stopAt := time.Now()
	if err := inst.Stop(); err != nil {
		t.Fatal(err)
	}
	// The second half arrives during the outage.
	prodErr := make(chan error, 1)
	go func() {
		prodErr <- d.produce(ctx, broker.Addr(), 1)
	}()
	var maxBuf int64
	var committedDuring map[string]map[int]int64
	for time.Since(stopAt) < chOutage {
		if b := r.buffered(); b > maxBuf {
			maxBuf = b
		}
		if maxBuf > faultMaxBuffered+faultBatch {
			t.Fatalf("%d records held during the outage, want at most MaxBuffered %d + one batch %d", maxBuf, faultMaxBuffered, faultBatch)
		}
		committedDuring = r.consumer.Committed()
		r.store.checkCommitted(t, committedDuring, "during the outage")
		if t.Failed() {
			t.FailNow()
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := <-prodErr; err != nil {
		t.Fatal(err)
	}
	consumedDuring := r.pl.Stats.Consumed.Load()
	if maxBuf < faultMaxBuffered-faultBatch {
		t.Errorf("only %d records held during the outage: the queue should have filled up to about MaxBuffered %d", maxBuf, faultMaxBuffered)
	}
	if consumedDuring >= d.total {
		t.Errorf("consumed all %d records during the outage: consumption did not pause", consumedDuring)
	}
	t.Logf("outage %v: at most %d records held (MaxBuffered %d, batch %d), %d of %d consumed, %d insert retries",
		time.Since(stopAt).Round(time.Millisecond), maxBuf, faultMaxBuffered, faultBatch, consumedDuring, d.total, r.pl.Stats.InsertRetries.Load())
	if err := inst.Start(); err != nil {
		t.Fatal(err)
	}
	if inst.Addr.Native != addr {
		t.Fatalf("ClickHouse came back on %s, not %s (port taken meanwhile)", inst.Addr.Native, addr)
	}
	// What was committed during the outage is in ClickHouse.
	ends := storedEnds(t, addr, db)
	for topic, parts := range committedDuring {
		for p, c := range parts {
			if ends[topic][p] < c {
				t.Errorf("during the outage %s/%d was committed at %d, ClickHouse holds offsets only up to %d", topic, p, c, ends[topic][p])
			}
		}
	}
	r.waitLagZero(t, d.total, 40*time.Second)
	checkEndState(t, d, r, broker.Addr(), addr, db)
	t.Logf("%d records (%d invalid, %d TTL-expired), %d insert retries, total %v", d.total, d.invalid,
		d.valid-d.wantReq-d.wantAud, r.pl.Stats.InsertRetries.Load(), time.Since(start).Round(time.Millisecond))
}

// The broker (with a data directory) goes away for brokerOutage mid-stream
// and comes back on the same address: the pipeline reconnects, rejoins and
// ends with every record stored once and zero lag, without operator action.
func TestBrokerRestartMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	start := time.Now()
	d := makeFaultData(t, 23)
	addr, db := chtest.NewDatabase(t)
	topics := map[string]int32{"requests": faultPartitions, "audit": faultPartitions, "dlq": 1}
	dir := t.TempDir()
	bcfg := devbroker.Config{Addr: "127.0.0.1:0", DataDir: dir, GroupMinSessionTimeout: 100 * time.Millisecond, Topics: topics}
	broker, err := devbroker.Start(bcfg)
	if err != nil {
		t.Fatal(err)
	}
	var bmu sync.Mutex
	t.Cleanup(func() {
		bmu.Lock()
		defer bmu.Unlock()
		broker.Close()
	})
	baddr := broker.Addr()
	ctx := context.Background()
	if err := d.produce(ctx, baddr, 0); err != nil {
		t.Fatal(err)
	}
	r := startFaultPipeline(t, baddr, addr, db)
	r.waitBatches(t, 3, start)
	t.Logf("closing the broker after %d batches", r.pl.Stats.Batches.Load())
	bmu.Lock()
	if err := broker.Close(); err != nil {
		bmu.Unlock()
		t.Fatal(err)
	}
	bmu.Unlock()
	time.Sleep(brokerOutage)
	r.store.checkCommitted(t, r.consumer.Committed(), "during the broker outage")
	bcfg.Addr = baddr
	nb, err := devbroker.Start(bcfg)
	if err != nil {
		t.Fatalf("restarting the broker on %s: %v", baddr, err)
	}
	bmu.Lock()
	broker = nb
	bmu.Unlock()
	if err := d.produce(ctx, baddr, 1); err != nil {
		t.Fatal(err)
	}
	r.waitLagZero(t, d.total, 40*time.Second)
	checkEndState(t, d, r, broker.Addr(), addr, db)
	t.Logf("%d records (%d invalid), %d stored incl. redeliveries, broker down %v, total %v", d.total, d.invalid,
		r.pl.Stats.Stored.Load()+r.pl.Stats.Invalid.Load(), brokerOutage, time.Since(start).Round(time.Millisecond))
}

// flakyStore is a slow, unreliable ClickHouse: every insert is delayed, a
// third of the event inserts fail with a retryable error, and half of
// those fail after the rows were stored (the answer lost on the way back).
type flakyStore struct {
	*witnessStore
	delay  time.Duration
	calls  atomic.Int64
	failed atomic.Int64
}

func (f *flakyStore) InsertEvents(ctx context.Context, recs []storage.Record, token string) error {
	time.Sleep(f.delay)
	n := f.calls.Add(1)
	switch {
	case n%6 == 0:
		if err := f.witnessStore.InsertEvents(ctx, recs, token); err != nil {
			return err
		}
		f.failed.Add(1)
		return &storage.Error{Table: "request_events", Retryable: true, Err: errors.New("read: connection reset by peer")}
	case n%3 == 0:
		f.failed.Add(1)
		return &storage.Error{Table: "request_events", Retryable: true, Err: errors.New("code: 252, too many parts")}
	}
	return f.witnessStore.InsertEvents(ctx, recs, token)
}

// A slow ClickHouse that fails a third of the inserts, some of them after
// storing the rows: every record ends up stored exactly once, nothing is
// committed before it is stored, and no operator is needed.
func TestSlowAndFlakyClickHouse(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	d := makeFaultData(t, 29)
	addr, db := chtest.NewDatabase(t)
	broker := brokertest.Start(t, map[string]int32{"requests": faultPartitions, "audit": faultPartitions, "dlq": 1})
	if err := d.produce(context.Background(), broker.Addr(), 0, 1); err != nil {
		t.Fatal(err)
	}
	var flaky *flakyStore
	r := startFaultPipelineWith(t, broker.Addr(), addr, db, func(ws *witnessStore) Store {
		flaky = &flakyStore{witnessStore: ws, delay: 50 * time.Millisecond}
		return flaky
	})
	r.waitLagZero(t, d.total, 2*time.Minute)
	r.store.checkCommitted(t, r.consumer.Committed(), "at the end")
	checkEndState(t, d, r, broker.Addr(), addr, db)
	t.Logf("%d records, %d event inserts, %d failed (half of them after storing)", d.total, flaky.calls.Load(), flaky.failed.Load())
	if flaky.failed.Load() == 0 {
		t.Error("no insert failed: the test did not test anything")
	}
}

// A partition leader moving to another broker node mid-stream (a failover
// or a reassignment): the consumer, the producer and the dead-letter
// writer find the new leaders by themselves; nothing is lost or stored
// twice, and the alerts equal replay's.
func TestPartitionLeadersMoveMidStream(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	start := time.Now()
	d := makeFaultData(t, 31)
	addr, db := chtest.NewDatabase(t)
	topics := map[string]int32{"requests": faultPartitions, "audit": faultPartitions, "dlq": 1}
	broker, err := devbroker.Start(devbroker.Config{Nodes: 3, GroupMinSessionTimeout: 100 * time.Millisecond, Topics: topics})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	ctx := context.Background()
	if err := d.produce(ctx, broker.Addr(), 0); err != nil {
		t.Fatal(err)
	}
	r := startFaultPipeline(t, broker.Addr(), addr, db)
	r.waitBatches(t, 3, start)
	moves := 0
	move := func() {
		if err := broker.MoveLeaders("requests", "audit", "dlq"); err != nil {
			t.Fatal(err)
		}
		moves++
		t.Logf("moved every partition leader after %d batches", r.pl.Stats.Batches.Load())
	}
	move()
	if err := d.produce(ctx, broker.Addr(), 1); err != nil {
		t.Fatal(err)
	}
	move()
	r.waitLagZero(t, d.total, time.Minute)
	checkEndState(t, d, r, broker.Addr(), addr, db)
	t.Logf("%d records (%d invalid), leaders moved %d times, %d stored incl. redeliveries, total %v", d.total, d.invalid, moves,
		r.pl.Stats.Stored.Load()+r.pl.Stats.Invalid.Load(), time.Since(start).Round(time.Millisecond))
}
