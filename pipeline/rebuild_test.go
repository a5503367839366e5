package pipeline

import (
	"bytes"
	"context"
	"github.com/vigil-sec/vigil/internal/itest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/replay"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
	"github.com/vigil-sec/vigil/traffic"
)

// halves splits JSON lines at the middle line.
func halves(data []byte) ([]byte, []byte) {
	lines := bytes.SplitAfter(data, []byte("\n"))
	mid := len(lines) / 2
	return bytes.Join(lines[:mid], nil), bytes.Join(lines[mid:], nil)
}

// A daemon restarted in the middle of the traffic rebuilds its detection
// state from the committed history in ClickHouse, so the alerts stored
// over both runs equal those of one uninterrupted `vigil replay`: nothing
// missed across the restart, nothing fired twice.
func TestRestartRebuildsDetectionState(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	var reqs, auds bytes.Buffer
	if _, err := traffic.Generate(traffic.Config{Duration: 30 * time.Minute, Rate: 40, Seed: 5, Attacks: traffic.AttackNames()}, &reqs, &auds); err != nil {
		t.Fatal(err)
	}
	r1, r2 := halves(reqs.Bytes())
	a1, a2 := halves(auds.Bytes())
	broker := brokertest.Start(t, map[string]int32{"requests": 1, "audit": 1})
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

	runOnce := func(name string, produced int) {
		consumer, err := ingest.NewConsumer(icfg)
		if err != nil {
			t.Fatal(err)
		}
		defer consumer.Close()
		det := detector.New(set.Rules, detector.Config{})
		defer det.Close()
		committed, err := consumer.GroupCommitted(ctx)
		if err != nil {
			t.Fatal(err)
		}
		pl := New(Config{BatchSize: 10000, BatchInterval: 300 * time.Millisecond}, consumer, store, nil, det)
		n, err := pl.Rebuild(ctx, store, committed, detector.Lookback(set.Rules, detector.DefaultLateness, 24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: rebuilt from %d stored events", name, n)
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- pl.Run(runCtx) }()
		deadline := time.Now().Add(90 * time.Second)
		for int(pl.Stats.Stored.Load()+pl.Stats.Invalid.Load()) < produced || !drained(t, consumer) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: timed out at %d of %d", name, pl.Stats.Stored.Load(), produced)
			}
			time.Sleep(100 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	runOnce("first run", itest.Produce(t, broker.Addr(), "requests", r1)+itest.Produce(t, broker.Addr(), "audit", a1))
	runOnce("after restart", itest.Produce(t, broker.Addr(), "requests", r2)+itest.Produce(t, broker.Addr(), "audit", a2))

	dir := t.TempDir()
	writeFile(t, dir+"/r.jsonl", reqs.Bytes())
	writeFile(t, dir+"/a.jsonl", auds.Bytes())
	var want []string
	if _, err := replay.Run(replay.Options{Requests: []string{dir + "/r.jsonl"}, Audit: []string{dir + "/a.jsonl"}}, detector.New(set.Rules, detector.Config{}),
		func(a *detector.Alert) { want = append(want, string(a.AppendJSON(nil))) }); err != nil {
		t.Fatal(err)
	}
	sort.Strings(want)
	got := itest.StoredAlerts(t, addr, db)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("alerts over the restart differ from one replay:\n got %d:\n%s\nwant %d:\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
}
