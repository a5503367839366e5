package pipeline

import (
	"math"
	"slices"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/storage"
)

// item is one decoded event waiting in the reorderer. The event itself
// stays in its batch's slice, so items are small to move.
type item struct {
	ev *event.Event
	// origin is where the event was first read: its partition's queue and
	// offset order. kafka is the offset of the record to mark once the
	// event is evaluated: the origin's, or the repartition topic's in keyed
	// detection.
	origin storage.Origin
	kafka  int64
	// at is the event's place in the merge: its time, or in keyed
	// detection the newest event time of its input partition up to it
	// (see Keyed), which orders it as the merge of whole partitions would.
	at int64
	// rebuilt marks an event replayed from ClickHouse at start: it was
	// evaluated before the restart and its alerts were stored then.
	rebuilt bool
	// arrived is the record's Kafka timestamp (Unix ns; 0 when unknown),
	// for the event→alert latency.
	arrived int64
}

// partKey orders partitions for ties in event time: requests before audit
// (as `vigil replay` merges its files), then topic, then partition.
type partKey struct {
	source    event.Source
	topic     string
	partition int32
}

func (a partKey) less(b partKey) bool {
	if a.source != b.source {
		return a.source < b.source
	}
	if a.topic != b.topic {
		return a.topic < b.topic
	}
	return a.partition < b.partition
}

// partQueue holds one partition's events in arrival (offset) order.
type partQueue struct {
	key   partKey
	items []item // items[head:] wait
	head  int
	// last is the newest merge time pushed: the partition's next event is
	// at least last - slack; valid once seen.
	last int64
	seen bool
	// caughtUp: every record the partition has now was pushed, so while its
	// queue is empty it holds nothing back.
	caughtUp bool
	// accepted is the highest offset pushed or dead-lettered, -1 before the
	// first: a lower or equal one comes again only through a rebalance or a
	// reconnect and was already handled.
	accepted int64
}

func (q *partQueue) empty() bool { return q.head == len(q.items) }

func (q *partQueue) pop() item {
	it := q.items[q.head]
	q.items[q.head] = item{}
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head >= 1024 && q.head*2 >= len(q.items) {
		n := copy(q.items, q.items[q.head:])
		clear(q.items[n:])
		q.items, q.head = q.items[:n], 0
	}
	return it
}

// holds reports whether the record at Kafka offset off is still waiting
// here.
func (q *partQueue) holds(off int64) bool {
	live := q.items[q.head:]
	_, ok := slices.BinarySearchFunc(live, off, func(it item, off int64) int {
		switch {
		case it.kafka < off:
			return -1
		case it.kafka > off:
			return 1
		}
		return 0
	})
	return ok
}

// blocks reports whether the partition, when empty, may still receive an
// event that goes before one at ts from partition k, its events being at
// most slack older than its newest.
func (q *partQueue) blocks(ts int64, k partKey, slack int64) bool {
	if !q.empty() || q.caughtUp {
		return false
	}
	if !q.seen {
		return true
	}
	bound := q.last - slack
	return ts > bound || (ts == bound && !k.less(q.key))
}

// reorderer merges partitions by event time across batches, so that the
// detector sees the order `vigil replay` gives the same records whatever
// the fetch timing: an event is released only when every partition that
// could still deliver an earlier one (an empty one that is not caught up)
// has moved past it. Each partition keeps its own order, which is exact
// when producers write each partition in event-time order, as log shippers
// do. Above max waiting events the earliest is released anyway, so a
// stalled partition costs exactness, never memory.
type reorderer struct {
	byKey  map[storage.Origin]*partQueue // Offset unused
	queues []*partQueue                  // sorted by key
	size   int
	max    int
	slack  int64 // ns
	forced uint64
}

func newReorderer(max int, slack time.Duration) *reorderer {
	return &reorderer{byKey: make(map[storage.Origin]*partQueue), max: max, slack: int64(slack)}
}

// queue returns the partition's queue, creating it.
func (r *reorderer) queue(src event.Source, topic string, partition int32) *partQueue {
	o := storage.Origin{Topic: topic, Partition: partition}
	if q := r.byKey[o]; q != nil {
		return q
	}
	q := &partQueue{key: partKey{src, topic, partition}, accepted: -1, last: math.MinInt64}
	r.byKey[o] = q
	i, _ := slices.BinarySearchFunc(r.queues, q.key, func(a *partQueue, k partKey) int {
		switch {
		case a.key.less(k):
			return -1
		case k.less(a.key):
			return 1
		}
		return 0
	})
	r.queues = slices.Insert(r.queues, i, q)
	return q
}

// push appends an event to its partition's queue.
func (r *reorderer) push(q *partQueue, it item) {
	q.items = append(q.items, it)
	if !q.seen || it.at > q.last {
		q.last = it.at
	}
	q.seen, q.caughtUp = true, false
	q.accepted = max(q.accepted, it.origin.Offset)
	r.size++
}

// release appends to out, in merged order, every event that no partition
// can precede any more.
func (r *reorderer) release(out []item) []item {
	for r.size > 0 {
		var best *partQueue
		for _, q := range r.queues {
			if q.empty() {
				continue
			}
			if best == nil || q.items[q.head].at < best.items[best.head].at {
				best = q // queues are sorted by key, so ties keep the first
			}
		}
		ts := best.items[best.head].at
		if r.size <= r.max && r.blocked(ts, best.key) {
			return out
		}
		if r.size > r.max && r.blocked(ts, best.key) {
			r.forced++
		}
		out = append(out, best.pop())
		r.size--
	}
	return out
}

func (r *reorderer) blocked(ts int64, k partKey) bool {
	for _, q := range r.queues {
		if q.blocks(ts, k, r.slack) {
			return true
		}
	}
	return false
}

// holds reports whether the record at Kafka offset off waits in any queue
// (keyed detection: all queues hold records of one repartition partition).
func (r *reorderer) holds(off int64) bool {
	for _, q := range r.queues {
		if q.holds(off) {
			return true
		}
	}
	return false
}

// setCaughtUp marks every queue caught up (or not), so that queued events
// wait only on each other.
func (r *reorderer) setCaughtUp(v bool) {
	for _, q := range r.queues {
		q.caughtUp = v
	}
}

// waiting reports whether events wait on a partition that has none queued:
// the caller should find out whether that partition is caught up.
func (r *reorderer) waiting() bool {
	if r.size == 0 {
		return false
	}
	for _, q := range r.queues {
		if q.empty() && !q.caughtUp {
			return true
		}
	}
	return false
}
