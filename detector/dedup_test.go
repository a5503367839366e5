package detector

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/vigil-sec/vigil/event"
)

// The set agrees with a Go map under random adds and removes, including
// the oldest-out churn of dedup and clustered hashes that force long
// probe runs and wrap around the table.
func TestIDSetAgreesWithAMap(t *testing.T) {
	for _, tc := range []struct {
		name string
		hash func(r *rand.Rand) uint64
	}{
		{"random", func(r *rand.Rand) uint64 { return r.Uint64() | 1 }},
		{"clustered", func(r *rand.Rand) uint64 { return uint64(r.IntN(3000))<<1 | 1 }},
		{"wrapping", func(r *rand.Rand) uint64 { return uint64(1020+r.IntN(10)) | uint64(r.IntN(50))<<20 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var s idSet
			want := map[uint64]bool{}
			var order []uint64
			for op := 0; op < 200000; op++ {
				switch {
				case r.IntN(3) > 0 || len(order) == 0:
					h := tc.hash(r)
					if added := s.add(h); added == want[h] {
						t.Fatalf("op %d: add(%x) = %v with the value present = %v", op, h, added, want[h])
					}
					if !want[h] {
						order = append(order, h)
					}
					want[h] = true
				default:
					h := order[0]
					order = order[1:]
					s.remove(h)
					delete(want, h)
				}
				if s.n != len(want) {
					t.Fatalf("op %d: %d in the set, want %d", op, s.n, len(want))
				}
			}
			for h := range want {
				if s.add(h) {
					t.Fatalf("%x lost", h)
				}
			}
		})
	}
}

// BenchmarkDedup is the steady state at a high rate: every id new, the
// window full (dedupMax ids remembered), one forgotten per id added.
func BenchmarkDedup(b *testing.B) {
	d := newDedup(int64(DefaultDedupWindow))
	ids := make([]string, 1<<22)
	for i := range ids {
		ids[i] = "req_" + strconv.Itoa(i)
	}
	e := &event.Event{Source: event.Requests}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.ID = ids[i&(len(ids)-1)]
		e.TS = int64(i) * 100 // 10 M events/s of event time
		d.duplicate(e)
	}
}
