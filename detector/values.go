package detector

import "github.com/vigil-sec/vigil/event"

// newValue fires the first time a field takes a value for its `per` group
// (or again once the value has not been seen for `remember`).
type newValue struct {
	evalBase
	fields  []*event.Field // per fields, then the field itself
	key     int
	groups  *groupTable[seenState]
	started bool
	newest  int64
}

type seenState struct {
	lastSeen int64
	lastFire int64
	fired    bool
}

func resetSeen(s *seenState) { *s = seenState{} }

func newNewValue(b evalBase) *newValue {
	f := b.rs.rule.GroupFields()
	return &newValue{evalBase: b, fields: f, key: b.keys.index(f), groups: newGroupTable(b.cfg.MaxGroups, resetSeen)}
}

func (ev *newValue) stats() (int, uint64) { return ev.groups.len(), ev.groups.evictions }

func (ev *newValue) observe(e *event.Event, emit func(*Alert)) {
	spec := ev.rs.rule.NewValue
	if spec.Field.Kind == event.String && spec.Field.Str(e) == "" {
		return // the field is absent: there is no value to learn
	}
	ts := e.TS
	if !ev.started {
		ev.started, ev.newest = true, ts
	}
	if ts > ev.newest {
		ev.newest = ts
		ev.forget()
	}
	if !grouped(e, ev.fields) {
		return
	}
	g, created := ev.groups.get(ev.keys.sum(ev.key, e), e, ev.fields)
	st := &g.state
	isNew := created || ts-st.lastSeen > int64(spec.Remember)
	if created || ts > st.lastSeen {
		st.lastSeen = ts
	}
	if !isNew || ts < ev.rs.first+int64(spec.Learn) || !cooledDown(st.fired, st.lastFire, ts, ev.rs.rule.Cooldown) {
		return
	}
	st.fired, st.lastFire = true, ts
	a := ev.newAlert(ts, e.IsPHI())
	a.Group = groupValues(ev.fields, g.values)
	a.Value = 1
	a.Threshold = "new"
	a.WindowStart, a.WindowEnd = ts-int64(spec.Remember), ts
	a.SampleIDs = []string{string([]byte(e.ID))}
	ev.fire(a, emit)
}

// forget drops values not seen within `remember`; they would count as new
// anyway, so this only frees memory (it is not an eviction).
func (ev *newValue) forget() {
	limit := ev.newest - int64(ev.rs.rule.NewValue.Remember)
	for t := ev.groups.tail; t != nil && t.state.lastSeen < limit; t = ev.groups.tail {
		ev.groups.evict(t)
	}
}

// dormant fires when a value that was seen before comes back after at
// least `idle` without events.
type dormant struct {
	evalBase
	fields []*event.Field
	key    int
	groups *groupTable[seenState]
}

func newDormant(b evalBase) *dormant {
	f := b.rs.rule.GroupFields()
	return &dormant{evalBase: b, fields: f, key: b.keys.index(f), groups: newGroupTable(b.cfg.MaxGroups, resetSeen)}
}

func (ev *dormant) stats() (int, uint64) { return ev.groups.len(), ev.groups.evictions }

func (ev *dormant) observe(e *event.Event, emit func(*Alert)) {
	spec := ev.rs.rule.Dormant
	if spec.Field.Kind == event.String && spec.Field.Str(e) == "" {
		return // the field, dormant's only group field, is absent
	}
	ts := e.TS
	g, created := ev.groups.get(ev.keys.sum(ev.key, e), e, ev.fields)
	st := &g.state
	if created {
		st.lastSeen = ts
		return // never seen before: not a reactivation
	}
	last := st.lastSeen
	if ts > last {
		st.lastSeen = ts
	}
	idle := ts - last
	if idle < int64(spec.Idle) || !cooledDown(st.fired, st.lastFire, ts, ev.rs.rule.Cooldown) {
		return
	}
	st.fired, st.lastFire = true, ts
	a := ev.newAlert(ts, e.IsPHI())
	a.Group = groupValues(ev.fields, g.values)
	a.Value = float64(idle) / 1e9
	a.Threshold = ">= " + FormatNumber(spec.Idle.Seconds())
	a.WindowStart, a.WindowEnd = last, ts
	a.SampleIDs = []string{string([]byte(e.ID))}
	ev.fire(a, emit)
}
