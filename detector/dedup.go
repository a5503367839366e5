package detector

import (
	"hash/maphash"

	"github.com/vigil-sec/vigil/event"
)

// dedupMax caps the ids remembered for duplicate detection (about 40 MB);
// past it the oldest are forgotten early.
const dedupMax = 1 << 20

// dedup drops records whose id (request_id / event_id) was already
// evaluated within the window: a producer that retries a send writes the
// same record twice, and counting it twice would inflate every window it
// falls in. Storage absorbs such duplicates too (the tables are keyed by
// id), so detection, storage and the state rebuilt from storage after a
// restart all see each record once. Ids are remembered by a 64-bit hash;
// a collision (odds about 1e-7 at a million remembered ids) drops one
// event.
type dedup struct {
	window int64 // event time, ns
	seed   maphash.Seed
	seen   map[uint64]struct{}
	fifo   []dedupEntry // in arrival order; fifo[head:] live
	head   int
	newest int64
}

type dedupEntry struct {
	h  uint64
	ts int64
}

func newDedup(window int64) *dedup {
	return &dedup{window: window, seed: maphash.MakeSeed(), seen: make(map[uint64]struct{})}
}

// duplicate reports whether e was seen within the window, and remembers it.
// Events without an id are never duplicates.
func (d *dedup) duplicate(e *event.Event) bool {
	if e.ID == "" {
		return false
	}
	h := maphash.String(d.seed, e.ID) ^ uint64(e.Source)
	if _, ok := d.seen[h]; ok {
		return true
	}
	d.seen[h] = struct{}{}
	d.fifo = append(d.fifo, dedupEntry{h, e.TS})
	d.newest = max(d.newest, e.TS)
	// Forget ids older than the window (arrival order is close to event
	// order), and the oldest past the cap.
	for d.head < len(d.fifo) && (d.fifo[d.head].ts < d.newest-d.window || len(d.fifo)-d.head > dedupMax) {
		delete(d.seen, d.fifo[d.head].h)
		d.head++
	}
	if d.head >= 4096 && d.head*2 >= len(d.fifo) {
		n := copy(d.fifo, d.fifo[d.head:])
		d.fifo, d.head = d.fifo[:n], 0
	}
	return false
}

// filter returns batch without its duplicates, reusing scratch; batch
// itself is returned, untouched, when it has none.
func (d *dedup) filter(batch []event.Event, scratch []event.Event) ([]event.Event, []event.Event) {
	for i := range batch {
		if !d.duplicate(&batch[i]) {
			continue
		}
		out := append(scratch[:0], batch[:i]...)
		for j := i + 1; j < len(batch); j++ {
			if !d.duplicate(&batch[j]) {
				out = append(out, batch[j])
			}
		}
		return out, out
	}
	return batch, scratch
}
