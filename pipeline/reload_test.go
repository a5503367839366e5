package pipeline

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/internal/itest"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

// A reload in the middle of a live stream: every event is evaluated by
// exactly one whole rule set (the old one before the swap, the new one
// after), an unchanged rule keeps its window state across the swap, a
// changed rule starts fresh, and a new rule starts counting at the swap.
func TestReloadDuringALiveStream(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: needs ClickHouse and the dev broker")
	}
	rule := func(id, threshold string) string {
		return fmt.Sprintf("  - {id: %s, source: requests, group_by: [ip], window: 10m, aggregate: count, threshold: '%s', severity: low}\n", id, threshold)
	}
	load := func(body string) []*rules.Rule {
		rs, errs := rules.Parse("r.yaml", []byte("rules:\n"+body))
		if errs.Err() != nil {
			t.Fatal(errs.Err())
		}
		return rs
	}
	oldSet := load(rule("kept", ">= 6") + rule("changed", ">= 6"))
	newSet := load(rule("kept", ">= 6") + rule("changed", ">= 5") + rule("added", ">= 3"))

	broker := brokertest.Start(t, map[string]int32{"requests": 1, "audit": 1})
	addr, db := chtest.NewDatabase(t)
	ctx := context.Background()
	store, err := storage.Open(ctx, storage.Config{Addr: []string{addr}, Database: db, Username: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	consumer, err := ingest.NewConsumer(testIngest(broker.Addr(), "vigil"))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	det := detector.New(oldSet, detector.Config{Shards: 2})
	defer det.Close()
	var mu sync.Mutex
	var alerts []*detector.Alert
	pl := New(Config{BatchSize: 100, BatchInterval: 100 * time.Millisecond, OnAlert: func(a *detector.Alert) {
		mu.Lock()
		alerts = append(alerts, a)
		mu.Unlock()
	}}, consumer, store, nil, det)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pl.Run(runCtx) }()

	t0 := time.Now().UTC().Add(-5 * time.Minute).Truncate(time.Second)
	produce := func(from, to int) {
		var b strings.Builder
		for i := from; i < to; i++ {
			fmt.Fprintf(&b, `{"ts":%q,"request_id":"req_%d","org_id":"o","ip":"203.0.113.9","method":"GET","route":"/x","operation":"data","status":401}`+"\n",
				t0.Add(time.Duration(i)*time.Second).Format(time.RFC3339Nano), i)
		}
		itest.Produce(t, broker.Addr(), "requests", []byte(b.String()))
	}
	waitStored := func(n uint64) {
		deadline := time.Now().Add(time.Minute)
		for pl.Stats.Stored.Load() < n || !drained(t, consumer) {
			if time.Now().After(deadline) {
				t.Fatalf("stored %d of %d", pl.Stats.Stored.Load(), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	produce(0, 4) // 4 events under the old rules
	waitStored(4)
	pl.Reload(newSet)
	produce(4, 7) // 3 more under the new rules
	waitStored(7)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	inSet := func(r *rules.Rule, set []*rules.Rule) bool {
		for _, x := range set {
			if x == r {
				return true
			}
		}
		return false
	}
	var got []string
	for _, a := range alerts {
		at := time.Unix(0, a.At).Sub(t0)
		// Events 0–3 (before the swap) are the old set's; 4–6 the new set's.
		if before := at < 4*time.Second; before != inSet(a.Rule, oldSet) || before == inSet(a.Rule, newSet) {
			t.Errorf("alert %s at +%v came from the wrong rule set", a.Rule.ID, at)
		}
		got = append(got, fmt.Sprintf("%s@%v=%v", a.Rule.ID, at, a.Value))
	}
	// kept: 4 old + 2 new = 6 at event 5. changed: fresh, 3 < 5. added: 3 at event 6.
	if want := "kept@5s=6 added@6s=3"; strings.Join(got, " ") != want {
		t.Errorf("alerts %q, want %q", strings.Join(got, " "), want)
	}
}
