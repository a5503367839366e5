package ingest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/event"
)

// The router keeps each input partition's order within a repartition
// partition, puts equal keys in one partition, and writes progress
// records; reading back gives the origin, merge time and progress.
func TestRouterWritesInOrderWithProgress(t *testing.T) {
	broker := brokertest.Start(t, map[string]int32{"fam": 3})
	cfg := Config{Brokers: []string{broker.Addr()}}
	r, err := NewRouter(cfg, map[string]int{"fam": 3})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rs []Routed
	for i := range 300 {
		key := []byte{byte('a' + i%5)}
		rs = append(rs, Routed{Topic: "fam", Key: key, MergeTS: int64(1000 + i),
			Msg: Message{Source: event.Requests, Topic: "requests", Partition: i % 2, Offset: int64(i), Value: []byte(`{}`), Time: time.Unix(0, int64(1000+i))}})
	}
	for p := range 3 {
		rs = append(rs, Routed{Topic: "fam", Partition: p, Progress: []Progress{{Topic: "requests", Partition: 1, Offset: 300, MergeTS: 1299}}})
	}
	if err := r.Write(ctx, rs); err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	total, progress := 0, 0
	for p := range 3 {
		last := map[int]int64{}
		err := ReadPartition(ctx, cfg, "fam", p, 0, -1, func(m Message) error {
			if m.Progress != nil {
				progress++
				if len(m.Progress) != 1 || m.Progress[0] != (Progress{Topic: "requests", Partition: 1, Offset: 300, MergeTS: 1299}) {
					t.Errorf("progress %+v", m.Progress)
				}
				return nil
			}
			total++
			if k, ok := keys[string(m.Key)]; ok && k != p {
				t.Errorf("key %q in partitions %d and %d", m.Key, k, p)
			}
			keys[string(m.Key)] = p
			if m.OriginTopic != "requests" || m.MergeTS != 1000+m.OriginOffset {
				t.Errorf("origin %s/%d/%d merge %d", m.OriginTopic, m.OriginPartition, m.OriginOffset, m.MergeTS)
			}
			if prev, ok := last[m.OriginPartition]; ok && m.OriginOffset <= prev {
				t.Errorf("partition %d: origin offset %d after %d", p, m.OriginOffset, prev)
			}
			last[m.OriginPartition] = m.OriginOffset
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if total != 300 || progress != 3 {
		t.Errorf("read %d records and %d progress records, want 300 and 3", total, progress)
	}
}

// EnsureTopics creates what is missing, accepts what exists with the
// partition count asked for, and refuses another count, saying what to do.
func TestEnsureTopics(t *testing.T) {
	broker := brokertest.Start(t, map[string]int32{"old": 2})
	cfg := Config{Brokers: []string{broker.Addr()}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := map[string]TopicSpec{
		"fam": {Partitions: 3, Replication: 1, Configs: map[string]string{"retention.ms": "3600000"}},
		"old": {Partitions: 2},
	}
	for range 2 { // idempotent
		if err := EnsureTopics(ctx, cfg, specs); err != nil {
			t.Fatal(err)
		}
	}
	err := EnsureTopics(ctx, cfg, map[string]TopicSpec{"old": {Partitions: 4}})
	if err == nil || !strings.Contains(err.Error(), `"old" has 2 partitions, not the 4 configured`) || !strings.Contains(err.Error(), "scaling.partitions") {
		t.Errorf("partition count mismatch: %v", err)
	}
}
