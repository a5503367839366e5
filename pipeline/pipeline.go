// Package pipeline is the daemon's data path: Kafka messages are batched,
// decoded, evaluated by the detector, stored in ClickHouse, and only then
// marked stored so their offsets can be committed. It owns ordering,
// batching, retries and backpressure; Kafka and ClickHouse details stay in
// ingest and storage.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/metrics"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

// Source is where messages come from (an ingest.Consumer).
type Source interface {
	Fetch(ctx context.Context) (ingest.Message, error)
	MarkStored(ms ...ingest.Message)
	Commit(ctx context.Context) error
	// Positions says, per input partition, where reading starts and where
	// the log ends, so that a partition with nothing left to read does not
	// hold back the merge by event time.
	Positions(ctx context.Context) ([]ingest.Position, error)
}

// Store is where records go (a storage.Store).
type Store interface {
	InsertEvents(ctx context.Context, recs []storage.Record, token string) error
	InsertDeadLetters(ctx context.Context, dls []storage.DeadLetter) error
	InsertAlerts(ctx context.Context, alerts []*detector.Alert) error
}

// DeadLetterSink receives invalid records (an ingest.DeadLetterWriter); may be nil.
type DeadLetterSink interface {
	Write(ctx context.Context, dls []ingest.DeadLetter) error
}

// Config tunes batching and retries.
type Config struct {
	BatchSize     int           // messages per batch; default 50000
	BatchInterval time.Duration // longest wait for a partial batch; default 250ms
	// MaxBuffered caps messages held between Kafka and ClickHouse; fetching
	// pauses when it is reached (backpressure). Default 4 × BatchSize.
	MaxBuffered int
	// Inserts is how many batches' events inserts may run at once; default
	// 2, lowered when MaxBuffered holds too few batches for them.
	Inserts int
	// MaxReorder caps the decoded events waiting for the other partitions
	// to move past their event time (see reorderer). Default
	// DefaultMaxReorder or MaxBuffered, whichever is larger.
	MaxReorder int
	// ReorderSlack is how far an event may precede the newest of its
	// partition in event time (the producers' disorder): an event waits
	// until every partition is this much past it. Negative means none;
	// zero means DefaultReorderSlack.
	ReorderSlack time.Duration
	// RetryMin and RetryMax bound the backoff between retries of a failed
	// insert. Defaults 100ms and 10s.
	RetryMin, RetryMax time.Duration
	// MaxFuture is how far past the wall clock an event's time may be; a
	// later record is dead-lettered, because one event dated years ahead
	// would make every real event of its group look late. Default 1h.
	MaxFuture time.Duration
	// DrainTimeout bounds the drain after Run's context ends (ClickHouse
	// may be down); what is not stored by then is redelivered after the
	// restart. Default 30s.
	DrainTimeout time.Duration
	Logger       *slog.Logger
	// Metrics receives the data path's measurements; nil keeps them unregistered.
	Metrics *metrics.Metrics
	// OnAlert is called for each stored alert, in order (incidents, printing).
	OnAlert func(*detector.Alert)
	// Keyed, when set, makes this pipeline one replica of keyed detection
	// (see Keyed); the detector passed to New is then unused.
	Keyed *Keyed
	// Routes, when set, make this pipeline the router of keyed detection:
	// it stores events and dead letters as usual, writes each event to the
	// routes of its source through Router, and evaluates nothing.
	Routes []Route
	Router interface {
		Write(ctx context.Context, rs []ingest.Routed) error
	}
	// Enrich completes an event as the detector does before matching it
	// (detector.Config.Enrich); the router matches routes with it.
	Enrich func(*event.Event)
	// Read reads a partition's records from offset from up to until (see
	// ingest.ReadPartition): keyed detection rebuilds a gained partition's
	// state with it, and the router finds an input partition's newest
	// event time when it starts reading it somewhere.
	Read func(ctx context.Context, topic string, partition int, from, until int64, fn func(ingest.Message) error) error
}

// DefaultReorderSlack covers the usual disorder of request logs, written
// when a request ends but stamped when it began.
const DefaultReorderSlack = 250 * time.Millisecond

// DefaultMaxReorder is the smallest default cap on events waiting in the
// reorderer: a partition that starts late, or a restart whose partitions
// were committed unevenly, must not force events out of order.
const DefaultMaxReorder = 200000

// Stats are the pipeline's counters.
type Stats struct {
	Consumed, Stored, Invalid, Alerts, Batches, InsertRetries atomic.Uint64
	// ReorderForced counts events evaluated before a lagging partition
	// passed them (the reorder buffer was full).
	ReorderForced atomic.Uint64
}

// Pipeline runs one consumer's data path.
type Pipeline struct {
	cfg   Config
	src   Source
	store Store
	dlq   DeadLetterSink
	Stats Stats

	consumed, evaluated [3]prometheus.Counter // by event.Source
	ruleStats           atomic.Pointer[[]detector.RuleStats]
	pending             atomic.Pointer[[]*rules.Rule]

	// Owned by the evaluating goroutine (Rebuild, then Run's evaluate stage).
	single      *shard                    // single-replica detection
	shards      map[storage.Origin]*shard // keyed detection, by partition (Offset unused)
	inputs      []ingest.Position         // keyed detection: the routed input partitions
	abandoned   []ingest.Message          // keyed detection: records of dropped shards, done elsewhere
	runs        map[storage.Origin]*run   // router: each input partition's newest event time
	released    []item
	runEvents   []event.Event
	positionsAt time.Time // last Positions call
	known       bool      // Positions answered once: every partition is known
	firstLive   time.Time // first event fetched in this run
}

// New builds a pipeline; det must not be used by anyone else.
func New(cfg Config, src Source, store Store, dlq DeadLetterSink, det *detector.Detector) *Pipeline {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 50000
	}
	if cfg.BatchInterval <= 0 {
		cfg.BatchInterval = 250 * time.Millisecond
	}
	if cfg.MaxBuffered < cfg.BatchSize {
		cfg.MaxBuffered = 4 * cfg.BatchSize
	}
	if cfg.Inserts <= 0 {
		cfg.Inserts = 2
	}
	// MaxBuffered holds the batch being filled, one queued, the one being
	// evaluated and those being stored.
	cfg.Inserts = max(1, min(cfg.Inserts, cfg.MaxBuffered/cfg.BatchSize-3))
	if cfg.MaxReorder <= 0 {
		cfg.MaxReorder = max(cfg.MaxBuffered, DefaultMaxReorder)
	}
	if cfg.ReorderSlack == 0 {
		cfg.ReorderSlack = DefaultReorderSlack
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 10 * time.Second
	}
	if cfg.MaxFuture <= 0 {
		cfg.MaxFuture = time.Hour
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.New(nil, "")
	}
	p := &Pipeline{cfg: cfg, src: src, store: store, dlq: dlq,
		single: &shard{order: newReorderer(cfg.MaxReorder, max(cfg.ReorderSlack, 0)), det: det, accepted: -1}}
	if cfg.Keyed != nil {
		p.single = nil
		p.shards = make(map[storage.Origin]*shard)
	}
	for _, s := range []event.Source{event.Requests, event.Audit} {
		p.consumed[s] = cfg.Metrics.Consumed.WithLabelValues(s.String())
		p.evaluated[s] = cfg.Metrics.DetectorEvents.WithLabelValues(s.String())
	}
	cfg.Metrics.BufferCapacity.Set(float64(cfg.MaxBuffered))
	return p
}

// RuleStats returns the detector's per-rule counters as of the last
// batch; safe to call from any goroutine (the detector itself is not).
func (p *Pipeline) RuleStats() []detector.RuleStats {
	if s := p.ruleStats.Load(); s != nil {
		return *s
	}
	return nil
}

// Reload swaps in a new rule set before the next batch is evaluated, so
// no event is ever evaluated by a half-loaded set. Rules whose content did
// not change keep their state (detector.Replace).
func (p *Pipeline) Reload(rs []*rules.Rule) {
	p.pending.Store(&rs)
}

// Run consumes until ctx is cancelled, then drains: the batch being built
// and the queued ones are processed and stored, and their offsets
// committed, before Run returns. Only an unrecoverable error returns early.
func (p *Pipeline) Run(ctx context.Context) error {
	// Queue depth: MaxBuffered counts the batch being filled, the queued
	// ones, the one being evaluated and the ones being stored.
	depth := p.cfg.MaxBuffered/p.cfg.BatchSize - 2 - p.cfg.Inserts
	if depth < 1 {
		depth = 1
	}
	batches := make(chan []ingest.Message, depth)
	drainCtx, cancelDrain := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelDrain()
	finished := make(chan struct{})
	defer close(finished)
	go func() {
		select {
		case <-ctx.Done():
		case <-finished:
			return
		}
		select {
		case <-time.After(p.cfg.DrainTimeout):
			p.cfg.Logger.Warn("drain timed out; unstored records will be redelivered after restart", "timeout", p.cfg.DrainTimeout)
			cancelDrain()
		case <-finished:
		}
	}()
	// Two stages, so that detection of one batch overlaps the inserts of
	// the previous one; batches keep their order through both.
	fetchCtx, stopFetch := context.WithCancel(ctx)
	defer stopFetch()
	evaluated := make(chan *evaluatedBatch)
	done := make(chan error, 1)
	go func() {
		defer close(evaluated)
		// Between batches a tick releases the events whose wait is over
		// (the slack passed, or a partition turned out to be caught up),
		// so alerts do not wait for the next batch. A tick that fires no
		// alert hands its records over with the next batch, or after a
		// batch interval, so commits stay about one per interval.
		tick := time.NewTicker(max(p.cfg.BatchInterval/4, 50*time.Millisecond))
		defer tick.Stop()
		var carry []ingest.Message
		sent := time.Now()
		send := func(eb *evaluatedBatch) {
			eb.marks = append(eb.marks, carry...)
			carry = nil
			evaluated <- eb
			sent = time.Now()
		}
		for {
			select {
			case b, ok := <-batches:
				if !ok {
					if len(carry) > 0 {
						send(&evaluatedBatch{})
					}
					return
				}
				send(p.evaluate(fetchCtx, b))
			case <-tick.C:
				eb := &evaluatedBatch{}
				if p.waitingEvents() > 0 {
					eb = p.evaluate(fetchCtx, nil)
				}
				switch {
				case len(eb.alerts) > 0 || (len(eb.marks)+len(carry) > 0 && time.Since(sent) >= p.cfg.BatchInterval):
					send(eb)
				default:
					carry = append(carry, eb.marks...)
				}
			}
		}
	}()
	go func() { done <- p.persist(drainCtx, evaluated, stopFetch) }()
	fetchErr := p.fetch(fetchCtx, batches)
	close(batches)
	procErr := <-done
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := p.src.Commit(commitCtx); err != nil && procErr == nil {
		p.cfg.Logger.Warn("final commit failed; the uncommitted tail will be redelivered", "err", err)
	}
	if procErr != nil && !(ctx.Err() != nil && errors.Is(procErr, context.Canceled)) {
		return procErr
	}
	return fetchErr
}

// fetch fills batches by size or time and hands them over; a full queue
// blocks it, which pauses consumption.
func (p *Pipeline) fetch(ctx context.Context, out chan<- []ingest.Message) error {
	batch := make([]ingest.Message, 0, p.cfg.BatchSize)
	// A batch's deadline is one context for all its fetches: creating one
	// per record costs as much as fetching the record.
	fctx, cancel := context.WithTimeout(ctx, p.cfg.BatchInterval)
	defer func() { cancel() }()
	flush := func() {
		if len(batch) > 0 {
			p.cfg.Metrics.Buffered.Add(float64(len(batch)))
			p.cfg.Metrics.BatchSize.Observe(float64(len(batch)))
			out <- batch
			batch = make([]ingest.Message, 0, p.cfg.BatchSize)
		}
		cancel()
		fctx, cancel = context.WithTimeout(ctx, p.cfg.BatchInterval)
	}
	for {
		m, err := p.src.Fetch(fctx)
		switch {
		case err == nil:
			p.Stats.Consumed.Add(1)
			if int(m.Source) < len(p.consumed) && p.consumed[m.Source] != nil {
				p.consumed[m.Source].Inc()
			}
			batch = append(batch, m)
			if len(batch) >= p.cfg.BatchSize {
				flush()
			}
		case ctx.Err() != nil:
			flush()
			return nil
		case errors.Is(err, context.DeadlineExceeded):
			flush()
		default:
			// kafka-go retries connections itself; an error here is worth a
			// log line and a short pause, not a stop.
			p.cfg.Logger.Warn("kafka fetch failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				flush()
				return nil
			case <-time.After(p.cfg.RetryMin):
			}
		}
	}
}

// evaluatedBatch is a batch decoded and run through the detector, ready
// to be stored.
type evaluatedBatch struct {
	batch  []ingest.Message
	events []event.Event
	recs   []storage.Record
	routed []ingest.Routed
	dls    []ingest.DeadLetter
	alerts []*detector.Alert
	// marks are the records this batch completes once stored: its dead
	// letters, and the events (of this batch or earlier ones) the detector
	// evaluated in it. Events still waiting in the reorderer are not
	// marked, so their offsets are not committed.
	marks []ingest.Message
	// arrived is the earliest Kafka timestamp (Unix ns) of the events
	// evaluated, 0 if none: the alerts' latency is measured from it.
	arrived int64
}

// positionsEvery bounds how often the broker is asked whether partitions
// are caught up while events wait on them.
const positionsEvery = 250 * time.Millisecond

// unseenGrace is how long after the first event a partition that has
// delivered nothing may hold the others back: long enough for every
// partition of one member to deliver, short enough that a partition owned
// by another member does not stall this one.
const unseenGrace = 10 * time.Second

// evaluate decodes a batch, queues its events in the reorderer and runs the
// events it releases through the detector. A nil batch only releases.
func (p *Pipeline) evaluate(ctx context.Context, batch []ingest.Message) *evaluatedBatch {
	if len(p.cfg.Routes) > 0 {
		return p.route(ctx, batch)
	}
	if rs := p.pending.Swap(nil); rs != nil {
		p.replaceRules(*rs)
	}
	began := time.Now()
	eb := &evaluatedBatch{batch: batch, events: make([]event.Event, 0, len(batch)),
		marks: make([]ingest.Message, 0, len(batch))}
	origins := make([]storage.Origin, 0, len(batch))
	var dec event.Decoder
	horizon := time.Now().Add(p.cfg.MaxFuture).UnixNano()
	if len(batch) > 0 && p.firstLive.IsZero() {
		p.firstLive = began
	}
	if p.cfg.Keyed != nil && !p.known && len(batch) > 0 {
		p.refreshPositions(ctx) // the input partitions, before the first shard
	}
	for _, m := range batch {
		s, o := p.single, storage.Origin{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset}
		if p.cfg.Keyed != nil {
			s = p.shardOf(ctx, m)
			if m.Offset <= s.accepted {
				// Fetched again after a rebalance or a reconnect.
				if !s.order.holds(m.Offset) {
					eb.marks = append(eb.marks, m.Ref())
				}
				continue
			}
			s.accepted = m.Offset
			if m.Progress != nil {
				s.progress(m.Progress)
				eb.marks = append(eb.marks, m.Ref())
				continue
			}
			o = originOf(m)
		}
		q := s.order.queue(m.Source, o.Topic, o.Partition)
		if o.Offset <= q.accepted {
			// Fetched again after a rebalance or a reconnect (or, keyed,
			// routed twice by a router that stopped before committing):
			// it was stored (or is being) and evaluated (or waits to be)
			// already. Evaluating it again would count it twice; it
			// completes now, or when the reorderer releases it.
			if !q.holds(m.Offset) {
				eb.marks = append(eb.marks, m.Ref())
			}
			continue
		}
		e, err := p.decode(&dec, m, horizon)
		if err != nil {
			q.accepted = o.Offset
			eb.dls = append(eb.dls, ingest.DeadLetter{Msg: m, Reason: err.Error()})
			eb.marks = append(eb.marks, m.Ref())
			continue
		}
		// Kafka gives each message its own buffer, but the decoder's
		// scratch space is shared: own the strings before the next decode.
		eb.events = append(eb.events, e.Clone()) // within capacity: pointers stay valid
		origins = append(origins, o)
		s.order.push(q, item{ev: &eb.events[len(eb.events)-1], origin: o, kafka: m.Offset, at: mergeAt(m, e.TS), arrived: unixNano(m.Time)})
	}
	if (!p.known || p.waiting()) && time.Since(p.positionsAt) >= positionsEvery {
		p.refreshPositions(ctx)
	}
	// Until the broker has named every partition, one that has not
	// delivered yet could hold earlier events. Keyed detection knows its
	// input partitions from the first positions answer.
	if p.known || (p.cfg.Keyed == nil && p.graceOver()) {
		emit := func(a *detector.Alert) { eb.alerts = append(eb.alerts, a) }
		for _, s := range p.allShards() {
			var arrived int64
			eb.marks, arrived = p.releaseTo(s, eb.marks, emit)
			if arrived > 0 && (eb.arrived == 0 || arrived < eb.arrived) {
				eb.arrived = arrived
			}
		}
	}
	eb.marks = append(eb.marks, p.abandoned...)
	p.abandoned = p.abandoned[:0]
	if len(batch) == 0 && len(eb.marks) == 0 {
		return eb // a tick that released nothing: no evaluation to count
	}
	if p.cfg.Keyed == nil {
		// Keyed detection reads records the router stored.
		eb.recs = records(eb.events, origins)
	}
	p.count(eb, began)
	return eb
}

// decode decodes a fetched record, rejecting one dated more than MaxFuture
// ahead of horizon's clock.
func (p *Pipeline) decode(dec *event.Decoder, m ingest.Message, horizon int64) (event.Event, error) {
	var e event.Event
	err := dec.Decode(m.Source, m.Value, &e)
	if err == nil && e.TS > horizon {
		err = errors.New(futureReason(e.TS, p.cfg.MaxFuture))
	}
	return e, err
}

// records pairs decoded events with their origins for storing.
func records(events []event.Event, origins []storage.Origin) []storage.Record {
	recs := make([]storage.Record, len(events))
	for i := range events {
		recs[i] = storage.Record{Event: &events[i], Origin: origins[i]}
	}
	return recs
}

// count updates the metrics of an evaluated batch.
func (p *Pipeline) count(eb *evaluatedBatch, began time.Time) {
	m := p.cfg.Metrics
	for _, d := range eb.dls {
		m.Invalid.WithLabelValues(d.Msg.Source.String(), metrics.ReasonCode(d.Reason)).Inc()
	}
	for _, a := range eb.alerts {
		if a.Rule.Shadow {
			m.ShadowAlerts.WithLabelValues(a.Rule.ID, a.Severity.Name()).Inc()
		} else {
			m.Alerts.WithLabelValues(a.Rule.ID, a.Severity.Name()).Inc()
		}
	}
	stats := p.detectorStats()
	p.ruleStats.Store(&stats)
	m.EvalDuration.Observe(time.Since(began).Seconds())
}

// releaseTo runs the events the reorderer releases through the detector,
// passing their alerts to emit, and appends the live ones to marks. Events
// rebuilt from ClickHouse are evaluated for their state only: their alerts
// were stored before the restart.
func (p *Pipeline) releaseTo(s *shard, marks []ingest.Message, emit func(*detector.Alert)) (_ []ingest.Message, arrived int64) {
	forced := s.order.forced
	p.released = s.order.release(p.released[:0])
	if n := s.order.forced - forced; n > 0 {
		p.cfg.Metrics.ReorderForced.Add(float64(n))
		p.Stats.ReorderForced.Add(n)
	}
	p.cfg.Metrics.ReorderWaiting.Set(float64(p.waitingEvents()))
	drop := func(*detector.Alert) {}
	var perSource [3]int
	for i := 0; i < len(p.released); {
		// One detector call per run of rebuilt or live events.
		j, rebuilt := i, p.released[i].rebuilt
		for j < len(p.released) && p.released[j].rebuilt == rebuilt {
			j++
		}
		if !rebuilt {
			marks = slices.Grow(marks, j-i) // a batch's marks at once, not by doubling
		}
		p.runEvents = p.runEvents[:0]
		for k := i; k < j; k++ {
			it := &p.released[k]
			p.runEvents = append(p.runEvents, *it.ev)
			if !rebuilt {
				marks = append(marks, s.ref(it))
				if s := it.ev.Source; int(s) < len(perSource) {
					perSource[s]++
				}
				if it.arrived > 0 && (arrived == 0 || it.arrived < arrived) {
					arrived = it.arrived
				}
			}
		}
		if rebuilt {
			s.det.ProcessBatch(p.runEvents, drop)
		} else {
			s.det.ProcessBatch(p.runEvents, emit)
		}
		i = j
	}
	clear(p.released)
	clear(p.runEvents)
	for s, n := range perSource {
		if n > 0 && p.evaluated[s] != nil {
			p.evaluated[s].Add(float64(n))
		}
	}
	return marks, arrived
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// graceOver reports whether partitions that have delivered nothing may be
// ignored (see unseenGrace).
func (p *Pipeline) graceOver() bool {
	return !p.firstLive.IsZero() && time.Since(p.firstLive) > unseenGrace
}

// refreshPositions asks the broker which partitions are caught up, so
// that events stop waiting on partitions with nothing to read. A failure
// leaves things as they were: events wait, which costs latency, not
// correctness.
func (p *Pipeline) refreshPositions(ctx context.Context) {
	p.positionsAt = time.Now()
	if p.cfg.Keyed != nil {
		p.refreshKeyed(ctx)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ps, err := p.src.Positions(ctx)
	if err != nil {
		p.cfg.Logger.Debug("partition positions unavailable; events wait for every partition", "err", err)
		return
	}
	p.known = true
	graceOver := p.graceOver()
	for _, pos := range ps {
		// A partition whose records are all queued is caught up too: once
		// its queue empties it holds nothing back (until it gets more).
		q := p.single.order.queue(pos.Source, pos.Topic, int32(pos.Partition))
		// Records below the committed offset are not read again, and a
		// partition's last records may have been dead letters.
		next := max(pos.Start, q.accepted+1)
		q.caughtUp = next >= pos.End || (!q.seen && graceOver)
	}
}

// persist stores evaluated batches. The events of up to cfg.Inserts
// batches are inserted at once, so that the client encodes one batch while
// the server writes another; the rest of each batch (finish) follows in
// batch order. After an unrecoverable error it stops fetching, abandons
// the inserts under way and returns the error once every batch is handed
// over.
func (p *Pipeline) persist(ctx context.Context, evaluated <-chan *evaluatedBatch, stopFetch func()) error {
	type storing struct {
		eb   *evaluatedBatch
		bad  []ingest.DeadLetter
		err  error
		done chan struct{}
	}
	insCtx, abandon := context.WithCancel(ctx)
	defer abandon()
	// A batch leaves evaluated only when a slot is free, so that no more
	// than cfg.Inserts batches are held here (MaxBuffered counts them).
	slots := make(chan struct{}, p.cfg.Inserts)
	started := make(chan *storing, p.cfg.Inserts)
	go func() {
		defer close(started)
		for {
			slots <- struct{}{}
			eb, ok := <-evaluated
			if !ok {
				return
			}
			s := &storing{eb: eb, done: make(chan struct{})}
			started <- s
			go func() {
				defer close(s.done)
				if s.err = insCtx.Err(); s.err == nil {
					s.bad, s.err = p.storeEvents(insCtx, eb.recs, batchToken(eb.batch))
				}
			}()
		}
	}()
	var err error
	for s := range started {
		<-s.done
		if err == nil {
			if err = s.err; err == nil {
				err = p.finish(ctx, s.eb, s.bad)
			}
			if err != nil {
				abandon()
				stopFetch() // unrecoverable: stop consuming, drain, return it
			}
		}
		<-slots
	}
	return err
}

// finish completes a batch whose events are stored (bad are the ones
// ClickHouse rejected): dead letters, repartition writes and alerts, and
// only then marks its records stored and commits.
func (p *Pipeline) finish(ctx context.Context, eb *evaluatedBatch, bad []ingest.DeadLetter) error {
	withOriginalBytes(bad, eb.batch)
	dls := append(eb.dls, bad...)
	if len(dls) > 0 {
		if err := p.storeDeadLetters(ctx, dls); err != nil {
			return err
		}
	}
	if len(eb.routed) > 0 {
		// Kafka errors are never bad data: retry treats them as transient,
		// as for the dead-letter topic.
		if err := p.retry(ctx, "repartition topics", func() error { return p.cfg.Router.Write(ctx, eb.routed) }); err != nil {
			return err
		}
	}
	if err := p.retry(ctx, "alerts", func() error {
		return p.timed("alerts", func() error { return p.store.InsertAlerts(ctx, eb.alerts) })
	}); err != nil {
		return err
	}
	p.src.MarkStored(eb.marks...)
	p.cfg.Metrics.Buffered.Sub(float64(len(eb.batch)))
	for _, d := range bad {
		p.cfg.Metrics.Invalid.WithLabelValues(d.Msg.Source.String(), metrics.ReasonCode(d.Reason)).Inc()
	}
	if err := p.src.Commit(ctx); err != nil {
		p.cfg.Logger.Warn("commit failed; offsets are committed with the next batch", "err", err)
	}
	p.Stats.Batches.Add(1)
	p.Stats.Stored.Add(uint64(len(eb.recs) - len(bad)))
	p.Stats.Invalid.Add(uint64(len(dls)))
	p.Stats.Alerts.Add(uint64(len(eb.alerts)))
	if len(eb.alerts) > 0 && eb.arrived > 0 {
		// An upper bound for each alert of the batch: its event reached
		// Kafka no earlier than the batch's earliest.
		p.cfg.Metrics.AlertLatency.Observe(time.Since(time.Unix(0, eb.arrived)).Seconds())
	}
	if p.cfg.OnAlert != nil {
		for _, a := range eb.alerts {
			p.cfg.OnAlert(a)
		}
	}
	return nil
}

// storeEvents inserts records, retrying transient failures forever (with
// backoff, until ctx ends). A bad-data failure is narrowed down by halving
// the batch until the offending records are found; those come back as
// dead letters, never as a retry loop.
func (p *Pipeline) storeEvents(ctx context.Context, recs []storage.Record, token string) ([]ingest.DeadLetter, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	var err error
	for attempt := 0; ; attempt++ {
		err = p.timed("events", func() error { return p.store.InsertEvents(ctx, recs, token) })
		if err == nil || !storage.IsRetryable(err) {
			break
		}
		p.Stats.InsertRetries.Add(1)
		if werr := p.wait(ctx, attempt, "events", err); werr != nil {
			return nil, werr
		}
	}
	if err == nil {
		return nil, nil
	}
	if len(recs) == 1 {
		r := recs[0]
		return []ingest.DeadLetter{{Msg: ingest.Message{Source: r.Event.Source, Topic: r.Origin.Topic,
			Partition: int(r.Origin.Partition), Offset: r.Origin.Offset}, Reason: "rejected by ClickHouse: " + err.Error()}}, nil
	}
	half := len(recs) / 2
	a, err := p.storeEvents(ctx, recs[:half], token+"-l")
	if err != nil {
		return nil, err
	}
	b, err := p.storeEvents(ctx, recs[half:], token+"-r")
	return append(a, b...), err
}

func (p *Pipeline) storeDeadLetters(ctx context.Context, dls []ingest.DeadLetter) error {
	now := time.Now()
	rows := make([]storage.DeadLetter, len(dls))
	for i, d := range dls {
		rows[i] = storage.DeadLetter{Source: d.Msg.Source, Reason: d.Reason, Raw: d.Msg.Value, ReceivedAt: now,
			Origin: storage.Origin{Topic: d.Msg.Topic, Partition: int32(d.Msg.Partition), Offset: d.Msg.Offset}}
	}
	if err := p.retry(ctx, "dead letters", func() error {
		return p.timed("dead_letters", func() error { return p.store.InsertDeadLetters(ctx, rows) })
	}); err != nil {
		return err
	}
	if p.dlq != nil {
		return p.retry(ctx, "dead-letter topic", func() error { return p.dlq.Write(ctx, dls) })
	}
	return nil
}

// timed runs one insert into table and records its duration and outcome.
func (p *Pipeline) timed(table string, insert func() error) error {
	began := time.Now()
	err := insert()
	m := p.cfg.Metrics
	switch {
	case err == nil:
		m.InsertDuration.WithLabelValues(table).Observe(time.Since(began).Seconds())
		m.ClickHouseUp.Set(1)
	case storage.IsRetryable(err):
		m.InsertErrors.WithLabelValues(table, "retryable").Inc()
		m.ClickHouseUp.Set(0)
	default:
		m.InsertErrors.WithLabelValues(table, "bad_data").Inc()
	}
	return err
}

// retry runs f until it succeeds, fails for good, or ctx ends.
func (p *Pipeline) retry(ctx context.Context, what string, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		if !storage.IsRetryable(err) {
			return fmt.Errorf("storing %s: %w", what, err)
		}
		p.Stats.InsertRetries.Add(1)
		if werr := p.wait(ctx, attempt, what, err); werr != nil {
			return werr
		}
	}
}

func (p *Pipeline) wait(ctx context.Context, attempt int, what string, err error) error {
	d := p.cfg.RetryMin << min(attempt, 16)
	if d > p.cfg.RetryMax || d <= 0 {
		d = p.cfg.RetryMax
	}
	switch {
	case attempt == 0:
		p.cfg.Logger.Warn("storing failed; retrying (consumption pauses while the queue is full)", "what", what, "attempt", attempt+1, "backoff", d, "err", err)
	case attempt%10 == 0:
		// Still failing: an error, which also reaches Sentry when configured.
		p.cfg.Logger.Error("storing keeps failing; consumption is paused until ClickHouse recovers", "what", what, "attempt", attempt+1, "backoff", d, "err", err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// batchToken identifies a batch by its first and last record per
// partition, so a retry of the same batch is deduplicated by ClickHouse.
func batchToken(batch []ingest.Message) string {
	if len(batch) == 0 {
		return ""
	}
	first, last := batch[0], batch[len(batch)-1]
	return storage.Token(first.Topic, strconv.Itoa(first.Partition), strconv.FormatInt(first.Offset, 10),
		last.Topic, strconv.Itoa(last.Partition), strconv.FormatInt(last.Offset, 10), strconv.Itoa(len(batch)))
}

func futureReason(ts int64, max time.Duration) string {
	return fmt.Sprintf(`field "ts": %s is more than %s ahead of the clock`, time.Unix(0, ts).UTC().Format(time.RFC3339Nano), max)
}

// withOriginalBytes gives dead letters found by storeEvents (which knows
// only origins) the key and value of their Kafka message.
func withOriginalBytes(dls []ingest.DeadLetter, batch []ingest.Message) {
	for i := range dls {
		d := &dls[i].Msg
		for _, m := range batch {
			if m.Topic == d.Topic && m.Partition == d.Partition && m.Offset == d.Offset {
				d.Key, d.Value, d.Time = m.Key, m.Value, m.Time
				break
			}
		}
	}
}
