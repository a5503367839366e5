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
	BatchInterval time.Duration // longest wait for a partial batch; default 1s
	// MaxBuffered caps messages held between Kafka and ClickHouse; fetching
	// pauses when it is reached (backpressure). Default 4 × BatchSize.
	MaxBuffered int
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
}

// Stats are the pipeline's counters.
type Stats struct {
	Consumed, Stored, Invalid, Alerts, Batches, InsertRetries atomic.Uint64
}

// Pipeline runs one consumer's data path.
type Pipeline struct {
	cfg   Config
	src   Source
	store Store
	dlq   DeadLetterSink
	det   *detector.Detector
	Stats Stats

	consumed, evaluated [3]prometheus.Counter // by event.Source
	ruleStats           atomic.Pointer[[]detector.RuleStats]
	pending             atomic.Pointer[[]*rules.Rule]
}

// New builds a pipeline; det must not be used by anyone else.
func New(cfg Config, src Source, store Store, dlq DeadLetterSink, det *detector.Detector) *Pipeline {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 50000
	}
	if cfg.BatchInterval <= 0 {
		cfg.BatchInterval = time.Second
	}
	if cfg.MaxBuffered < cfg.BatchSize {
		cfg.MaxBuffered = 4 * cfg.BatchSize
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
	p := &Pipeline{cfg: cfg, src: src, store: store, dlq: dlq, det: det}
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
	// ones, the one being evaluated and the one being stored.
	depth := p.cfg.MaxBuffered/p.cfg.BatchSize - 3
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
		for b := range batches {
			evaluated <- p.evaluate(b)
		}
		close(evaluated)
	}()
	go func() {
		var err error
		for eb := range evaluated {
			if err == nil {
				if err = p.persist(drainCtx, eb); err != nil {
					stopFetch() // unrecoverable: stop consuming, drain, return it
				}
			}
		}
		done <- err
	}()
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
	deadline := time.Now().Add(p.cfg.BatchInterval)
	flush := func() {
		if len(batch) > 0 {
			p.cfg.Metrics.Buffered.Add(float64(len(batch)))
			p.cfg.Metrics.BatchSize.Observe(float64(len(batch)))
			out <- batch
			batch = make([]ingest.Message, 0, p.cfg.BatchSize)
		}
		deadline = time.Now().Add(p.cfg.BatchInterval)
	}
	for {
		fctx, cancel := context.WithDeadline(ctx, deadline)
		m, err := p.src.Fetch(fctx)
		cancel()
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
	dls    []ingest.DeadLetter
	alerts []*detector.Alert
}

// evaluate decodes a batch and runs it through the detector.
func (p *Pipeline) evaluate(batch []ingest.Message) *evaluatedBatch {
	if rs := p.pending.Swap(nil); rs != nil {
		p.det.Replace(*rs)
	}
	began := time.Now()
	eb := &evaluatedBatch{batch: batch, events: make([]event.Event, 0, len(batch))}
	origins := make([]storage.Origin, 0, len(batch))
	var dec event.Decoder
	horizon := time.Now().Add(p.cfg.MaxFuture).UnixNano()
	for _, m := range batch {
		var e event.Event
		if err := dec.Decode(m.Source, m.Value, &e); err != nil {
			eb.dls = append(eb.dls, ingest.DeadLetter{Msg: m, Reason: err.Error()})
			continue
		}
		if e.TS > horizon {
			eb.dls = append(eb.dls, ingest.DeadLetter{Msg: m, Reason: futureReason(e.TS, p.cfg.MaxFuture)})
			continue
		}
		// Kafka gives each message its own buffer, but the decoder's
		// scratch space is shared: own the strings before the next decode.
		eb.events = append(eb.events, e.Clone())
		origins = append(origins, storage.Origin{Topic: m.Topic, Partition: int32(m.Partition), Offset: m.Offset})
	}
	// Partitions arrive interleaved in chunks. Evaluate the batch as a
	// merge of its partitions by event time — each partition keeping its
	// own order, the producer's, exactly as `vigil replay` merges its files
	// — so that alerts do not depend on fetch timing. Disorder that spans
	// batches is absorbed by the detector's lateness bound.
	eb.events, origins = mergeByTime(eb.events, origins)
	p.det.ProcessBatch(eb.events, func(a *detector.Alert) { eb.alerts = append(eb.alerts, a) })
	eb.recs = make([]storage.Record, len(eb.events))
	var perSource [3]int
	for i := range eb.events {
		eb.recs[i] = storage.Record{Event: &eb.events[i], Origin: origins[i]}
		if s := eb.events[i].Source; int(s) < len(perSource) {
			perSource[s]++
		}
	}
	m := p.cfg.Metrics
	for s, n := range perSource {
		if n > 0 && p.evaluated[s] != nil {
			p.evaluated[s].Add(float64(n))
		}
	}
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
	stats := p.det.Stats()
	p.ruleStats.Store(&stats)
	m.EvalDuration.Observe(time.Since(began).Seconds())
	return eb
}

// persist writes an evaluated batch — events, dead letters, alerts — and
// only then marks its records stored and commits.
func (p *Pipeline) persist(ctx context.Context, eb *evaluatedBatch) error {
	bad, err := p.storeEvents(ctx, eb.recs, batchToken(eb.batch))
	if err != nil {
		return err
	}
	withOriginalBytes(bad, eb.batch)
	dls := append(eb.dls, bad...)
	if len(dls) > 0 {
		if err := p.storeDeadLetters(ctx, dls); err != nil {
			return err
		}
	}
	if err := p.retry(ctx, "alerts", func() error {
		return p.timed("alerts", func() error { return p.store.InsertAlerts(ctx, eb.alerts) })
	}); err != nil {
		return err
	}
	p.src.MarkStored(eb.batch...)
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

// mergeByTime reorders a batch as a k-way merge of its partitions' runs by
// event time. Ties go to the partition seen first in the batch, so the
// order is fully determined by the batch's contents.
func mergeByTime(events []event.Event, origins []storage.Origin) ([]event.Event, []storage.Origin) {
	type run struct {
		topic     string
		partition int32
		idx       []int
	}
	var runs []*run
	byKey := map[storage.Origin]*run{}
	for i, o := range origins {
		k := storage.Origin{Topic: o.Topic, Partition: o.Partition}
		r := byKey[k]
		if r == nil {
			r = &run{topic: o.Topic, partition: o.Partition}
			byKey[k] = r
			runs = append(runs, r)
		}
		r.idx = append(r.idx, i)
	}
	if len(runs) < 2 {
		return events, origins
	}
	outE := make([]event.Event, 0, len(events))
	outO := make([]storage.Origin, 0, len(origins))
	for {
		var best *run
		for _, r := range runs {
			if len(r.idx) > 0 && (best == nil || events[r.idx[0]].TS < events[best.idx[0]].TS) {
				best = r
			}
		}
		if best == nil {
			return outE, outO
		}
		i := best.idx[0]
		best.idx = best.idx[1:]
		outE = append(outE, events[i])
		outO = append(outO, origins[i])
	}
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
