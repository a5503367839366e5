package ingest

import (
	"context"
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
