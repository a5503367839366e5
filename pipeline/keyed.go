package pipeline

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

// Keyed detection (docs/scaling.md) splits the work of several replicas by
// group key: a router stage writes every event to one repartition topic per
// rule family, keyed by the family's group fields, and each replica
// evaluates the partitions of those topics the consumer group gives it.
// Every group of every rule then lives in exactly one partition, whatever
// input partition its events came from.

// Family is the rules sharing a source and group fields: one repartition
// topic carries their events.
type Family struct {
	Topic  string
	Source event.Source
	Fields []*event.Field
	Rules  []*rules.Rule
	// Direct: Topic is the input topic itself, already partitioned by
	// Fields, so the router skips this family.
	Direct bool
}

// FamilyName names a rule's family: its source and group fields, e.g.
// "requests-ip" or "audit-org_id.actor_id"; "requests-all" for rules
// without groups.
func FamilyName(r *rules.Rule) string {
	return familyName(r.Source, r.GroupFields())
}

func familyName(src event.Source, fields []*event.Field) string {
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.Name
	}
	if len(names) == 0 {
		names = []string{"all"}
	}
	return src.String() + "-" + strings.Join(names, ".")
}

// Families groups rs into families. Repartition topics are named
// prefix + family name; a family whose fields equal keyedBy[source]
// reads the input topic inputs[source] directly.
func Families(rs []*rules.Rule, prefix string, inputs map[event.Source]string, keyedBy map[event.Source][]string) []*Family {
	byName := map[string]*Family{}
	for _, r := range rs {
		name := FamilyName(r)
		f := byName[name]
		if f == nil {
			f = &Family{Topic: prefix + name, Source: r.Source, Fields: r.GroupFields()}
			if by, ok := keyedBy[r.Source]; ok && inputs[r.Source] != "" && familyName(r.Source, f.Fields) == familyName(r.Source, fieldsNamed(r.Source, by)) {
				f.Topic, f.Direct = inputs[r.Source], true
			}
			byName[name] = f
		}
		f.Rules = append(f.Rules, r)
	}
	out := make([]*Family, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, byName[name])
	}
	return out
}

// rulesByFamily groups rs by family name.
func rulesByFamily(rs []*rules.Rule) map[string][]*rules.Rule {
	out := map[string][]*rules.Rule{}
	for _, r := range rs {
		out[FamilyName(r)] = append(out[FamilyName(r)], r)
	}
	return out
}

// originOf is where m was first read: its origin headers, or m itself.
func originOf(m ingest.Message) storage.Origin {
	if m.OriginTopic != "" {
		return storage.Origin{Topic: m.OriginTopic, Partition: int32(m.OriginPartition), Offset: m.OriginOffset}
	}
	return storage.Origin{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset}
}

// mergeAt is an event's place in the merge: the router's merge time when
// m carries one, else the event time ts.
func mergeAt(m ingest.Message, ts int64) int64 {
	if m.MergeTS != 0 {
		return m.MergeTS
	}
	return ts
}

func fieldsNamed(src event.Source, names []string) []*event.Field {
	all := event.Fields(src)
	var out []*event.Field
	for _, n := range names {
		for i := range all {
			if all[i].Name == n {
				out = append(out, &all[i])
			}
		}
	}
	return out
}

// Route sends each event of Source that one of Rules may look at to
// Topic, keyed by Fields, and after each batch a progress record to each
// of its Partitions. Every rule kind skips events its where rejects
// before they touch its state, so events no rule of the family wants
// need not travel.
type Route struct {
	Topic      string
	Source     event.Source
	Fields     []*event.Field
	Partitions int
	Rules      []*rules.Rule
}

// wants reports whether a rule of the route looks at e (enriched as the
// detector enriches it).
func (r *Route) wants(e *event.Event) bool {
	for _, rule := range r.Rules {
		if rule.Where == nil || rule.Where.Match(e) {
			return true
		}
	}
	return false
}

// Routes returns the routes of the families the router serves, whose
// topics have partitions partitions.
func Routes(fs []*Family, partitions int) []Route {
	var out []Route
	for _, f := range fs {
		if !f.Direct {
			out = append(out, Route{Topic: f.Topic, Source: f.Source, Fields: f.Fields, Partitions: partitions, Rules: f.Rules})
		}
	}
	return out
}

// routeKey is the values of fields joined by the unit separator: equal
// groups, equal keys, one partition.
func routeKey(fields []*event.Field, e *event.Event) []byte {
	var b []byte
	for i, f := range fields {
		if i > 0 {
			b = append(b, 0x1f)
		}
		switch f.Kind {
		case event.String:
			b = append(b, f.Str(e)...)
		case event.Int:
			b = strconv.AppendInt(b, f.Int(e), 10)
		case event.Float:
			b = strconv.AppendFloat(b, f.Float(e), 'f', -1, 64)
		}
	}
	return b
}

// Keyed configures a keyed detection replica.
type Keyed struct {
	// Families by the topic this replica consumes.
	Families map[string]*Family
	// Inputs are the router's input positions (its group's committed and
	// end offsets): a repartition partition is complete up to an input
	// partition's events only once the router has read that one to its
	// end. Nil when every family is direct.
	Inputs func(ctx context.Context) ([]ingest.Position, error)
	// NewDetector builds the detector of one partition.
	NewDetector func([]*rules.Rule) *detector.Detector
	// Lookback is how much event time rebuilds a partition's state.
	Lookback func([]*rules.Rule) time.Duration
}

// shard is one unit of detection state. Single-replica detection has one
// over all input partitions; keyed detection one per partition of a family
// topic, built when the partition is gained and dropped when it is lost.
type shard struct {
	order *reorderer
	det   *detector.Detector
	// Keyed shards only.
	family    *Family
	topic     string
	partition int
	accepted  int64 // highest offset of the partition handled, -1 before
}

// ref is what marks an evaluated item stored.
func (s *shard) ref(it *item) ingest.Message {
	if s.family != nil {
		return ingest.Message{Source: it.ev.Source, Topic: s.topic, Partition: s.partition, Offset: it.kafka}
	}
	return ingest.Message{Source: it.ev.Source, Topic: it.origin.Topic, Partition: int(it.origin.Partition), Offset: it.kafka}
}

// abandon appends refs of the records waiting in s: it is being dropped
// because the group committed past them (another replica evaluated them),
// and the consumer must not wait for them to complete.
func (s *shard) abandon(out []ingest.Message) []ingest.Message {
	for _, q := range s.order.queues {
		for i := q.head; i < len(q.items); i++ {
			out = append(out, s.ref(&q.items[i]))
		}
	}
	s.det.Close()
	return out
}

// progress applies a router's progress record: each input partition it
// names will send nothing earlier in the merge than its merge time, and
// nothing below its offset that is not a copy.
func (s *shard) progress(ps []ingest.Progress) {
	for _, pr := range ps {
		q := s.order.queue(s.family.Source, pr.Topic, int32(pr.Partition))
		if !q.seen || pr.MergeTS > q.last {
			q.last = pr.MergeTS
		}
		q.seen = true
		q.accepted = max(q.accepted, pr.Offset-1)
	}
}

// allShards returns the shards in a stable order.
func (p *Pipeline) allShards() []*shard {
	if p.single != nil {
		return []*shard{p.single}
	}
	keys := slices.SortedFunc(maps.Keys(p.shards), func(a, b storage.Origin) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	out := make([]*shard, len(keys))
	for i, k := range keys {
		out[i] = p.shards[k]
	}
	return out
}

// waitingEvents counts the events waiting in reorderers.
func (p *Pipeline) waitingEvents() int {
	if p.single != nil {
		return p.single.order.size
	}
	n := 0
	for _, s := range p.shards {
		n += s.order.size
	}
	return n
}

// waiting reports whether any shard waits on a partition with nothing queued.
func (p *Pipeline) waiting() bool {
	if p.single != nil {
		return p.single.order.waiting()
	}
	for _, s := range p.shards {
		if s.order.waiting() {
			return true
		}
	}
	return false
}

// replaceRules swaps the rule set. A keyed replica's families are fixed
// at start (their topics exist and are routed to): a rule of a new family
// waits for a restart, and says so.
func (p *Pipeline) replaceRules(rs []*rules.Rule) {
	if p.single != nil {
		p.single.det.Replace(rs)
		return
	}
	byFamily := rulesByFamily(rs)
	for _, f := range p.cfg.Keyed.Families {
		f.Rules = byFamily[familyName(f.Source, f.Fields)]
		delete(byFamily, familyName(f.Source, f.Fields))
	}
	for name, rs := range byFamily {
		for _, r := range rs {
			p.cfg.Logger.Error("rule not evaluated: its family has no repartition topic yet; restart the replicas to create it",
				"rule", r.ID, "family", name)
		}
	}
	for _, s := range p.shards {
		s.det.Replace(s.family.Rules)
	}
}

// detectorStats sums the shards' per-rule counters.
func (p *Pipeline) detectorStats() []detector.RuleStats {
	if p.single != nil {
		if p.single.det == nil {
			return nil // the router evaluates nothing
		}
		return p.single.det.Stats()
	}
	var out []detector.RuleStats
	at := map[string]int{}
	for _, s := range p.allShards() {
		for _, st := range s.det.Stats() {
			i, ok := at[st.Rule]
			if !ok {
				at[st.Rule] = len(out)
				out = append(out, st)
				continue
			}
			o := &out[i]
			o.Matched += st.Matched
			o.Alerts += st.Alerts
			o.Groups += st.Groups
			o.Evictions += st.Evictions
			o.Late += st.Late
		}
	}
	return out
}

// shardOf returns the shard of m's partition. A partition seen for the
// first time, or again after others evaluated part of it, gets a new
// shard whose state is rebuilt from the partition itself before m is
// evaluated.
func (p *Pipeline) shardOf(ctx context.Context, m ingest.Message) *shard {
	k := storage.Origin{Topic: m.Topic, Partition: int32(m.Partition)}
	s := p.shards[k]
	if s != nil && m.Offset <= s.accepted+1 {
		return s
	}
	if s != nil {
		// The reader jumped to the group's committed offset: another
		// replica evaluated the records in between, and those waiting
		// here.
		p.cfg.Logger.Info("partition regained after others evaluated part of it; rebuilding its state",
			"topic", m.Topic, "partition", m.Partition, "had", s.accepted, "now", m.Offset)
		p.abandoned = s.abandon(p.abandoned)
	}
	fam := p.cfg.Keyed.Families[m.Topic]
	if fam == nil {
		fam = &Family{Topic: m.Topic, Source: m.Source} // not configured: evaluates nothing
	}
	s = &shard{order: newReorderer(p.cfg.MaxReorder, max(p.cfg.ReorderSlack, 0)), det: p.cfg.Keyed.NewDetector(fam.Rules),
		family: fam, topic: m.Topic, partition: m.Partition, accepted: -1}
	p.shards[k] = s
	p.addInputQueues(s)
	p.rebuildShard(ctx, s, m)
	s.accepted = m.Offset - 1
	return s
}

// addInputQueues gives s a queue for every input partition that can route
// to it, so that one that has delivered nothing yet holds its events back.
func (p *Pipeline) addInputQueues(s *shard) {
	if s.family.Direct {
		s.order.queue(s.family.Source, s.topic, int32(s.partition))
		return
	}
	for _, in := range p.inputs {
		if in.Source == s.family.Source {
			s.order.queue(in.Source, in.Topic, int32(in.Partition))
		}
	}
}

// rebuildShard gives a gained partition's shard the state the previous
// owner had when it committed m's offset c. The partition holds several
// input partitions' records, so the previous owner evaluated them in
// merge order, not offset order: it had evaluated every record below c,
// and with them every later record that goes before the last of those in
// the merge. rebuildShard reads the partition up to its end and replays
// both through the shard (their alerts were stored then and are dropped);
// the later ones, fetched again, are recognised by their origin and not
// evaluated twice. The whole retained partition is read (routing order
// trails event time, so no offset marks the start of the lookback); the
// topic's retention (scaling.retention) bounds the read.
func (p *Pipeline) rebuildShard(ctx context.Context, s *shard, m ingest.Message) {
	if p.cfg.Keyed.Lookback(s.family.Rules) <= 0 || m.Offset == 0 {
		return
	}
	began := time.Now()
	drop := func(*detector.Alert) {}
	var (
		dec   event.Decoder
		chunk []event.Event
		n     int
		// The last record below c in the merge: its place and queue.
		lastAt  int64
		lastKey partKey
		seen    bool
	)
	const chunkSize = 4096
	err := p.cfg.Read(ctx, s.topic, s.partition, 0, -1, func(r ingest.Message) error {
		if r.Progress != nil {
			return nil
		}
		var e event.Event
		if dec.Decode(s.family.Source, r.Value, &e) != nil {
			return nil // dead-lettered when it was read live
		}
		o := originOf(r)
		q := s.order.queue(s.family.Source, o.Topic, o.Partition)
		if o.Offset <= q.accepted {
			return nil // routed twice
		}
		at := mergeAt(r, e.TS)
		later := !seen || at > lastAt || (at == lastAt && lastKey.less(q.key))
		switch {
		case r.Offset < m.Offset && later:
			lastAt, lastKey, seen = at, q.key, true
		case r.Offset >= m.Offset && later:
			return nil // not evaluated yet: it comes live
		}
		if chunk == nil {
			chunk = make([]event.Event, 0, chunkSize)
		}
		chunk = append(chunk, e.Clone())
		s.order.push(q, item{ev: &chunk[len(chunk)-1], origin: o, kafka: r.Offset, at: at, rebuilt: true})
		n++
		if len(chunk) == chunkSize {
			_, _ = p.releaseTo(s, nil, drop)
			chunk = nil
		}
		return nil
	})
	// What was read is all the previous owner evaluated: merge it whole.
	s.order.setCaughtUp(true)
	_, _ = p.releaseTo(s, nil, drop)
	s.order.setCaughtUp(false)
	if err != nil && !errors.Is(err, context.Canceled) {
		p.cfg.Logger.Error("rebuilding a gained partition's state failed; its windows restart from what was read",
			"topic", s.topic, "partition", s.partition, "read", n, "err", err)
		return
	}
	p.cfg.Logger.Info("partition gained; state rebuilt from it", "topic", s.topic, "partition", s.partition,
		"offset", m.Offset, "events", n, "took", time.Since(began).Round(time.Millisecond).String())
}

// refreshKeyed marks each shard's input queues caught up where the router
// has read the input partition to its end and this replica has read the
// shard's partition to its end (asked in that order, so every routed
// record has been read); shards whose partition another replica has moved
// past are dropped.
func (p *Pipeline) refreshKeyed(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	routed := map[storage.Origin]bool{}
	if p.cfg.Keyed.Inputs != nil {
		ins, err := p.cfg.Keyed.Inputs(ctx)
		if err != nil {
			p.cfg.Logger.Debug("router positions unavailable; events wait for every input partition", "err", err)
			return
		}
		p.inputs = ins
		for _, in := range ins {
			routed[storage.Origin{Topic: in.Topic, Partition: int32(in.Partition)}] = in.Start >= in.End
		}
	}
	ps, err := p.src.Positions(ctx)
	if err != nil {
		p.cfg.Logger.Debug("partition positions unavailable; events wait for every partition", "err", err)
		return
	}
	p.known = true
	for _, pos := range ps {
		k := storage.Origin{Topic: pos.Topic, Partition: int32(pos.Partition)}
		s := p.shards[k]
		if s == nil {
			continue
		}
		if pos.Start > s.accepted+1 {
			// Another replica owns it now and has gone further (or
			// committed late what it did before we got it: the next
			// record then rebuilds the state).
			p.abandoned = s.abandon(p.abandoned)
			delete(p.shards, k)
			continue
		}
		read := max(pos.Start, s.accepted+1) >= pos.End
		p.addInputQueues(s)
		for _, q := range s.order.queues {
			q.caughtUp = read && (s.family.Direct || routed[storage.Origin{Topic: q.key.topic, Partition: q.key.partition}])
		}
	}
}

// reroute gives the routes a reloaded rule set. Families are fixed at
// start (see replaceRules): a family whose rules are all gone routes
// nothing, and a rule of a new family waits for a restart.
func (p *Pipeline) reroute(rs []*rules.Rule) {
	byFamily := rulesByFamily(rs)
	for i := range p.cfg.Routes {
		r := &p.cfg.Routes[i]
		r.Rules = byFamily[familyName(r.Source, r.Fields)]
	}
}

// run is where the router stands in one input partition.
type run struct {
	next   int64 // the offset expected next
	newest int64 // the newest event time up to it
}

// runReadBack is how many records before the offset where the router
// starts reading an input partition it reads to find the newest event time
// so far: late records are written within seconds of the newest.
const runReadBack = 2000

// runOf returns the router's place in m's input partition, reading back
// when m does not follow the last record routed from it (the partition is
// new to this router, or was read by another one in between).
func (p *Pipeline) runOf(ctx context.Context, m ingest.Message) *run {
	k := storage.Origin{Topic: m.Topic, Partition: int32(m.Partition)}
	r := p.runs[k]
	if r != nil && r.next == m.Offset {
		return r
	}
	r = &run{next: m.Offset}
	p.runs[k] = r
	if m.Offset == 0 || p.cfg.Read == nil {
		return r
	}
	var dec event.Decoder
	var e event.Event
	err := p.cfg.Read(ctx, m.Topic, m.Partition, m.Offset-runReadBack, m.Offset, func(b ingest.Message) error {
		if dec.Decode(m.Source, b.Value, &e) == nil {
			r.newest = max(r.newest, e.TS)
		}
		return nil
	})
	if err != nil {
		p.cfg.Logger.Warn("reading back an input partition failed; its late events may be ordered as if on time",
			"topic", m.Topic, "partition", m.Partition, "err", err)
	}
	return r
}

// route is the router's evaluation: decode, then route every valid event
// to the topics of its source's families, with its place in the merge by
// event time (the newest event time of its input partition so far: the
// merge of whole partitions puts a late event right after the one whose
// time it falls behind, and so must the merge of the partitions' parts in
// each repartition partition). Every record completes with the batch.
func (p *Pipeline) route(ctx context.Context, batch []ingest.Message) *evaluatedBatch {
	if p.runs == nil {
		p.runs = make(map[storage.Origin]*run)
	}
	if rs := p.pending.Swap(nil); rs != nil {
		p.reroute(*rs)
	}
	began := time.Now()
	eb := &evaluatedBatch{batch: batch, events: make([]event.Event, 0, len(batch)), marks: make([]ingest.Message, 0, len(batch))}
	origins := make([]storage.Origin, 0, len(batch))
	var dec event.Decoder
	horizon := time.Now().Add(p.cfg.MaxFuture).UnixNano()
	for _, m := range batch {
		eb.marks = append(eb.marks, m.Ref())
		rn := p.runOf(ctx, m)
		rn.next = m.Offset + 1
		e, err := p.decode(&dec, m, horizon)
		if err != nil {
			eb.dls = append(eb.dls, ingest.DeadLetter{Msg: m, Reason: err.Error()})
			continue
		}
		rn.newest = max(rn.newest, e.TS)
		eb.events = append(eb.events, e.Clone())
		ev := &eb.events[len(eb.events)-1]
		origins = append(origins, storage.Origin{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset})
		view := *ev // stored as read; matched as the detector sees it
		if p.cfg.Enrich != nil {
			p.cfg.Enrich(&view)
		}
		for i := range p.cfg.Routes {
			if r := &p.cfg.Routes[i]; r.Source == ev.Source && r.wants(&view) {
				eb.routed = append(eb.routed, ingest.Routed{Topic: r.Topic, Key: routeKey(r.Fields, ev),
					Msg: ingest.Message{Source: m.Source, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset,
						Value: m.Value, Time: time.Unix(0, ev.TS)}, MergeTS: rn.newest})
			}
		}
	}
	eb.routed = p.appendProgress(eb.routed, batch)
	eb.recs = records(eb.events, origins)
	p.count(eb, began)
	return eb
}

// appendProgress adds, for every route, a progress record to each of its
// partitions: how far the batch's input partitions of the route's source
// are routed. A detector whose partition received nothing from an input
// partition for a while learns from it that nothing earlier will come, so
// its events need not wait for that input partition (see Keyed).
func (p *Pipeline) appendProgress(out []ingest.Routed, batch []ingest.Message) []ingest.Routed {
	var bySource [3][]ingest.Progress
	seen := map[storage.Origin]bool{}
	for _, m := range batch {
		k := storage.Origin{Topic: m.Topic, Partition: int32(m.Partition)}
		if seen[k] || int(m.Source) >= len(bySource) {
			continue
		}
		seen[k] = true
		rn := p.runs[k]
		bySource[m.Source] = append(bySource[m.Source], ingest.Progress{Topic: m.Topic, Partition: m.Partition, Offset: rn.next, MergeTS: rn.newest})
	}
	for _, r := range p.cfg.Routes {
		if len(bySource[r.Source]) == 0 {
			continue
		}
		for part := range r.Partitions {
			out = append(out, ingest.Routed{Topic: r.Topic, Partition: part, Progress: bySource[r.Source]})
		}
	}
	return out
}
