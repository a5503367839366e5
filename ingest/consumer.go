package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/vigil-sec/vigil/event"
)

// errClosed is returned by Fetch and Commit after Close. It wraps io.EOF,
// which is what kafka-go reports for a closed reader.
var errClosed = fmt.Errorf("ingest: consumer closed: %w", io.EOF)

// Consumer reads the input topics as one member of a consumer group.
//
// Fetch is meant to be called from one goroutine (concurrent calls are
// serialized); MarkStored, Commit, Committed and Lag may be called from
// any goroutine.
type Consumer struct {
	cfg       Config
	reader    *kafka.Reader
	transport *kafka.Transport // for the admin client
	client    *kafka.Client    // topic check, Commit's group-offset check, Lag
	log       *slog.Logger

	fetchMu  sync.Mutex // serializes Fetch so that offsets are registered in fetch order
	commitMu sync.Mutex // serializes commits: a later, lower commit would move the offset back

	mu         sync.Mutex
	partitions map[topicPartition]*partitionTracker

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

type topicPartition struct {
	topic     string
	partition int
}

// NewConsumer validates cfg, checks that the input topics exist (a group
// reader started before its topic exists silently consumes nothing) and
// joins the group with one kafka-go group Reader over all topics. The group
// starts at the earliest offset where it has no committed offset. Offsets
// are committed only by Commit and Close.
func NewConsumer(cfg Config) (c *Consumer, err error) {
	cfg, mech, err := cfg.prepare(true)
	if err != nil {
		return nil, err
	}
	transport := cfg.newTransport(mech)
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: requestTimeout, Transport: transport}
	c = &Consumer{
		cfg:        cfg,
		transport:  transport,
		client:     client,
		log:        cfg.Logger,
		partitions: make(map[topicPartition]*partitionTracker),
	}
	topics := slices.Sorted(maps.Keys(cfg.Topics))
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	_, err = c.partitionsOf(ctx, topics)
	cancel()
	if err != nil {
		transport.CloseIdleConnections()
		return nil, err
	}

	info, errs := kafkaLoggers(cfg.Logger, "reader")
	rc := kafka.ReaderConfig{
		Brokers:           cfg.Brokers,
		GroupID:           cfg.GroupID,
		GroupTopics:       topics,
		Dialer:            cfg.newDialer(mech),
		MaxWait:           cfg.MaxWait,
		HeartbeatInterval: cfg.HeartbeatInterval,
		SessionTimeout:    cfg.SessionTimeout,
		RebalanceTimeout:  cfg.RebalanceTimeout,
		// kafka-go waits 5s before re-joining after an error; the heartbeat
		// interval is short enough to rejoin quickly and long enough not
		// to hammer a broker that is down.
		JoinGroupBackoff: cfg.HeartbeatInterval,
		CommitInterval:   0, // we commit explicitly, see Commit
		StartOffset:      kafka.FirstOffset,
		ReadLagInterval:  -1, // meaningless for groups (see Lag)
		Logger:           info,
		ErrorLogger:      errs,
	}
	if err := rc.Validate(); err != nil {
		transport.CloseIdleConnections()
		return nil, fmt.Errorf("ingest: %w", err)
	}
	// NewReader panics where it could return an error (consumer group
	// config validation); turn that into one.
	defer func() {
		if r := recover(); r != nil {
			transport.CloseIdleConnections()
			c, err = nil, fmt.Errorf("ingest: creating reader: %v", r)
		}
	}()
	c.reader = kafka.NewReader(rc)
	return c, nil
}

// Fetch returns the next record and registers its offset as in flight; it
// stays in flight until MarkStored is called for it. Fetch returns only a
// record, ctx's error, or (after Close) an error wrapping io.EOF: broker errors are logged and retried,
// since kafka-go's reader reconnects and rejoins the group by itself.
func (c *Consumer) Fetch(ctx context.Context) (Message, error) {
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	for {
		if c.closed.Load() {
			return Message{}, errClosed
		}
		km, err := c.reader.FetchMessage(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return Message{}, ctx.Err()
			}
			if errors.Is(err, io.EOF) || c.closed.Load() {
				return Message{}, errClosed
			}
			c.log.Warn("ingest: fetch failed, retrying", "err", err)
			select {
			case <-ctx.Done():
				return Message{}, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		c.register(km.Topic, km.Partition, km.Offset)
		m := Message{
			Source:    c.cfg.Topics[km.Topic],
			Topic:     km.Topic,
			Partition: km.Partition,
			Offset:    km.Offset,
			Key:       km.Key,
			Value:     km.Value,
			Time:      km.Time,
		}
		if len(km.Headers) > 0 {
			withOrigin(&m, km.Headers)
		}
		return m, nil
	}
}

func (c *Consumer) register(topic string, partition int, offset int64) {
	key := topicPartition{topic, partition}
	c.mu.Lock()
	p := c.partitions[key]
	if p == nil {
		p = newPartitionTracker()
		c.partitions[key] = p
	}
	dropped, reset := p.fetched(offset)
	c.mu.Unlock()
	if reset {
		c.log.Info("ingest: partition restarted from an earlier offset (rebalance or reconnect); its in-flight records will be read again",
			"topic", topic, "partition", partition, "offset", offset, "forgotten", dropped)
	}
}

// MarkStored records that ms are durably stored. It may be called from any
// goroutine, in any order, more than once for a record. Records that are no
// longer in flight (their partition was restarted and they will be fetched
// again) are ignored.
func (c *Consumer) MarkStored(ms ...Message) {
	if len(ms) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var (
		last topicPartition
		p    *partitionTracker
	)
	for i := range ms {
		m := &ms[i]
		if p == nil || m.Topic != last.topic || m.Partition != last.partition {
			last = topicPartition{m.Topic, m.Partition}
			p = c.partitions[last]
			if p == nil {
				continue
			}
		}
		p.markStored(m.Offset)
	}
}

// Commit commits, for each partition, the offset below which every fetched
// record is marked stored, where that is past both what this consumer last
// committed and what the group has committed: it never moves an offset
// backwards, not even one another member moved on after a rebalance took
// the partition away from us (kafka-go does not say which partitions were
// revoked, and the broker accepts commits for any partition from a current
// member). It asks the group's committed offsets first, then commits.
//
// It blocks while the group is rebalancing or the broker is unreachable,
// up to ctx's deadline (10s if ctx has none). A failed commit changes
// nothing and is simply retried by the next call.
func (c *Consumer) Commit(ctx context.Context) error {
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	if c.closed.Load() {
		// After Close, CommitMessages may never return (gotcha 7).
		return errClosed
	}
	return c.commitLocked(ctx)
}

// commitLocked does Commit's work; c.commitMu must be held.
func (c *Consumer) commitLocked(ctx context.Context) error {
	type pending struct {
		key    topicPartition
		p      *partitionTracker
		offset int64
	}
	var todo []pending
	c.mu.Lock()
	for key, p := range c.partitions {
		if off, ok := p.toCommit(); ok {
			todo = append(todo, pending{key, p, off})
		}
	}
	c.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		// kafka-go's CommitMessages can hang forever (gotcha 7).
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, requestTimeout)
		defer cancel()
	}

	parts := make(map[string][]int)
	for _, t := range todo {
		parts[t.key.topic] = append(parts[t.key.topic], t.key.partition)
	}
	group, err := c.groupOffsets(ctx, parts)
	if err != nil {
		return fmt.Errorf("ingest: commit: %w", err)
	}
	msgs := make([]kafka.Message, 0, len(todo))
	kept := todo[:0]
	for _, t := range todo {
		if g, ok := group[t.key]; ok && g >= t.offset {
			// Another member committed further (we lost the partition
			// in a rebalance, or it was ours before and is again).
			continue
		}
		// CommitMessages commits Offset+1.
		msgs = append(msgs, kafka.Message{Topic: t.key.topic, Partition: t.key.partition, Offset: t.offset - 1})
		kept = append(kept, t)
	}
	if len(msgs) == 0 {
		return nil
	}
	if err := c.reader.CommitMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("ingest: commit %d partitions: %w", len(msgs), err)
	}
	c.mu.Lock()
	for _, t := range kept {
		t.p.didCommit(t.offset)
	}
	c.mu.Unlock()
	return nil
}

// Committed returns what this consumer last committed: topic → partition →
// next offset to read. Partitions it never committed are absent.
func (c *Consumer) Committed() map[string]map[int]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]map[int]int64)
	for key, p := range c.partitions {
		if p.committed < 0 {
			continue
		}
		m := out[key.topic]
		if m == nil {
			m = make(map[int]int64)
			out[key.topic] = m
		}
		m[key.partition] = p.committed
	}
	return out
}

// inFlight returns the number of fetched records not yet covered by the
// commit position (fetched but not stored, or stored behind an unstored
// one).
func (c *Consumer) inFlight() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.partitions {
		n += p.inFlight()
	}
	return n
}

// Lag returns, for every partition of the input topics, the end offset
// minus the group's committed offset (as the broker has it, whoever
// committed), or minus the log start where the group has committed
// nothing. It asks the broker (OffsetFetch and ListOffsets); kafka-go's
// Reader.Stats().Lag is one partition's gauge and is useless for groups.
func (c *Consumer) Lag(ctx context.Context) (map[string]map[int]int64, error) {
	ps, err := c.Positions(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[int]int64)
	for _, p := range ps {
		if out[p.Topic] == nil {
			out[p.Topic] = make(map[int]int64)
		}
		out[p.Topic][p.Partition] = max(p.End-p.Start, 0)
	}
	return out, nil
}

// groupOffsets returns the group's committed offsets for parts; partitions
// without a committed offset are absent.
func (c *Consumer) groupOffsets(ctx context.Context, parts map[string][]int) (map[topicPartition]int64, error) {
	return c.offsetsOf(ctx, c.cfg.GroupID, parts)
}

// offsetsOf returns group's committed offsets for parts.
func (c *Consumer) offsetsOf(ctx context.Context, group string, parts map[string][]int) (map[topicPartition]int64, error) {
	var of *kafka.OffsetFetchResponse
	err := retry(ctx, func() (err error) {
		of, err = c.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: parts})
		if err == nil && of.Error != nil {
			err = fmt.Errorf("offset fetch: %w", of.Error)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[topicPartition]int64)
	for topic, ps := range of.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("offset fetch %s/%d: %w", topic, p.Partition, p.Error)
			}
			if p.CommittedOffset >= 0 {
				out[topicPartition{topic, p.Partition}] = p.CommittedOffset
			}
		}
	}
	return out, nil
}

// retry calls fn up to 3 times while ctx lasts: the first request on a
// pooled connection fails after the broker restarted (unexpected EOF).
func retry(ctx context.Context, fn func() error) error {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return errors.Join(err, ctx.Err())
			case <-time.After(time.Duration(attempt) * 100 * time.Millisecond):
			}
		}
		if err = fn(); err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (c *Consumer) listOffsets(ctx context.Context, parts map[string][]int, req func(int) kafka.OffsetRequest) (map[topicPartition]int64, error) {
	reqs := make(map[string][]kafka.OffsetRequest, len(parts))
	for topic, ps := range parts {
		for _, p := range ps {
			reqs[topic] = append(reqs[topic], req(p))
		}
	}
	var res *kafka.ListOffsetsResponse
	err := retry(ctx, func() (err error) {
		res, err = c.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: reqs})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: lag: %w", err)
	}
	out := make(map[topicPartition]int64)
	for topic, ps := range res.Topics {
		for _, p := range ps {
			if p.Error != nil {
				return nil, fmt.Errorf("ingest: lag: list offsets %s/%d: %w", topic, p.Partition, p.Error)
			}
			off := p.LastOffset
			if off < 0 {
				off = p.FirstOffset
			}
			out[topicPartition{topic, p.Partition}] = off
		}
	}
	return out, nil
}

// partitionsOf returns the partitions of topics, or an error naming a topic
// that does not exist.
func (c *Consumer) partitionsOf(ctx context.Context, topics []string) (map[string][]int, error) {
	return partitionsOf(ctx, c.client, topics)
}

func partitionsOf(ctx context.Context, client *kafka.Client, topics []string) (map[string][]int, error) {
	var md *kafka.MetadataResponse
	err := retry(ctx, func() (err error) {
		md, err = client.Metadata(ctx, &kafka.MetadataRequest{Topics: topics})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("ingest: metadata: %w", err)
	}
	out := make(map[string][]int, len(topics))
	for _, t := range md.Topics {
		if t.Error != nil {
			if errors.Is(t.Error, kafka.UnknownTopicOrPartition) {
				return nil, fmt.Errorf("ingest: topic %q does not exist; create it before starting the consumer", t.Name)
			}
			return nil, fmt.Errorf("ingest: metadata for topic %q: %w", t.Name, t.Error)
		}
		ps := make([]int, 0, len(t.Partitions))
		for _, p := range t.Partitions {
			ps = append(ps, p.ID)
		}
		slices.Sort(ps)
		out[t.Name] = ps
	}
	for _, t := range topics {
		if len(out[t]) == 0 {
			return nil, fmt.Errorf("ingest: topic %q does not exist or has no partitions; create it before starting the consumer", t)
		}
	}
	return out, nil
}

// Close commits what is stored (waiting at most 5s), leaves the group and
// closes the reader. Records fetched but not stored are not committed; the
// group reads them again. Close is idempotent.
func (c *Consumer) Close() error {
	c.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), closeCommitTimeout)
		c.commitMu.Lock()
		err := c.commitLocked(ctx)
		c.closed.Store(true)
		c.commitMu.Unlock()
		cancel()
		c.closeErr = errors.Join(err, c.reader.Close())
		c.transport.CloseIdleConnections()
	})
	return c.closeErr
}

// GroupCommitted returns the group's committed offsets as the broker has
// them (topic → partition → next offset to read); partitions the group never
// committed are absent. The daemon rebuilds detection state from the
// records below these offsets before it consumes.
func (c *Consumer) GroupCommitted(ctx context.Context) (map[string]map[int]int64, error) {
	parts, err := c.partitionsOf(ctx, slices.Sorted(maps.Keys(c.cfg.Topics)))
	if err != nil {
		return nil, err
	}
	committed, err := c.groupOffsets(ctx, parts)
	if err != nil {
		return nil, fmt.Errorf("ingest: committed offsets: %w", err)
	}
	out := map[string]map[int]int64{}
	for k, off := range committed {
		if out[k.topic] == nil {
			out[k.topic] = map[int]int64{}
		}
		out[k.topic][k.partition] = off
	}
	return out, nil
}

// Position is where one input partition stands: Start is where the group
// resumes reading it (its committed offset, else the log start) and End the
// offset after its last record. A partition whose records up to End have
// all been handed out holds nothing back.
type Position struct {
	Source     event.Source
	Topic      string
	Partition  int
	Start, End int64
}

// Positions returns the Position of every partition of the input topics,
// asking the broker (Metadata, OffsetFetch, ListOffsets). The pipeline uses
// it to tell a partition with nothing to read from one that is merely
// slow, when it merges partitions by event time.
func (c *Consumer) Positions(ctx context.Context) ([]Position, error) {
	return c.PositionsOf(ctx, c.cfg.GroupID, c.cfg.Topics)
}

// PositionsOf is Positions for another group and its topics: keyed
// detection asks how far the router group has read the input topics.
func (c *Consumer) PositionsOf(ctx context.Context, group string, topics map[string]event.Source) ([]Position, error) {
	parts, err := c.partitionsOf(ctx, slices.Sorted(maps.Keys(topics)))
	if err != nil {
		return nil, err
	}
	committed, err := c.offsetsOf(ctx, group, parts)
	if err != nil {
		return nil, fmt.Errorf("ingest: positions: %w", err)
	}
	ends, err := c.listOffsets(ctx, parts, kafka.LastOffsetOf)
	if err != nil {
		return nil, err
	}
	starts, err := c.listOffsets(ctx, parts, kafka.FirstOffsetOf)
	if err != nil {
		return nil, err
	}
	var out []Position
	for _, topic := range slices.Sorted(maps.Keys(parts)) {
		for _, p := range parts[topic] {
			key := topicPartition{topic, p}
			start := starts[key]
			if off, ok := committed[key]; ok && off > start {
				start = off
			}
			out = append(out, Position{Source: topics[topic], Topic: topic, Partition: p, Start: start, End: ends[key]})
		}
	}
	return out, nil
}
