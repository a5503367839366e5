package detector

import (
	"hash/maphash"

	"github.com/vigil-sec/vigil/event"
)

// dedupMax caps the ids remembered for duplicate detection (about 50 MB: a
// 4M-slot id set and the arrival-order list); past it the oldest are
// forgotten early.
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
	seen   idSet
	fifo   []dedupEntry // in arrival order; fifo[head:] live
	head   int
	newest int64
}

type dedupEntry struct {
	h  uint64
	ts int64
}

func newDedup(window int64) *dedup {
	return &dedup{window: window, seed: maphash.MakeSeed()}
}

// duplicate reports whether e was seen within the window, and remembers it.
// Events without an id are never duplicates.
func (d *dedup) duplicate(e *event.Event) bool {
	if e.ID == "" {
		return false
	}
	h := maphash.String(d.seed, e.ID) ^ uint64(e.Source)
	if h == 0 {
		h = 1 // 0 marks an empty slot of the set
	}
	if !d.seen.add(h) {
		return true
	}
	d.fifo = append(d.fifo, dedupEntry{h, e.TS})
	d.newest = max(d.newest, e.TS)
	// Forget ids older than the window (arrival order is close to event
	// order), and the oldest past the cap.
	for d.head < len(d.fifo) && (d.fifo[d.head].ts < d.newest-d.window || len(d.fifo)-d.head > dedupMax) {
		d.seen.remove(d.fifo[d.head].h)
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

// idSet is a set of non-zero 64-bit hashes: open addressing with linear
// probing and backward-shift deletion, so no tombstones build up under the
// steady add-oldest-out churn of dedup. At the million ids dedup may hold
// it takes a quarter of a Go map's memory and far fewer cache misses.
type idSet struct {
	slots []uint64 // 0 is empty; len is a power of two, at most half full
	n     int
}

// add inserts h and reports whether it was absent.
func (s *idSet) add(h uint64) bool {
	if 2*(s.n+1) > len(s.slots) {
		s.grow()
	}
	m := uint64(len(s.slots) - 1)
	for i := h & m; ; i = (i + 1) & m {
		switch s.slots[i] {
		case 0:
			s.slots[i] = h
			s.n++
			return true
		case h:
			return false
		}
	}
}

// remove deletes h if present, shifting back the entries of its probe run
// that would otherwise become unreachable.
func (s *idSet) remove(h uint64) {
	if s.n == 0 {
		return
	}
	m := uint64(len(s.slots) - 1)
	i := h & m
	for s.slots[i] != h {
		if s.slots[i] == 0 {
			return
		}
		i = (i + 1) & m
	}
	for j := (i + 1) & m; s.slots[j] != 0; j = (j + 1) & m {
		// The entry at j may fill the hole at i unless its home slot lies
		// cyclically in (i, j]: then it would move before its home.
		home := s.slots[j] & m
		if (i < j && (home <= i || home > j)) || (i > j && home <= i && home > j) {
			s.slots[i] = s.slots[j]
			i = j
		}
	}
	s.slots[i] = 0
	s.n--
}

func (s *idSet) grow() {
	old := s.slots
	s.slots = make([]uint64, max(1024, 2*len(old)))
	s.n = 0
	for _, h := range old {
		if h != 0 {
			s.add(h)
		}
	}
}
