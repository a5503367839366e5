package pipeline

import (
	"math/rand"
	"slices"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/storage"
)

// ev is an event of partition p of topic "t<src>" at time ts, offset off.
func ev(src event.Source, p int32, off, ts int64) item {
	return item{ev: &event.Event{Source: src, TS: ts}, origin: storage.Origin{Topic: "t" + src.String(), Partition: p, Offset: off}, kafka: off, at: ts}
}

func (r *reorderer) pushAll(its ...item) {
	for _, it := range its {
		r.push(r.queue(it.ev.Source, it.origin.Topic, it.origin.Partition), it)
	}
}

func (r *reorderer) catchUp() {
	for _, q := range r.queues {
		q.caughtUp = true
	}
}

func times(its []item) []int64 {
	out := make([]int64, len(its))
	for i, it := range its {
		out[i] = it.ev.TS
	}
	return out
}

func TestReorderer(t *testing.T) {
	for _, c := range []struct {
		name   string
		max    int
		known  []item   // partitions known before anything arrives
		steps  [][]item // pushed, then released, step by step
		caught bool     // every empty partition is caught up before the last release
		want   [][]int64
		forced uint64
	}{
		{
			name:  "one partition passes straight through",
			max:   100,
			steps: [][]item{{ev(event.Requests, 0, 0, 5), ev(event.Requests, 0, 1, 7)}},
			want:  [][]int64{{5, 7}},
		},
		{
			name: "an event waits until the other partition has passed its time",
			max:  100,
			steps: [][]item{
				{ev(event.Requests, 0, 0, 5), ev(event.Requests, 0, 1, 9), ev(event.Requests, 1, 0, 6)},
				{ev(event.Requests, 1, 1, 10)},
			},
			want: [][]int64{{5, 6}, {9}},
		},
		{
			name: "a partition that delivered nothing holds the others until it is caught up",
			max:  100,
			steps: [][]item{
				{ev(event.Requests, 0, 0, 5), ev(event.Requests, 0, 1, 9), ev(event.Requests, 1, 0, 6)},
				{},
			},
			caught: true,
			want:   [][]int64{{5, 6}, {9}},
		},
		{
			name: "on equal times requests go first, then lower partitions",
			max:  100,
			steps: [][]item{
				{ev(event.Audit, 0, 0, 5), ev(event.Requests, 1, 0, 5), ev(event.Requests, 0, 0, 5)},
				{},
			},
			caught: true,
			// Partition 0 may still deliver another event at 5.
			want: [][]int64{{5}, {5, 5}},
		},
		{
			name:  "a full buffer releases the earliest anyway",
			max:   2,
			known: []item{ev(event.Requests, 1, 0, 0)},
			steps: [][]item{
				{ev(event.Requests, 0, 0, 5), ev(event.Requests, 0, 1, 6), ev(event.Requests, 0, 2, 7)},
			},
			want:   [][]int64{{5}},
			forced: 1,
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newReorderer(c.max, 0)
			for _, it := range c.known {
				r.queue(it.ev.Source, it.origin.Topic, it.origin.Partition)
			}
			for i, step := range c.steps {
				r.pushAll(step...)
				if c.caught && i == len(c.steps)-1 {
					r.catchUp()
				}
				got := times(r.release(nil))
				if !slices.Equal(got, c.want[i]) {
					t.Errorf("step %d released %v, want %v", i, got, c.want[i])
				}
			}
			if r.forced != c.forced {
				t.Errorf("forced %d, want %d", r.forced, c.forced)
			}
		})
	}
}

// mergeRuns is `vigil replay --merge` on one file per partition: the
// partitions' runs merged by their heads' event time, ties to the lower key.
func mergeRuns(streams [][]item) []item {
	heads := make([]int, len(streams))
	var out []item
	for {
		best := -1
		for p, s := range streams {
			if heads[p] < len(s) && (best < 0 || s[heads[p]].ev.TS < streams[best][heads[best]].ev.TS) {
				best = p // streams are in key order, so ties keep the first
			}
		}
		if best < 0 {
			return out
		}
		out = append(out, streams[best][heads[best]])
		heads[best]++
	}
}

// The order the detector sees does not depend on how partitions arrive:
// any interleaving of the partitions' deliveries, in chunks of any size,
// releases what replay's merge of the partitions gives, as long as no
// partition's disorder exceeds the slack.
func TestReordererOrderIndependentOfArrival(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 400; round++ {
		slack := int64(0)
		if round%2 == 1 {
			slack = 4
		}
		parts := 1 + rng.Intn(5)
		var streams [][]item
		for p := 0; p < parts; p++ {
			ts := int64(rng.Intn(5))
			var s []item
			for off := int64(0); off < int64(rng.Intn(40)); off++ {
				ts += int64(rng.Intn(3)) // equal times included
				s = append(s, ev(srcOf(p), int32(p), off, ts+rng.Int63n(slack+1)))
			}
			streams = append(streams, s)
		}
		var ordered [][]item
		for _, src := range []event.Source{event.Requests, event.Audit} {
			for p, s := range streams {
				if srcOf(p) == src {
					ordered = append(ordered, s)
				}
			}
		}
		want := mergeRuns(ordered)
		r := newReorderer(1<<20, time.Duration(slack))
		for p := range streams {
			r.queue(srcOf(p), "t"+srcOf(p).String(), int32(p)) // every partition is known
		}
		var got []item
		for {
			var live []int
			for p, s := range streams {
				if len(s) > 0 {
					live = append(live, p)
				}
			}
			if len(live) == 0 {
				break
			}
			p := live[rng.Intn(len(live))]
			n := 1 + rng.Intn(len(streams[p]))
			r.pushAll(streams[p][:n]...)
			streams[p] = streams[p][n:]
			got = r.release(got)
		}
		r.catchUp()
		got = r.release(got)
		if len(got) != len(want) {
			t.Fatalf("round %d: released %d of %d", round, len(got), len(want))
		}
		for i := range got {
			if got[i].origin != want[i].origin {
				t.Fatalf("round %d (slack %d): event %d is %+v, want %+v", round, slack, i, got[i].origin, want[i].origin)
			}
		}
	}
}

func srcOf(p int) event.Source {
	if p%3 == 2 {
		return event.Audit
	}
	return event.Requests
}
