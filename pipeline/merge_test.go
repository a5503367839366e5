package pipeline

import (
	"fmt"
	"testing"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/storage"
)

func TestMergeByTimeKeepsEachPartitionsOrder(t *testing.T) {
	// Two partitions, each in producer order (p1 has local disorder).
	in := []struct {
		part int32
		ts   int64
	}{{0, 10}, {0, 20}, {0, 30}, {1, 15}, {1, 12}, {1, 40}, {0, 35}}
	var evs []event.Event
	var ors []storage.Origin
	for i, x := range in {
		evs = append(evs, event.Event{TS: x.ts, ID: fmt.Sprint(i)})
		ors = append(ors, storage.Origin{Topic: "t", Partition: x.part, Offset: int64(i)})
	}
	outE, outO := mergeByTime(evs, ors)
	var got []string
	for i, e := range outE {
		got = append(got, fmt.Sprintf("p%d:%d", outO[i].Partition, e.TS))
	}
	want := "[p0:10 p1:15 p1:12 p0:20 p0:30 p0:35 p1:40]"
	if fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
}

func TestDeadLettersFromStorageGetTheirOriginalBytes(t *testing.T) {
	batch := []ingest.Message{{Topic: "requests", Partition: 1, Offset: 7, Key: []byte("k"), Value: []byte(`{"x":1}`)},
		{Topic: "requests", Partition: 2, Offset: 7, Value: []byte("other")}}
	dls := []ingest.DeadLetter{{Msg: ingest.Message{Topic: "requests", Partition: 1, Offset: 7}, Reason: "rejected"}}
	withOriginalBytes(dls, batch)
	if string(dls[0].Msg.Value) != `{"x":1}` || string(dls[0].Msg.Key) != "k" {
		t.Errorf("dead letter %+v", dls[0].Msg)
	}
}
