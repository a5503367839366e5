package ingest

import (
	"math/rand/v2"
	"testing"
)

// step is one operation on a partitionTracker in a table case.
type step struct {
	kind byte // 'f' fetch, 'm' mark stored, 'c' check toCommit (and commit), 'n' check in-flight
	offs []int64
	want int64 // 'c': offset to commit, -1 = nothing; 'n': in-flight count; 'f': records forgotten by a reset, -1 = no reset
}

func fetch(offs ...int64) step { return step{kind: 'f', offs: offs, want: -1} }

// fetchReset fetches off and expects it to reset the partition, forgetting
// dropped in-flight records.
func fetchReset(off int64, dropped int64) step {
	return step{kind: 'f', offs: []int64{off}, want: dropped}
}
func mark(offs ...int64) step  { return step{kind: 'm', offs: offs} }
func commit(want int64) step   { return step{kind: 'c', want: want} }
func inflight(want int64) step { return step{kind: 'n', want: want} }
func span(from, to int64) []int64 {
	var o []int64
	for i := from; i < to; i++ {
		o = append(o, i)
	}
	return o
}

func TestPartitionTracker(t *testing.T) {
	cases := []struct {
		name  string
		steps []step
	}{
		{"nothing fetched", []step{commit(-1), mark(0), commit(-1), inflight(0)}},
		{"in order", []step{
			fetch(span(0, 5)...), inflight(5), commit(-1),
			mark(0, 1), commit(2), commit(-1), // committed once, not again
			mark(2, 3, 4), commit(5), inflight(0),
		}},
		{"starts at a committed offset", []step{
			fetch(1000, 1001), mark(1000), commit(1001), mark(1001), commit(1002),
		}},
		{"out of order within a partition", []step{
			fetch(span(0, 10)...),
			mark(9, 8, 7, 6, 5), commit(-1), inflight(10),
			mark(1, 0, 2), commit(3), inflight(7),
			mark(4), commit(-1), // 3 still missing
			mark(3), commit(10), inflight(0),
		}},
		{"batch 2 stored before batch 1", []step{
			fetch(span(0, 200)...),
			mark(span(100, 200)...), commit(-1),
			mark(span(0, 99)...), commit(99),
			mark(99), commit(200),
		}},
		{"offset gaps (compaction, transaction markers)", []step{
			fetch(0, 1, 5, 6, 10),
			mark(0, 1, 5), commit(6),
			mark(10), commit(-1), // 6 is in flight
			mark(6), commit(11),
		}},
		{"marks for unknown offsets are ignored", []step{
			mark(3), fetch(0, 1), mark(7, 1, 1), commit(-1), mark(0, 0), commit(2), mark(1), commit(-1),
		}},
		{"partition reset: redelivered from the committed offset", []step{
			fetch(span(0, 10)...), mark(0, 1, 2, 3, 4), commit(5),
			fetchReset(5, 5), inflight(1),
			mark(7),    // a stale mark from before the reset: 7 is not in flight any more
			commit(-1), // 5 is in flight again
			mark(5), commit(6),
			fetch(6, 7, 8, 9), mark(6, 8, 9), commit(7), // the stale mark of 7 did not count
			mark(7), commit(10), inflight(0),
		}},
		{"partition reset below what we committed never commits backwards", []step{
			fetch(span(0, 10)...), mark(span(0, 10)...), commit(10),
			fetchReset(3, 0), mark(3), commit(-1),
			fetch(span(4, 13)...), mark(span(4, 10)...), commit(-1),
			mark(10, 11), commit(12), mark(12), commit(13),
		}},
		{"reset keeps a stored but uncommitted position", []step{
			fetch(span(0, 10)...), mark(span(0, 8)...), // position 8, not committed
			fetchReset(2, 2),
			commit(8), // still true: 0..7 are stored
			mark(2), commit(-1),
		}},
		{"stale mark of a refetched offset is truthful", []step{
			fetch(span(0, 5)...), fetchReset(0, 5), mark(0), commit(1),
		}},
		{"forward jump after re-assignment", []step{
			fetch(span(0, 5)...), mark(0, 1, 2), commit(3),
			fetch(50, 51, 52), mark(50, 51, 52), commit(-1), // 3 and 4 still in flight
			mark(3, 4), commit(53),
		}},
		{"same offset twice is a reset", []step{
			fetch(0, 1), fetchReset(1, 2), mark(0), commit(-1), mark(1), commit(2),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPartitionTracker()
			for i, s := range tc.steps {
				switch s.kind {
				case 'f':
					for _, o := range s.offs {
						dropped, reset := p.fetched(o)
						if want := s.want; want >= 0 {
							if !reset || int64(dropped) != want {
								t.Fatalf("step %d: fetch %d: reset=%v dropped=%d, want a reset dropping %d", i, o, reset, dropped, want)
							}
						} else if reset {
							t.Fatalf("step %d: fetch %d: unexpected reset (dropped %d)", i, o, dropped)
						}
					}
				case 'm':
					for _, o := range s.offs {
						p.markStored(o)
					}
				case 'c':
					off, ok := p.toCommit()
					switch {
					case s.want < 0 && ok:
						t.Fatalf("step %d: toCommit = %d, want nothing", i, off)
					case s.want >= 0 && (!ok || off != s.want):
						t.Fatalf("step %d: toCommit = %d, %v; want %d", i, off, ok, s.want)
					}
					if ok {
						p.didCommit(off)
					}
				case 'n':
					if n := p.inFlight(); int64(n) != s.want {
						t.Fatalf("step %d: inFlight = %d, want %d", i, n, s.want)
					}
				}
			}
		})
	}
}

// TestPartitionTrackerRandom checks the tracker against a brute-force model
// with many records marked in random order, which also exercises queue
// compaction.
func TestPartitionTrackerRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		p := newPartitionTracker()
		n := 1000 + rng.IntN(9000)
		var offs []int64
		off := int64(rng.IntN(100))
		for range n {
			offs = append(offs, off)
			p.fetched(off)
			off += 1 + int64(rng.IntN(2)) // some gaps
		}
		stored := make(map[int64]bool)
		order := rng.Perm(n)
		committed := int64(-1)
		for k, i := range order {
			p.markStored(offs[i])
			stored[offs[i]] = true
			if k%97 != 0 && k != n-1 {
				continue
			}
			// Model: first unstored fetched offset, or last+1.
			want := int64(-1)
			for j, o := range offs {
				if !stored[o] {
					if j > 0 {
						want = offs[j-1] + 1
					}
					break
				}
				if j == n-1 {
					want = o + 1
				}
			}
			got, ok := p.toCommit()
			if want > committed {
				if !ok || got != want {
					t.Fatalf("round %d after %d marks: toCommit = %d, %v; want %d", round, k+1, got, ok, want)
				}
				p.didCommit(got)
				committed = got
			} else if ok {
				t.Fatalf("round %d after %d marks: toCommit = %d, want nothing (committed %d)", round, k+1, got, committed)
			}
		}
		if p.inFlight() != 0 || committed != offs[n-1]+1 {
			t.Fatalf("round %d: in flight %d, committed %d; want 0, %d", round, p.inFlight(), committed, offs[n-1]+1)
		}
	}
}
