package detector

import (
	"math"

	"github.com/vigil-sec/vigil/rules"
)

// anomalyShape is an anomaly rule's baseline geometry: the baseline is the
// aggregate of each whole window step (slots aligned to multiples of the
// window) over the `baseline` period before the current window.
type anomalyShape struct {
	slot int64 // window length, ns
	k    int   // slots in the baseline
	z    float64
	min  float64
	op   rules.AggOp
}

func newAnomalyShape(r *rules.Rule) *anomalyShape {
	k := int(r.Anomaly.Baseline / r.Window)
	if k < 1 {
		k = 1
	}
	return &anomalyShape{slot: int64(r.Window), k: k, z: r.Anomaly.Z, min: r.Anomaly.Min, op: r.Aggregate.Op}
}

const noSlot = math.MinInt64

// slotRing keeps the per-slot aggregates of one group: the baseline slots
// plus the (at most two) slots the current window overlaps.
type slotRing struct {
	ids     []int64
	n       []int64
	v       []float64
	first   int64 // the group's first slot; the baseline fills from here
	has     bool
	setSlot int64 // distinct: the slot whose values set holds
	set     map[uint64]struct{}
}

func (s *anomalyShape) newRing() *slotRing {
	size := s.k + 3
	r := &slotRing{ids: make([]int64, size), n: make([]int64, size), v: make([]float64, size)}
	r.reset()
	return r
}

func (r *slotRing) reset() {
	for i := range r.ids {
		r.ids[i], r.n[i], r.v[i] = noSlot, 0, 0
	}
	r.has = false
	r.setSlot = noSlot
	clear(r.set)
}

func (r *slotRing) index(s int64) int {
	m := s % int64(len(r.ids))
	if m < 0 {
		m += int64(len(r.ids))
	}
	return int(m)
}

// add counts one matching event at ts with the aggregate's per-event value
// v (sum term, ratio hit) or, for distinct, the value's hash dh when
// hasValue (an event without a value still opens its slot: a real zero).
func (r *slotRing) add(shape *anomalyShape, ts int64, v float64, dh uint64, hasValue bool) {
	s := floorDiv(ts, shape.slot)
	if !r.has || s < r.first {
		r.first, r.has = s, true
	}
	i := r.index(s)
	if r.ids[i] != s {
		if r.ids[i] != noSlot && r.ids[i] > s {
			return // older than the ring holds: too late to matter
		}
		r.ids[i], r.n[i], r.v[i] = s, 0, 0
	}
	if shape.op != rules.Distinct {
		r.n[i]++
		r.v[i] += v
		return
	}
	switch {
	case s < r.setSlot:
		return // a finished slot's set is gone; late distinct values are not counted
	case s > r.setSlot:
		if r.set == nil {
			r.set = make(map[uint64]struct{})
		}
		clear(r.set)
		r.setSlot = s
	}
	if hasValue {
		r.set[dh] = struct{}{}
	}
	r.n[i] = int64(len(r.set))
}

func (r *slotRing) value(shape *anomalyShape, s int64) float64 {
	i := r.index(s)
	if r.ids[i] != s {
		return 0 // a slot without events is a real zero in the baseline
	}
	switch shape.op {
	case rules.Sum:
		return r.v[i]
	case rules.Ratio:
		if r.n[i] == 0 {
			return 0
		}
		return r.v[i] / float64(r.n[i])
	}
	return float64(r.n[i])
}

// bound returns mean + z·stddev of the baseline slots that end at or
// before windowStart, or false while the group's history is shorter than
// the baseline.
func (r *slotRing) bound(shape *anomalyShape, windowStart int64) (float64, bool) {
	last := floorDiv(windowStart, shape.slot) - 1
	first := last - int64(shape.k) + 1
	if !r.has || r.first > first {
		return 0, false
	}
	var sum, sq float64
	for s := first; s <= last; s++ {
		x := r.value(shape, s)
		sum += x
		sq += x * x
	}
	n := float64(shape.k)
	mean := sum / n
	variance := sq/n - mean*mean
	if variance < 0 {
		variance = 0
	}
	return mean + shape.z*math.Sqrt(variance), true
}
