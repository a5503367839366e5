package ingest

import "slices"

// partitionTracker decides, for one topic partition, which offset may be
// committed: the offset below which every record Fetch returned has been
// marked stored. Records are marked in any order; the commit position only
// moves over a contiguous run of stored records.
//
// It holds the fetched offsets that the commit position has not passed yet
// (ascending) with one stored flag each, so memory is proportional to the
// records in flight. Offsets need not be consecutive: Kafka skips offsets
// (compaction, transaction markers), and a partition re-assigned after
// another member consumed it resumes further on. Every offset the tracker
// ever reports is truthful: all records below it were stored, by this
// consumer or (for offsets it was handed at a re-assignment) by whoever
// committed them.
type partitionTracker struct {
	offs   []int64 // fetched offsets in fetch order; offs[head:] are live
	stored []bool  // stored[i] reports whether offs[i] was marked stored
	head   int

	last      int64 // last fetched offset; -1 before the first fetch
	pos       int64 // commit position (next offset to read); -1 = nothing stored yet
	committed int64 // last offset successfully committed by us; -1 = none
}

// shrinkCap is the capacity above which an emptied queue gives its memory
// back instead of keeping it for the next burst.
const shrinkCap = 1 << 16

func newPartitionTracker() *partitionTracker {
	return &partitionTracker{last: -1, pos: -1, committed: -1}
}

// fetched registers offset off as handed to the caller. An offset at or
// below the last fetched one means kafka-go restarted the partition from
// the group's committed offset (a rebalance, or a reconnect after an
// error): the records in flight will be delivered again, so the queue is
// forgotten and the returned count says how many were dropped; reset
// reports whether that happened. The commit position is kept: it is still
// true that everything below it was stored.
func (p *partitionTracker) fetched(off int64) (dropped int, reset bool) {
	if p.last >= 0 && off <= p.last {
		dropped = len(p.offs) - p.head
		reset = true
		p.clear()
	}
	p.offs = append(p.offs, off)
	p.stored = append(p.stored, false)
	p.last = off
	return dropped, reset
}

// markStored records that the record at off is durably stored. Offsets that
// are not in flight (already passed, forgotten by a reset, or never
// fetched) are ignored: a forgotten record is fetched again and marked
// again, so nothing is lost by dropping the mark.
func (p *partitionTracker) markStored(off int64) {
	live := p.offs[p.head:]
	i, ok := slices.BinarySearch(live, off)
	if !ok {
		return
	}
	p.stored[p.head+i] = true
	if i == 0 {
		p.advance()
	}
}

// advance moves the commit position over the stored records at the head of
// the queue and drops them.
func (p *partitionTracker) advance() {
	for p.head < len(p.offs) && p.stored[p.head] {
		if next := p.offs[p.head] + 1; next > p.pos {
			p.pos = next
		}
		p.head++
	}
	switch {
	case p.head == len(p.offs):
		p.clear()
	case p.head >= 1024 && p.head*2 >= len(p.offs):
		n := copy(p.offs, p.offs[p.head:])
		copy(p.stored, p.stored[p.head:])
		p.offs, p.stored, p.head = p.offs[:n], p.stored[:n], 0
	}
}

func (p *partitionTracker) clear() {
	if cap(p.offs) > shrinkCap {
		p.offs, p.stored = nil, nil
	} else {
		p.offs, p.stored = p.offs[:0], p.stored[:0]
	}
	p.head = 0
}

// inFlight returns the number of fetched records not yet passed by the
// commit position.
func (p *partitionTracker) inFlight() int { return len(p.offs) - p.head }

// toCommit returns the offset to commit and whether there is one: there is
// when the commit position is past what we last committed, so a commit
// never moves the group's offset backwards (kafka-go would, see gotcha 6 in
// the notes).
func (p *partitionTracker) toCommit() (int64, bool) {
	return p.pos, p.pos >= 0 && p.pos > p.committed
}

// didCommit records a successful commit of off.
func (p *partitionTracker) didCommit(off int64) {
	if off > p.committed {
		p.committed = off
	}
}
