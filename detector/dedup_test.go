package detector

import (
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
)

func TestDedup(t *testing.T) {
	min := int64(time.Minute)
	for _, c := range []struct {
		name string
		in   []event.Event
		want []bool // duplicate?
	}{
		{"a record sent twice counts once",
			[]event.Event{{ID: "a", TS: 1}, {ID: "b", TS: 2}, {ID: "a", TS: 1}},
			[]bool{false, false, true}},
		{"the same id in the other source is another record",
			[]event.Event{{Source: event.Requests, ID: "a", TS: 1}, {Source: event.Audit, ID: "a", TS: 1}},
			[]bool{false, false}},
		{"records without an id are never duplicates",
			[]event.Event{{TS: 1}, {TS: 1}},
			[]bool{false, false}},
		{"an id older than the window is forgotten",
			[]event.Event{{ID: "a", TS: 0}, {ID: "b", TS: 2*min + 1}, {ID: "a", TS: 0}},
			[]bool{false, false, false}},
		{"inside the window it is remembered",
			[]event.Event{{ID: "a", TS: 0}, {ID: "b", TS: 2 * min}, {ID: "a", TS: 0}},
			[]bool{false, false, true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := newDedup(2 * min)
			for i := range c.in {
				if got := d.duplicate(&c.in[i]); got != c.want[i] {
					t.Errorf("event %d: duplicate = %v, want %v", i, got, c.want[i])
				}
			}
		})
	}
}

func TestDedupFilterLeavesCleanBatchesAlone(t *testing.T) {
	d := newDedup(int64(time.Minute))
	batch := []event.Event{{ID: "a"}, {ID: "b"}}
	out, _ := d.filter(batch, nil)
	if &out[0] != &batch[0] {
		t.Error("a batch without duplicates was copied")
	}
	out, _ = d.filter([]event.Event{{ID: "c"}, {ID: "a"}, {ID: "d"}}, nil)
	if len(out) != 2 || out[0].ID != "c" || out[1].ID != "d" {
		t.Errorf("filtered %+v, want c and d", out)
	}
}
