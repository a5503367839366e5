package detector

import (
	"math/rand/v2"
	"testing"
)

// flatMap behaves like a Go map under random puts and deletes, including
// the key 0 and keys that collide in the low bits.
func TestFlatMapMatchesGoMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var fm flatMap[int]
	ref := map[uint64]int{}
	for i := 0; i < 200000; i++ {
		k := uint64(rng.IntN(5000)) << (rng.IntN(2) * 40) // many share low bits
		if rng.IntN(3) == 0 {
			fm.delete(k)
			delete(ref, k)
		} else {
			fm.put(k, i)
			ref[k] = i
		}
		if i%10000 == 0 {
			fm.put(0, -1)
			ref[0] = -1
		}
	}
	if fm.len() != len(ref) {
		t.Fatalf("len %d, want %d", fm.len(), len(ref))
	}
	for k, v := range ref {
		if got, ok := fm.get(k); !ok || got != v {
			t.Fatalf("get(%d) = %d, %v; want %d", k, got, ok, v)
		}
	}
	for i := 0; i < 10000; i++ {
		k := uint64(rng.IntN(5000)) << 40
		_, ok := fm.get(k)
		if _, want := ref[k]; ok != want {
			t.Fatalf("get(%d) presence %v, want %v", k, ok, want)
		}
	}
}
