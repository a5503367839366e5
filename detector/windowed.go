package detector

import (
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

// windowed evaluates threshold and anomaly rules: an aggregate over a
// sliding window of event time per group.
type windowed struct {
	evalBase
	bs      int64 // bucket size, ns
	nb      int64 // buckets per window
	groups  *groupTable[windowState]
	anomaly *anomalyShape
	key     int // keyCache slot of the group_by fields
}

type windowState struct {
	w        window
	d        distinctSet
	newest   int64 // newest event time seen in the group
	lastFire int64
	fired    bool
	phiIdx   int64
	phi      bool
	samples  samples
	slots    *slotRing // anomaly rules only
}

func newWindowed(b evalBase) *windowed {
	r := b.rs.rule
	bs := int64(bucketSize(r.Window))
	ev := &windowed{evalBase: b, bs: bs, nb: (int64(r.Window) + bs - 1) / bs, key: b.keys.index(r.GroupBy)}
	if r.Kind == rules.Anomaly {
		ev.anomaly = newAnomalyShape(r)
	}
	ev.groups = newGroupTable(b.cfg.MaxGroups, func(s *windowState) {
		s.w.reset()
		s.d.reset()
		s.samples.reset()
		s.newest, s.lastFire, s.fired, s.phiIdx, s.phi = 0, 0, false, 0, false
		if s.slots != nil {
			s.slots.reset()
		}
	})
	return ev
}

func (ev *windowed) stats() (int, uint64) { return ev.groups.len(), ev.groups.evictions }

func (ev *windowed) observe(e *event.Event, emit func(*Alert)) {
	r := ev.rs.rule
	if !grouped(e, r.GroupBy) {
		return
	}
	g, created := ev.groups.get(ev.keys.sum(ev.key, e), e, r.GroupBy)
	st := &g.state
	ts := e.TS
	idx := floorDiv(ts, ev.bs)
	if !created {
		cur := floorDiv(st.newest, ev.bs)
		if ts < st.newest-int64(ev.cfg.Lateness) || idx <= cur-ev.nb {
			ev.rs.late++
			return
		}
	}
	if created || ts > st.newest {
		st.newest = ts
	}
	cur := floorDiv(st.newest, ev.bs)
	from := cur - ev.nb + 1
	st.w.expire(from)

	var v float64
	switch r.Aggregate.Op {
	case rules.Sum:
		v = r.Aggregate.Field.Number(e)
	case rules.Ratio:
		if r.Aggregate.Ratio.Match(e) {
			v = 1
		}
	}
	st.w.add(idx, v)
	var dh uint64
	distinctValue := false
	if r.Aggregate.Op == rules.Distinct {
		st.d.expire(from)
		// An absent string field has no value to count; the event still
		// counts towards min_events.
		if f := r.Aggregate.Field; f.Kind != event.String || f.Str(e) != "" {
			dh, distinctValue = ev.hasher.sumField(e, f), true
			st.d.add(idx, dh)
		}
	}
	if e.IsPHI() && (!st.phi || idx > st.phiIdx) {
		st.phi, st.phiIdx = true, idx
	}
	st.samples.add(ts, e.ID, from*ev.bs)

	value := ev.value(st)
	threshold := r.Threshold
	if ev.anomaly != nil {
		if st.slots == nil {
			st.slots = ev.anomaly.newRing()
		}
		st.slots.add(ev.anomaly, ts, v, dh, distinctValue)
		bound, ok := st.slots.bound(ev.anomaly, from*ev.bs)
		if !ok || value < ev.anomaly.min || !(value > bound) {
			return
		}
		threshold = rules.Condition{Text: AnomalyThreshold(bound)}
	} else if !threshold.Holds(value) {
		return
	}
	if st.w.n < int64(r.MinEvents) || !cooledDown(st.fired, st.lastFire, ts, r.Cooldown) {
		return
	}
	st.fired, st.lastFire = true, ts
	start, end := AlertWindow(r.Window, st.newest)
	a := ev.newAlert(ts, st.phi && st.phiIdx >= from)
	a.Group = groupValues(r.GroupBy, g.values)
	a.Value = value
	a.Threshold = threshold.Text
	a.WindowStart, a.WindowEnd = start, end
	a.SampleIDs = st.samples.ids(start)
	ev.fire(a, emit)
}

func (ev *windowed) value(st *windowState) float64 {
	switch ev.rs.rule.Aggregate.Op {
	case rules.Count:
		return float64(st.w.n)
	case rules.Sum:
		return st.w.v
	case rules.Distinct:
		return float64(st.d.len())
	case rules.Ratio:
		if st.w.n == 0 {
			return 0
		}
		return st.w.v / float64(st.w.n)
	}
	return 0
}
