package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/event"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		// kafka-go and kfake goroutines take a moment to wind down after
		// Close (gotcha 8): retry for longer than goleak does by itself.
		var err error
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if err = goleak.Find(); err == nil {
				break
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// testLogger logs warnings and errors to t.Log until the test ends (t.Log
// after the end panics, and kafka-go goroutines may still log). Call it
// before starting anything that logs, so that its cleanup runs last.
func testLogger(t testing.TB) *slog.Logger {
	w := &tlogWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	lvl := slog.LevelWarn
	if os.Getenv("INGEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

type tlogWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *tlogWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(p[:len(p)-min(len(p), 1)]))
	}
	return len(p), nil
}

// testConfig returns a consumer config with the short timeouts the notes
// suggest for tests (the test brokers accept sessions down to 100ms).
func testConfig(t testing.TB, addr, group string, topics map[string]event.Source) Config {
	return Config{
		Brokers:           []string{addr},
		GroupID:           group,
		ClientID:          "ingest-test",
		Topics:            topics,
		SessionTimeout:    time.Second,
		HeartbeatInterval: 100 * time.Millisecond,
		RebalanceTimeout:  2 * time.Second,
		MaxWait:           250 * time.Millisecond,
		Logger:            testLogger(t),
	}
}

func newConsumer(t testing.TB, cfg Config) *Consumer {
	t.Helper()
	c, err := NewConsumer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// produce writes n records to topic, spread round robin over its
// partitions, with keys and values "<topic>-<first+i>", and returns the
// values.
func produce(t testing.TB, addr, topic string, first, n int) []string {
	t.Helper()
	tr := &kafka.Transport{}
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		Balancer:     &kafka.RoundRobin{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    10000,
		BatchTimeout: 5 * time.Millisecond,
		Transport:    tr,
	}
	defer func() {
		w.Close()
		tr.CloseIdleConnections()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var vals []string
	const chunk = 10000
	for start := 0; start < n; start += chunk {
		msgs := make([]kafka.Message, 0, min(chunk, n-start))
		for i := start; i < n && i < start+chunk; i++ {
			v := fmt.Sprintf("%s-%d", topic, first+i)
			vals = append(vals, v)
			msgs = append(msgs, kafka.Message{Key: []byte(v), Value: []byte(v)})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("produce to %s: %v", topic, err)
		}
	}
	return vals
}

// fetchN fetches n records or fails the test after timeout.
func fetchN(t testing.TB, c *Consumer, n int, timeout time.Duration) []Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := make([]Message, 0, n)
	for len(out) < n {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("fetched %d of %d: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// commitEventually retries Commit until it succeeds (a commit can fail while
// the group rebalances).
func commitEventually(t testing.TB, c *Consumer, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := c.Commit(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("commit: %v", err)
		}
		t.Logf("commit (retrying): %v", err)
		time.Sleep(100 * time.Millisecond)
	}
}

// endOffsets returns, for every partition seen in msgs, the offset after the
// last one.
func endOffsets(msgs []Message) map[string]map[int]int64 {
	out := make(map[string]map[int]int64)
	for _, m := range msgs {
		if out[m.Topic] == nil {
			out[m.Topic] = make(map[int]int64)
		}
		if m.Offset+1 > out[m.Topic][m.Partition] {
			out[m.Topic][m.Partition] = m.Offset + 1
		}
	}
	return out
}

func byPartition(msgs []Message) map[topicPartition][]Message {
	out := make(map[topicPartition][]Message)
	for _, m := range msgs {
		k := topicPartition{m.Topic, m.Partition}
		out[k] = append(out[k], m)
	}
	return out
}
