package detector

import (
	"sort"
	"time"
)

// bucketSize returns the time resolution of a window: window/60, and never
// coarser than one second, picked among round sizes that divide the window
// so that window starts and ends are round times (docs/rules.md).
func bucketSize(window time.Duration) time.Duration {
	limit := window / 60
	if limit > time.Second {
		limit = time.Second
	}
	for _, c := range []time.Duration{time.Second, 500 * time.Millisecond, 250 * time.Millisecond,
		200 * time.Millisecond, 100 * time.Millisecond, 50 * time.Millisecond, 25 * time.Millisecond,
		20 * time.Millisecond, 10 * time.Millisecond, 5 * time.Millisecond, 2 * time.Millisecond, time.Millisecond} {
		if c <= limit && window%c == 0 {
			return c
		}
	}
	if limit < 1 {
		return 1
	}
	return limit
}

// AlertWindow returns the window [start, end) of an alert whose group's
// newest event is at ts (Unix ns): the window's buckets up to and
// including ts's. Long-window rules, evaluated in ClickHouse, align theirs
// the same way.
func AlertWindow(window time.Duration, ts int64) (start, end int64) {
	bs := int64(bucketSize(window))
	nb := (int64(window) + bs - 1) / bs
	end = (floorDiv(ts, bs) + 1) * bs
	return end - nb*bs, end
}

// floorDiv divides rounding towards negative infinity (event times before
// 1970 are valid input).
func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// bucket holds one time slice of a group's window: how many matching
// events fell in it and the aggregate's partial value (sum, or ratio hits).
type bucket struct {
	idx int64
	n   int64
	v   float64
}

// window is a sliding window over sparse buckets, oldest first. Only
// non-empty buckets are stored, so a quiet group costs a few bytes however
// long the window is.
type window struct {
	buckets []bucket
	head    int // buckets[head:] are live
	n       int64
	v       float64
}

func (w *window) reset() {
	w.buckets = w.buckets[:0]
	w.head = 0
	w.n, w.v = 0, 0
}

func (w *window) live() []bucket { return w.buckets[w.head:] }

// add puts a matching event into bucket idx. Buckets may arrive out of
// order; a new bucket goes to its sorted place.
func (w *window) add(idx int64, v float64) {
	w.n++
	w.v += v
	live := w.live()
	if k := len(live); k > 0 && live[k-1].idx == idx {
		live[k-1].n++
		live[k-1].v += v
		return
	}
	if k := len(live); k == 0 || live[k-1].idx < idx {
		if w.head > 0 && w.head >= len(w.buckets)/2 && len(w.buckets) == cap(w.buckets) {
			// Compact instead of growing: the dead prefix is at least half.
			n := copy(w.buckets, live)
			w.buckets = w.buckets[:n]
			w.head = 0
		}
		w.buckets = append(w.buckets, bucket{idx: idx, n: 1, v: v})
		return
	}
	i := sort.Search(len(live), func(i int) bool { return live[i].idx >= idx })
	if live[i].idx == idx {
		live[i].n++
		live[i].v += v
		return
	}
	w.buckets = append(w.buckets, bucket{})
	live = w.buckets[w.head:]
	copy(live[i+1:], live[i:])
	live[i] = bucket{idx: idx, n: 1, v: v}
}

// expire drops buckets with idx < from.
func (w *window) expire(from int64) {
	for w.head < len(w.buckets) && w.buckets[w.head].idx < from {
		b := w.buckets[w.head]
		w.n -= b.n
		w.v -= b.v
		w.head++
	}
	if w.head == len(w.buckets) {
		w.buckets = w.buckets[:0]
		w.head = 0
		w.v = 0 // no float drift once the window empties
	}
}

// distinctSet counts the distinct values seen in a sliding window: each
// value hash maps to the newest bucket it was seen in; expiry walks a
// queue of (bucket, hash) pairs in bucket order.
type distinctSet struct {
	last  flatMap[int64]
	queue []distinctEntry
	head  int
}

type distinctEntry struct {
	idx int64
	h   uint64
}

func (d *distinctSet) reset() {
	d.last.clear()
	d.queue = d.queue[:0]
	d.head = 0
}

func (d *distinctSet) add(idx int64, h uint64) {
	last, ok := d.last.ptr(h)
	if ok && *last >= idx {
		return
	}
	*last = idx
	q := d.queue[d.head:]
	if k := len(q); k == 0 || q[k-1].idx <= idx {
		if d.head > 0 && d.head >= len(d.queue)/2 && len(d.queue) == cap(d.queue) {
			n := copy(d.queue, q)
			d.queue = d.queue[:n]
			d.head = 0
		}
		d.queue = append(d.queue, distinctEntry{idx, h})
		return
	}
	i := sort.Search(len(q), func(i int) bool { return q[i].idx > idx })
	d.queue = append(d.queue, distinctEntry{})
	q = d.queue[d.head:]
	copy(q[i+1:], q[i:])
	q[i] = distinctEntry{idx, h}
}

func (d *distinctSet) expire(from int64) {
	for d.head < len(d.queue) && d.queue[d.head].idx < from {
		e := d.queue[d.head]
		if last, ok := d.last.get(e.h); ok && last == e.idx {
			d.last.delete(e.h)
		}
		d.head++
	}
	if d.head == len(d.queue) {
		d.queue = d.queue[:0]
		d.head = 0
	}
}

func (d *distinctSet) len() int { return d.last.len() }
