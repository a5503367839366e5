package devbroker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"
)

// verifyNoLeaks fails t if goroutines started during the test are still
// running a while after it. kafka-go's connection goroutines take up to a
// couple of seconds to wind down after Close, and goleak's built-in retry
// gives up after about half a second, so this retries for longer.
func verifyNoLeaks(t *testing.T) func() {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	return func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := goleak.Find(ignore)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Error(err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

func TestStartConfig(t *testing.T) {
	defer verifyNoLeaks(t)()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; empty means success
	}{
		{name: "zero config", cfg: Config{}},
		{name: "port only", cfg: Config{Addr: ":0"}},
		{name: "localhost", cfg: Config{Addr: "localhost:0"}},
		{name: "topics", cfg: Config{Topics: map[string]int32{"a": 1, "b": 6}}},
		{name: "not loopback", cfg: Config{Addr: "0.0.0.0:0"}, wantErr: "only listen on 127.0.0.1"},
		{name: "no port", cfg: Config{Addr: "127.0.0.1"}, wantErr: "missing port"},
		{name: "bad port", cfg: Config{Addr: "127.0.0.1:99999"}, wantErr: "bad port"},
		{name: "zero partitions", cfg: Config{Topics: map[string]int32{"a": 0}}, wantErr: "partitions must be >= 1"},
		{name: "empty topic name", cfg: Config{Topics: map[string]int32{"": 1}}, wantErr: "invalid topic name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := Start(tt.cfg)
			if tt.wantErr != "" {
				if err == nil {
					b.Close()
					t.Fatalf("Start succeeded, want error containing %q", tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start error %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if !strings.HasPrefix(b.Addr(), "127.0.0.1:") || strings.HasSuffix(b.Addr(), ":0") {
				t.Errorf("Addr() = %q, want 127.0.0.1 and a real port", b.Addr())
			}
			for name, n := range tt.cfg.Topics {
				if got := partitionCount(t, b.Addr(), name); got != int(n) {
					t.Errorf("topic %s has %d partitions, want %d", name, got, n)
				}
			}
		})
	}
}

func TestStartPortInUse(t *testing.T) {
	b := startForTest(t, nil)
	if b2, err := Start(Config{Addr: b.Addr()}); err == nil {
		b2.Close()
		t.Fatalf("second broker on %s started", b.Addr())
	}
}

func TestCreateTopic(t *testing.T) {
	defer verifyNoLeaks(t)()
	b, err := Start(Config{Topics: map[string]int32{"existing": 3}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		topic      string
		partitions int32
		wantErr    string
	}{
		{"new", "fresh", 4, ""},
		{"same count is a no-op", "existing", 3, ""},
		{"different count", "existing", 5, "already exists with 3 partitions, not 5"},
		{"zero partitions", "other", 0, "partitions must be >= 1"},
		{"invalid name", "bad name!", 1, "invalid topic name"},
		{"dots only", "..", 1, "invalid topic name"},
		{"too long", strings.Repeat("x", 250), 1, "invalid topic name"},
		{"allowed characters", "vigil.dead_letter-1", 1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.CreateTopic(tt.topic, tt.partitions)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CreateTopic: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("CreateTopic error %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	if got := partitionCount(t, b.Addr(), "fresh"); got != 4 {
		t.Errorf("fresh has %d partitions, want 4", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := b.CreateTopic("late", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("CreateTopic after Close: %v, want ErrClosed", err)
	}
}

func TestDataDirLocked(t *testing.T) {
	defer verifyNoLeaks(t)()
	dir := t.TempDir()
	b, err := Start(Config{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if b2, err := Start(Config{DataDir: dir}); err == nil {
		b2.Close()
		t.Fatal("second broker on the same data dir started")
	} else if !strings.Contains(err.Error(), "in use by another broker") {
		t.Fatalf("second broker: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = Start(Config{DataDir: dir}) // the lock is released by Close
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestProduceConsumeRestart produces to a 6-partition topic, consumes and
// commits with a group, restarts the broker on the same port and data dir,
// and checks that messages and committed offsets survived.
func TestProduceConsumeRestart(t *testing.T) {
	defer verifyNoLeaks(t)()
	const (
		topic      = "requests"
		partitions = 6
		total      = 10_000
		group      = "vigil-test"
	)
	dir := t.TempDir()
	cfg := Config{
		DataDir:                dir,
		Topics:                 map[string]int32{topic: partitions},
		GroupMinSessionTimeout: 100 * time.Millisecond,
	}

	start := time.Now()
	b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("startup with an empty data dir: %v", time.Since(start))
	addr := b.Addr()

	start = time.Now()
	produce(t, addr, topic, 0, total)
	t.Logf("produced %d messages in %v", total, time.Since(start))

	start = time.Now()
	got, committed := consume(t, addr, group, topic, total)
	t.Logf("consumed and committed %d messages in %v", total, time.Since(start))
	checkValues(t, got, 0, total)

	ends := endOffsets(t, addr, topic, partitions)
	var sum int64
	for p, end := range ends {
		sum += end
		if committed[p] != end {
			t.Errorf("partition %d: reader committed %d, end offset %d", p, committed[p], end)
		}
	}
	if sum != total {
		t.Fatalf("end offsets sum to %d, want %d", sum, total)
	}
	if fetched := committedOffsets(t, addr, group, topic, partitions); !equalOffsets(fetched, ends) {
		t.Fatalf("OffsetFetch = %v, want the end offsets %v", fetched, ends)
	}

	// Restart on the same port with the same data directory.
	start = time.Now()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	closed := time.Now()
	cfg.Addr = addr
	b, err = Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	t.Logf("restart: Close %v, Start (reload of %d messages) %v", closed.Sub(start), total, time.Since(closed))
	if b.Addr() != addr {
		t.Fatalf("restarted on %s, want %s", b.Addr(), addr)
	}

	if after := endOffsets(t, addr, topic, partitions); !equalOffsets(after, ends) {
		t.Fatalf("after restart end offsets = %v, want %v", after, ends)
	}
	if fetched := committedOffsets(t, addr, group, topic, partitions); !equalOffsets(fetched, ends) {
		t.Fatalf("after restart OffsetFetch = %v, want %v", fetched, ends)
	}
	// Every message is still there: a new group reads all of them.
	again, _ := consume(t, addr, group+"-replay", topic, total)
	checkValues(t, again, 0, total)
	// The old group resumes at its committed offsets: it sees only new messages.
	produce(t, addr, topic, total, 10)
	resumed, _ := consume(t, addr, group, topic, 10)
	checkValues(t, resumed, total, 10)

	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestBrokerForTestsCleansUp(t *testing.T) {
	defer verifyNoLeaks(t)()
	t.Run("inner", func(t *testing.T) {
		b := startForTest(t, map[string]int32{"audit": 2})
		produce(t, b.Addr(), "audit", 0, 100)
		got, _ := consume(t, b.Addr(), "g", "audit", 100)
		checkValues(t, got, 0, 100)
	})
}

func value(i int) string { return fmt.Sprintf(`{"seq":%d}`, i) }

// produce writes n messages with values value(from) … value(from+n-1).
func produce(t *testing.T, addr, topic string, from, n int) {
	t.Helper()
	tr := &kafka.Transport{}
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    1000,
		BatchTimeout: 5 * time.Millisecond,
		Transport:    tr,
	}
	defer tr.CloseIdleConnections()
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const chunk = 1000
	msgs := make([]kafka.Message, 0, chunk)
	for i := from; i < from+n; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprintf("k%d", i)), Value: []byte(value(i))})
		if len(msgs) == chunk || i == from+n-1 {
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				t.Fatalf("WriteMessages: %v", err)
			}
			msgs = msgs[:0]
		}
	}
}

// consume reads n messages with a group reader, committing every 1000
// messages and at the end, and returns the values read and the highest
// committed offset (next offset to read) per partition.
func consume(t *testing.T, addr, group, topic string, n int) (map[string]int, map[int]int64) {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{addr},
		GroupID:           group,
		Topic:             topic,
		StartOffset:       kafka.FirstOffset,
		SessionTimeout:    time.Second,
		HeartbeatInterval: 200 * time.Millisecond,
		RebalanceTimeout:  2 * time.Second,
		JoinGroupBackoff:  100 * time.Millisecond,
		MaxWait:           200 * time.Millisecond,
		ErrorLogger:       kafka.LoggerFunc(func(f string, a ...any) { t.Logf("reader: "+f, a...) }),
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	got := make(map[string]int, n)
	committed := map[int]int64{}
	var pending []kafka.Message
	commit := func() {
		if len(pending) == 0 {
			return
		}
		if err := r.CommitMessages(ctx, pending...); err != nil {
			t.Fatalf("CommitMessages: %v", err)
		}
		for _, m := range pending {
			committed[m.Partition] = max(committed[m.Partition], m.Offset+1)
		}
		pending = pending[:0]
	}
	for i := 0; i < n; i++ {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("FetchMessage after %d of %d messages: %v", i, n, err)
		}
		got[string(m.Value)]++
		pending = append(pending, m)
		if len(pending) == 1000 {
			commit()
		}
	}
	commit()
	if err := r.Close(); err != nil {
		t.Fatalf("Reader.Close: %v", err)
	}
	return got, committed
}

func checkValues(t *testing.T, got map[string]int, from, n int) {
	t.Helper()
	if len(got) != n {
		t.Errorf("got %d distinct values, want %d", len(got), n)
	}
	for i := from; i < from+n; i++ {
		if c := got[value(i)]; c != 1 {
			t.Fatalf("value %s seen %d times, want once", value(i), c)
		}
	}
}

func newClient(addr string) (*kafka.Client, func()) {
	tr := &kafka.Transport{}
	return &kafka.Client{Addr: kafka.TCP(addr), Timeout: 10 * time.Second, Transport: tr}, tr.CloseIdleConnections
}

func partitionCount(t *testing.T, addr, topic string) int {
	t.Helper()
	c, done := newClient(addr)
	defer done()
	md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		t.Fatalf("Metadata for %s: %+v", topic, md.Topics)
	}
	return len(md.Topics[0].Partitions)
}

// endOffsets returns the high watermark of each partition.
func endOffsets(t *testing.T, addr, topic string, partitions int) map[int]int64 {
	t.Helper()
	c, done := newClient(addr)
	defer done()
	var reqs []kafka.OffsetRequest
	for p := range partitions {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	resp, err := c.ListOffsets(context.Background(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		t.Fatalf("ListOffsets: %v", err)
	}
	out := map[int]int64{}
	for _, po := range resp.Topics[topic] {
		if po.Error != nil {
			t.Fatalf("ListOffsets partition %d: %v", po.Partition, po.Error)
		}
		out[po.Partition] = po.LastOffset
	}
	if len(out) != partitions {
		t.Fatalf("ListOffsets returned %d partitions, want %d", len(out), partitions)
	}
	return out
}

// committedOffsets returns the group's committed offsets, via OffsetFetch.
func committedOffsets(t *testing.T, addr, group, topic string, partitions int) map[int]int64 {
	t.Helper()
	c, done := newClient(addr)
	defer done()
	ps := make([]int, partitions)
	for p := range ps {
		ps[p] = p
	}
	resp, err := c.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		t.Fatalf("OffsetFetch: %v", err)
	}
	if resp.Error != nil {
		t.Fatalf("OffsetFetch: %v", resp.Error)
	}
	out := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("OffsetFetch partition %d: %v", p.Partition, p.Error)
		}
		out[p.Partition] = p.CommittedOffset
	}
	return out
}

func equalOffsets(a, b map[int]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// startForTest is brokertest.Start without the import cycle.
func startForTest(t *testing.T, topics map[string]int32) *Broker {
	t.Helper()
	b, err := Start(Config{Topics: topics, GroupMinSessionTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}
