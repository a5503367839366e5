package detector

import (
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules/expression"
)

// sequence fires when a group's events match the rule's steps in order,
// each step as many times as its threshold asks, all within `within` of
// the first step's event.
type sequence struct {
	evalBase
	key    int
	groups *groupTable[seqState]
}

// maxRuns bounds the partial matches kept per group. A new run starts at
// every first-step event, so that a later start can still complete after an
// earlier one has timed out; runs that are no further along than a newer
// run are dropped, which keeps the count small in practice.
const maxRuns = 8

type seqState struct {
	runs     []seqRun
	lastFire int64
	fired    bool
}

type seqRun struct {
	start   int64
	step    int
	count   int64 // events matched in the current step
	matched int64 // events matched over all steps
	phi     bool
	samples []string
}

func newSequence(b evalBase) *sequence {
	return &sequence{evalBase: b, key: b.keys.index(b.rs.rule.Sequence.By), groups: newGroupTable(b.cfg.MaxGroups, func(s *seqState) {
		s.runs = s.runs[:0]
		s.lastFire, s.fired = 0, false
	})}
}

func (ev *sequence) stats() (int, uint64) { return ev.groups.len(), ev.groups.evictions }

func (ev *sequence) observe(e *event.Event, emit func(*Alert)) {
	spec := ev.rs.rule.Sequence
	steps := spec.Steps
	// Cheap exit: most events match no step at all.
	matches := false
	for i := range steps {
		if steps[i].Where == nil || steps[i].Where.Match(e) {
			matches = true
			break
		}
	}
	if !matches {
		return
	}
	if !grouped(e, spec.By) {
		return
	}
	g, _ := ev.groups.get(ev.keys.sum(ev.key, e), e, spec.By)
	st := &g.state
	ts := e.TS
	within := int64(spec.Within)

	// Drop runs that can no longer finish in time.
	live := st.runs[:0]
	for _, r := range st.runs {
		if ts-r.start <= within {
			live = append(live, r)
		}
	}
	st.runs = live

	var done *seqRun
	for i := range st.runs {
		r := &st.runs[i]
		if ts < r.start || !stepMatches(steps[r.step].Where, e) {
			continue
		}
		ev.advance(r, e)
		if r.step == len(steps) && done == nil {
			done = r
		}
	}
	if done == nil && stepMatches(steps[0].Where, e) && len(st.runs) < maxRuns {
		st.runs = append(st.runs, seqRun{start: ts})
		r := &st.runs[len(st.runs)-1]
		ev.advance(r, e)
		if r.step == len(steps) {
			done = r
		}
	}
	if done == nil {
		st.runs = dropDominated(st.runs)
		return
	}
	run := *done
	st.runs = st.runs[:0] // a completed sequence starts over
	if !cooledDown(st.fired, st.lastFire, ts, ev.rs.rule.Cooldown) {
		return
	}
	st.fired, st.lastFire = true, ts
	a := ev.newAlert(ts, run.phi)
	a.Group = groupValues(spec.By, g.values)
	a.Value = float64(run.matched)
	a.Threshold = steps[len(steps)-1].Count.Text
	a.WindowStart, a.WindowEnd = run.start, ts
	a.SampleIDs = run.samples
	ev.fire(a, emit)
}

func stepMatches(p *expression.Predicate, e *event.Event) bool {
	return p == nil || p.Match(e)
}

// advance counts e into the run's current step and moves on when the
// step's threshold holds.
func (ev *sequence) advance(r *seqRun, e *event.Event) {
	steps := ev.rs.rule.Sequence.Steps
	r.count++
	r.matched++
	r.phi = r.phi || e.IsPHI()
	if len(r.samples) < MaxSamples {
		r.samples = append(r.samples, string([]byte(e.ID)))
	}
	if steps[r.step].Count.Holds(float64(r.count)) {
		r.step++
		r.count = 0
	}
}

// dropDominated removes runs that another run beats: same progress and a
// later start (more time left).
func dropDominated(runs []seqRun) []seqRun {
	var drop [maxRuns + 1]bool
	for i, r := range runs {
		for j, o := range runs {
			if i != j && o.step == r.step && o.count == r.count && (o.start > r.start || (o.start == r.start && j > i)) {
				drop[i] = true
				break
			}
		}
	}
	out := runs[:0]
	for i, r := range runs {
		if !drop[i] {
			out = append(out, r)
		}
	}
	return out
}
