package ingest

import (
	"context"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/devbroker"
	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/event"
)

var bothTopics = map[string]event.Source{"requests": event.Requests, "audit": event.Audit}

func TestConfigValidation(t *testing.T) {
	good := Config{Brokers: []string{"127.0.0.1:1"}, GroupID: "g", Topics: map[string]event.Source{"requests": event.Requests}}
	cases := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"no brokers", func(c *Config) { c.Brokers = nil }, "no brokers"},
		{"empty broker", func(c *Config) { c.Brokers = []string{""} }, "empty broker"},
		{"no group", func(c *Config) { c.GroupID = "" }, "empty group id"},
		{"no topics", func(c *Config) { c.Topics = nil }, "no topics"},
		{"unknown source", func(c *Config) { c.Topics = map[string]event.Source{"x": 9} }, "unknown source"},
		{"input is dead-letter topic", func(c *Config) { c.DeadLetterTopic = "requests" }, "dead-letter topic"},
		{"bad SASL", func(c *Config) { c.SASLMechanism = "gssapi"; c.SASLUser = "u" }, "unknown SASL"},
		{"SASL without user", func(c *Config) { c.SASLMechanism = "scram-sha-512" }, "needs a user"},
		{"negative timeout", func(c *Config) { c.MaxWait = -time.Second }, "negative max wait"},
		{"heartbeat not below session", func(c *Config) { c.SessionTimeout = time.Second; c.HeartbeatInterval = time.Second }, "heartbeat interval"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.edit(&cfg)
			c, err := NewConsumer(cfg)
			if err == nil {
				c.Close()
				t.Fatal("NewConsumer accepted the config")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}

// A group reader started before its topic exists silently consumes nothing
// (gotcha 3), so NewConsumer refuses.
func TestNewConsumerMissingTopic(t *testing.T) {
	b := brokertest.Start(t, map[string]int32{"requests": 1})
	_, err := NewConsumer(testConfig(t, b.Addr(), "g", bothTopics))
	if err == nil || !strings.Contains(err.Error(), `"audit" does not exist`) {
		t.Fatalf("err = %v, want one about the missing audit topic", err)
	}
}

// Consume 20k records from 2 topics × 3 partitions, mark them stored in
// shuffled batch order from several goroutines, and check that nothing past
// the first batch commits until it is stored, and then everything does.
func TestConsumeAllShuffledMarks(t *testing.T) {
	const perTopic = 10000
	b := brokertest.Start(t, map[string]int32{"requests": 3, "audit": 3})
	produce(t, b.Addr(), "requests", 0, perTopic)
	produce(t, b.Addr(), "audit", 0, perTopic)

	c := newConsumer(t, testConfig(t, b.Addr(), "g-all", bothTopics))
	start := time.Now()
	msgs := fetchN(t, c, 2*perTopic, 30*time.Second)
	t.Logf("fetched %d records in %v", len(msgs), time.Since(start))

	seen := make(map[string]bool)
	for _, m := range msgs {
		if want := bothTopics[m.Topic]; m.Source != want {
			t.Fatalf("%s/%d@%d: source %v, want %v", m.Topic, m.Partition, m.Offset, m.Source, want)
		}
		if string(m.Key) != string(m.Value) || !strings.HasPrefix(string(m.Value), m.Topic+"-") || m.Time.IsZero() {
			t.Fatalf("%s/%d@%d: odd record key %q value %q time %v", m.Topic, m.Partition, m.Offset, m.Key, m.Value, m.Time)
		}
		if seen[string(m.Value)] {
			t.Fatalf("duplicate %q", m.Value)
		}
		seen[string(m.Value)] = true
	}
	ends := endOffsets(msgs)
	if len(ends) != 2 || len(ends["requests"]) != 3 || len(ends["audit"]) != 3 {
		t.Fatalf("records came from %v, want 2 topics × 3 partitions", ends)
	}

	// Batches of 500 in fetch order; batch 0 is stored last.
	const batchSize = 500
	var batches [][]Message
	for i := 0; i < len(msgs); i += batchSize {
		batches = append(batches, msgs[i:min(i+batchSize, len(msgs))])
	}
	rest := slices.Clone(batches[1:])
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(rest), func(i, j int) { rest[i], rest[j] = rest[j], rest[i] })
	work := make(chan []Message)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for batch := range work {
				c.MarkStored(batch...)
			}
		})
	}
	for _, b := range rest {
		work <- b
	}
	close(work)
	wg.Wait()

	commitEventually(t, c, 10*time.Second)
	got := c.Committed()
	inFirst := make(map[topicPartition]bool)
	for _, m := range batches[0] {
		inFirst[topicPartition{m.Topic, m.Partition}] = true
	}
	for topic, ps := range ends {
		for p, end := range ps {
			off, ok := got[topic][p]
			if inFirst[topicPartition{topic, p}] {
				if ok {
					t.Errorf("%s/%d: committed %d although its first records (batch 1) are not stored", topic, p, off)
				}
			} else if !ok || off != end {
				t.Errorf("%s/%d: committed %d (%v), want %d: all its records are stored", topic, p, off, ok, end)
			}
		}
	}
	if len(inFirst) == 0 {
		t.Fatal("batch 1 is empty")
	}

	c.MarkStored(batches[0]...)
	commitEventually(t, c, 10*time.Second)
	if got := c.Committed(); !reflect.DeepEqual(got, ends) {
		t.Fatalf("Committed() = %v, want the end offsets %v", got, ends)
	}
	if n := c.inFlight(); n != 0 {
		t.Fatalf("%d records still in flight", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lag, err := c.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int]int64{"requests": {0: 0, 1: 0, 2: 0}, "audit": {0: 0, 1: 0, 2: 0}}
	if !reflect.DeepEqual(lag, want) {
		t.Fatalf("Lag() = %v, want all zero", lag)
	}
	// A commit with nothing new is a no-op, and never moves anything back.
	commitEventually(t, c, time.Second)
	if got := c.Committed(); !reflect.DeepEqual(got, ends) {
		t.Fatalf("after a second commit, Committed() = %v", got)
	}
}

// Lag before anything is committed counts from the log start.
func TestLagWithoutCommits(t *testing.T) {
	b := brokertest.Start(t, map[string]int32{"requests": 2})
	produce(t, b.Addr(), "requests", 0, 10)
	c := newConsumer(t, testConfig(t, b.Addr(), "g-lag", map[string]event.Source{"requests": event.Requests}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lag, err := c.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (map[string]map[int]int64{"requests": {0: 5, 1: 5}}); !reflect.DeepEqual(lag, want) {
		t.Fatalf("Lag() = %v, want %v", lag, want)
	}
	ms := fetchN(t, c, 3, 10*time.Second)
	c.MarkStored(ms...)
	commitEventually(t, c, 5*time.Second)
	lag, err = c.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, l := range lag["requests"] {
		total += l
	}
	if total != 7 {
		t.Fatalf("Lag() = %v after committing 3 of 10, want 7 in total", lag)
	}
}

// Crash-like restart: a consumer stores only some of what it fetched and
// closes; a new member of the group re-reads exactly from the first
// unstored record of each partition. Nothing is lost, and the duplicates
// are exactly the records stored behind an unstored one.
func TestRestartRereadsFromFirstUnstored(t *testing.T) {
	const perTopic = 3000
	b := brokertest.Start(t, map[string]int32{"requests": 3, "audit": 3})
	all := append(produce(t, b.Addr(), "requests", 0, perTopic), produce(t, b.Addr(), "audit", 0, perTopic)...)
	cfg := testConfig(t, b.Addr(), "g-restart", bothTopics)

	c1 := newConsumer(t, cfg)
	first := fetchN(t, c1, perTopic, 30*time.Second) // half
	parts := byPartition(first)
	keys := slices.SortedFunc(maps.Keys(parts), func(a, b topicPartition) int {
		return strings.Compare(a.topic, b.topic)*8 + (a.partition - b.partition)
	})

	var (
		toStore     []Message
		wantFirst   = make(map[topicPartition]int64) // first offset the new member must read
		wantCommit  = make(map[string]map[int]int64)
		storedBytes = make(map[string]bool)
		wantDups    = make(map[string]bool) // stored behind an unstored record
		prefixTotal int
	)
	for i, k := range keys {
		ms := parts[k]
		var cut int // records [0,cut) stored; record cut is not
		switch i % 3 {
		case 0:
			cut = 0
		case 1:
			cut = len(ms) / 2
		case 2:
			cut = len(ms)
		}
		prefixTotal += cut
		toStore = append(toStore, ms[:cut]...)
		if cut < len(ms) {
			wantFirst[k] = ms[cut].Offset
			for j := cut + 1; j < len(ms); j += 3 {
				toStore = append(toStore, ms[j])
				wantDups[string(ms[j].Value)] = true
			}
		} else {
			wantFirst[k] = ms[cut-1].Offset + 1
		}
		if cut > 0 {
			if wantCommit[k.topic] == nil {
				wantCommit[k.topic] = make(map[int]int64)
			}
			wantCommit[k.topic][k.partition] = ms[cut-1].Offset + 1
		}
	}
	for _, m := range toStore {
		storedBytes[string(m.Value)] = true
	}
	rand.New(rand.NewPCG(5, 6)).Shuffle(len(toStore), func(i, j int) { toStore[i], toStore[j] = toStore[j], toStore[i] })
	for i := 0; i < len(toStore); i += 100 {
		c1.MarkStored(toStore[i:min(i+100, len(toStore))]...)
	}
	if err := c1.Close(); err != nil { // commits what is stored
		t.Fatal(err)
	}
	if got := c1.Committed(); !reflect.DeepEqual(got, wantCommit) {
		t.Fatalf("first member committed %v, want %v", got, wantCommit)
	}
	if _, err := c1.Fetch(context.Background()); !errors.Is(err, io.EOF) {
		t.Fatalf("Fetch after Close: %v, want io.EOF", err)
	}
	if err := c1.Commit(context.Background()); err == nil {
		t.Fatal("Commit after Close succeeded")
	}

	c2 := newConsumer(t, cfg)
	remaining := len(all) - prefixTotal
	second := fetchN(t, c2, remaining, 30*time.Second)
	firstSeen := make(map[topicPartition]int64)
	for _, m := range second {
		k := topicPartition{m.Topic, m.Partition}
		if _, ok := firstSeen[k]; !ok {
			firstSeen[k] = m.Offset
		}
	}
	for k, want := range wantFirst {
		if got, ok := firstSeen[k]; ok && got != want {
			t.Errorf("%s/%d: new member started at %d, want %d (the first unstored record)", k.topic, k.partition, got, want)
		}
	}
	gotDups := make(map[string]bool)
	union := maps.Clone(storedBytes)
	for _, m := range second {
		v := string(m.Value)
		if storedBytes[v] {
			gotDups[v] = true
		}
		if union[v] && !storedBytes[v] {
			t.Fatalf("%q read twice by the new member", v)
		}
		union[v] = true
	}
	if len(union) != len(all) {
		t.Fatalf("stored or re-read %d distinct records, want %d: records lost", len(union), len(all))
	}
	if !reflect.DeepEqual(gotDups, wantDups) {
		t.Fatalf("%d duplicates, want %d (exactly the stored records behind an unstored one)", len(gotDups), len(wantDups))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if m, err := c2.Fetch(ctx); err == nil {
		t.Fatalf("new member read an extra record %s/%d@%d", m.Topic, m.Partition, m.Offset)
	}
	t.Logf("first member stored %d of %d fetched; new member re-read %d (%d duplicates)", len(toStore), len(first), len(second), len(gotDups))
}

// The broker goes away mid-stream and comes back on the same address with
// the same data directory; the consumer carries on by itself and nothing is
// lost.
func TestBrokerRestartMidStream(t *testing.T) {
	log := testLogger(t)
	topics := map[string]int32{"requests": 3, "audit": 3}
	bcfg := devbroker.Config{
		Addr:                   "127.0.0.1:0",
		DataDir:                t.TempDir(),
		Topics:                 topics,
		GroupMinSessionTimeout: 100 * time.Millisecond,
		Logger:                 log,
	}
	var (
		bmu sync.Mutex
		b   *devbroker.Broker
	)
	start := func() {
		nb, err := devbroker.Start(bcfg)
		if err != nil {
			t.Fatal(err)
		}
		bmu.Lock()
		b = nb
		bmu.Unlock()
	}
	start()
	t.Cleanup(func() {
		bmu.Lock()
		defer bmu.Unlock()
		b.Close()
	})
	bcfg.Addr = b.Addr()

	want := append(produce(t, bcfg.Addr, "requests", 0, 1500), produce(t, bcfg.Addr, "audit", 0, 1500)...)
	c := newConsumer(t, testConfig(t, bcfg.Addr, "g-broker-restart", bothTopics))

	var (
		mu   sync.Mutex
		seen = make(map[string]int)
		all  []Message
	)
	count := func() (distinct, total int) {
		mu.Lock()
		defer mu.Unlock()
		return len(seen), len(all)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	fetchErr := make(chan error, 1)
	wg.Go(func() { // fetch and store
		for {
			m, err := c.Fetch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					fetchErr <- err
				}
				return
			}
			mu.Lock()
			seen[string(m.Value)]++
			all = append(all, m)
			mu.Unlock()
			c.MarkStored(m)
			if len(all)%200 == 0 {
				time.Sleep(20 * time.Millisecond) // pace it so that the restart lands mid-stream
			}
		}
	})
	var commitErrs int
	wg.Go(func() { // commit like the daemon does
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			cctx, ccancel := context.WithTimeout(ctx, time.Second)
			if c.Commit(cctx) != nil {
				commitErrs++
			}
			ccancel()
		}
	})
	defer func() {
		cancel()
		wg.Wait()
	}()

	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			select {
			case err := <-fetchErr:
				t.Fatalf("Fetch: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				d, n := count()
				t.Fatalf("timed out waiting for %s (%d distinct records, %d in all)", what, d, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("1000 records", 20*time.Second, func() bool { d, _ := count(); return d >= 1000 })
	stopped := time.Now()
	bmu.Lock()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	bmu.Unlock()
	beforeDown, _ := count()
	t.Logf("committed before the broker went down: %v", c.Committed())
	time.Sleep(time.Second)
	start()
	t.Logf("broker down for %v with %d of %d records read", time.Since(stopped), beforeDown, len(want))
	want = append(want, produce(t, bcfg.Addr, "requests", 1500, 500)...)
	want = append(want, produce(t, bcfg.Addr, "audit", 1500, 500)...)

	restarted := time.Now()
	waitFor("every record", 30*time.Second, func() bool { d, _ := count(); return d >= len(want) })
	cancel()
	wg.Wait()
	_, total := count()
	t.Logf("all %d records read %v after the restart; %d read twice; %d failed commits", len(want), time.Since(restarted), total-len(want), commitErrs)
	for _, v := range want {
		if seen[v] == 0 {
			t.Fatalf("%q lost", v)
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("read %d distinct records, produced %d", len(seen), len(want))
	}

	commitEventually(t, c, 10*time.Second)
	// The last read of each partition is at its end; the group committed it.
	ends := endOffsets(all)
	if got := c.Committed(); !reflect.DeepEqual(got, ends) {
		t.Fatalf("Committed() = %v, want %v", got, ends)
	}
	lctx, lcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer lcancel()
	lag, err := c.Lag(lctx)
	if err != nil {
		t.Fatal(err)
	}
	for topic, ps := range lag {
		for p, l := range ps {
			if l != 0 {
				t.Errorf("%s/%d: lag %d", topic, p, l)
			}
		}
	}
}

// Two members in one group: the second joining makes kafka-go restart the
// first one's partitions from the committed offsets, while the first still
// holds unstored records. Nothing is lost and the group ends fully
// committed.
func TestRebalanceWithRecordsInFlight(t *testing.T) {
	const perTopic = 3000
	b := brokertest.Start(t, map[string]int32{"requests": 3, "audit": 3})
	want := append(produce(t, b.Addr(), "requests", 0, perTopic), produce(t, b.Addr(), "audit", 0, perTopic)...)
	cfg := testConfig(t, b.Addr(), "g-rebalance", bothTopics)

	a := newConsumer(t, cfg)
	early := fetchN(t, a, 1000, 20*time.Second)
	a.MarkStored(early[:500]...) // 500..999 stay unstored for now
	commitEventually(t, a, 5*time.Second)

	var (
		mu     sync.Mutex
		stored = make(map[string]bool)
	)
	for _, m := range early[:500] {
		stored[string(m.Value)] = true
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	run := func(c *Consumer) {
		wg.Go(func() {
			last := time.Now()
			for {
				fctx, fcancel := context.WithTimeout(ctx, 100*time.Millisecond)
				m, err := c.Fetch(fctx)
				fcancel()
				if err == nil {
					mu.Lock()
					stored[string(m.Value)] = true
					mu.Unlock()
					c.MarkStored(m)
				} else if ctx.Err() != nil {
					return
				}
				if time.Since(last) > 50*time.Millisecond {
					cctx, ccancel := context.WithTimeout(ctx, time.Second)
					c.Commit(cctx)
					ccancel()
					last = time.Now()
				}
			}
		})
	}
	run(a)
	bc := newConsumer(t, cfg)
	run(bc)
	defer func() {
		cancel()
		wg.Wait()
	}()

	// Store a's old in-flight records late, after the rebalance: the marks
	// are ignored where a's partitions were restarted (those records come
	// again) and are harmless where they still count.
	time.Sleep(500 * time.Millisecond)
	a.MarkStored(early[500:]...)
	mu.Lock()
	for _, m := range early[500:] {
		stored[string(m.Value)] = true
	}
	mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for {
		lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
		lag, err := a.Lag(lctx)
		lcancel()
		var total int64
		for _, ps := range lag {
			for _, l := range ps {
				total += l
			}
		}
		if err == nil && total == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group lag %v (err %v), want 0", lag, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, v := range want {
		if !stored[v] {
			t.Fatalf("%q committed but never stored", v)
		}
	}
	ca, cb := a.Committed(), bc.Committed()
	t.Logf("member a committed %v, member b committed %v", ca, cb)
}
