package detector

import (
	"hash/fnv"
	"sort"
	"sync"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

// Detector evaluates batches of events on several cores. Rules are split
// over shards; each shard owns its rules' state outright, so the hot path
// takes no locks: shards only meet at the end of each batch. Alerts come
// out in the order a single engine would produce them (event order, then
// rule order), so the output does not depend on the number of shards.
type Detector struct {
	cfg     Config
	shards  []*shard
	ruleIdx map[*rules.Rule]int
	wg      sync.WaitGroup
	dedup   *dedup // nil when disabled
	scratch []event.Event
}

type shard struct {
	engine *Engine
	work   chan []event.Event
	out    []indexedAlert
	cur    int
}

type indexedAlert struct {
	event int
	rule  int
	alert *Alert
}

// New builds a detector; Close stops its shard goroutines.
func New(rs []*rules.Rule, cfg Config) *Detector {
	cfg = cfg.withDefaults()
	d := &Detector{cfg: cfg}
	if cfg.DedupWindow > 0 {
		d.dedup = newDedup(int64(cfg.DedupWindow))
	}
	d.shards = make([]*shard, cfg.Shards)
	for i := range d.shards {
		d.shards[i] = &shard{engine: NewEngine(nil, cfg)}
	}
	d.assign(rs, false)
	if len(d.shards) > 1 {
		for _, s := range d.shards {
			s.work = make(chan []event.Event)
			go d.run(s)
		}
	}
	return d
}

// assign distributes rules over shards by a hash of their id, so a rule
// stays on its shard — and keeps its state — across reloads whatever
// else changed in the set.
func (d *Detector) assign(rs []*rules.Rule, replace bool) {
	d.ruleIdx = make(map[*rules.Rule]int, len(rs))
	parts := make([][]*rules.Rule, len(d.shards))
	for i, r := range rs {
		d.ruleIdx[r] = i
		h := fnv.New32a()
		h.Write([]byte(r.ID))
		k := int(h.Sum32() % uint32(len(parts)))
		parts[k] = append(parts[k], r)
	}
	for i, s := range d.shards {
		if replace {
			s.engine.Replace(parts[i])
		} else {
			for _, r := range parts[i] {
				s.engine.add(r, nil)
			}
		}
	}
}

// Replace swaps the rule set between batches; see Engine.Replace: a rule
// whose content did not change keeps its state, a changed or new rule
// starts fresh. It must not run concurrently with ProcessBatch.
func (d *Detector) Replace(rs []*rules.Rule) { d.assign(rs, true) }

func (d *Detector) run(s *shard) {
	for batch := range s.work {
		s.process(batch, d.ruleIdx)
		d.wg.Done()
	}
}

func (s *shard) process(batch []event.Event, ruleIdx map[*rules.Rule]int) {
	s.out = s.out[:0]
	emit := func(a *Alert) {
		s.out = append(s.out, indexedAlert{event: s.cur, rule: ruleIdx[a.Rule], alert: a})
	}
	for i := range batch {
		s.cur = i
		s.engine.Process(&batch[i], emit)
	}
}

// ProcessBatch enriches and evaluates a batch of events; emit receives the
// alerts in deterministic order after the whole batch has been evaluated.
// Events must stay valid and unchanged until ProcessBatch returns.
func (d *Detector) ProcessBatch(batch []event.Event, emit func(*Alert)) {
	if d.dedup != nil {
		batch, d.scratch = d.dedup.filter(batch, d.scratch)
	}
	for i := range batch {
		d.cfg.Enrich(&batch[i])
	}
	if len(d.shards) == 1 {
		d.shards[0].engine.processAll(batch, emit)
		return
	}
	d.wg.Add(len(d.shards))
	for _, s := range d.shards {
		s.work <- batch
	}
	d.wg.Wait()
	var all []indexedAlert
	for _, s := range d.shards {
		all = append(all, s.out...)
	}
	if len(all) == 0 {
		return
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].event != all[j].event {
			return all[i].event < all[j].event
		}
		return all[i].rule < all[j].rule
	})
	for _, a := range all {
		emit(a.alert)
	}
}

func (en *Engine) processAll(batch []event.Event, emit func(*Alert)) {
	for i := range batch {
		en.Process(&batch[i], emit)
	}
}

// Stats returns every rule's counters.
func (d *Detector) Stats() []RuleStats {
	var out []RuleStats
	for _, s := range d.shards {
		out = append(out, s.engine.Stats()...)
	}
	return out
}

// Close stops the shard goroutines. The detector must not be used after.
func (d *Detector) Close() {
	if len(d.shards) > 1 {
		for _, s := range d.shards {
			close(s.work)
		}
	}
}
