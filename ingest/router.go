package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// Routed is one record re-keyed for a repartition topic.
type Routed struct {
	Topic string
	Key   []byte
	// Msg is the record as read from its input topic: its value is
	// written unchanged, its coordinates go in the origin headers, and
	// Time (the event time) becomes the record's timestamp.
	Msg Message
	// MergeTS (Unix ns) goes in the vigil-merge-ts header: the newest
	// event time of the record's input partition up to it.
	MergeTS int64
	// Progress, when set, makes this a progress record instead, written to
	// Partition: no key, no value, the progress in the vigil-progress
	// header (one "topic partition offset merge-ts" line per input
	// partition).
	Progress  []Progress
	Partition int
}

// headerMergeTime carries Routed.MergeTS; headerProgress Routed.Progress.
const (
	headerMergeTime = "vigil-merge-ts"
	headerProgress  = "vigil-progress"
)

func appendProgress(b []byte, ps []Progress) []byte {
	for _, p := range ps {
		b = append(b, p.Topic...)
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(p.Partition), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.Offset, 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, p.MergeTS, 10)
		b = append(b, '\n')
	}
	return b
}

// parseProgress reads appendProgress's lines; malformed ones are skipped
// (they only cost waiting).
func parseProgress(b []byte) []Progress {
	var out []Progress
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 {
			continue
		}
		part, err1 := strconv.Atoi(f[1])
		off, err2 := strconv.ParseInt(f[2], 10, 64)
		ts, err3 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		out = append(out, Progress{Topic: f[0], Partition: part, Offset: off, MergeTS: ts})
	}
	return out
}

// Router writes re-keyed records to repartition topics, partitioned by a
// hash of the key with Kafka's default partitioner (murmur2), so that
// records written by other Kafka clients with the same key land in the
// same partition. The headers are the dead-letter writer's origin headers
// (vigil-source-topic, -partition, -offset, and vigil-source).
//
// It produces with one request at a time per partition rather than through
// kafka-go's Writer, whose concurrent batches may reach a partition out of
// order: keyed detection relies on each input partition's records keeping
// their order within a repartition partition.
type Router struct {
	client     *kafka.Client
	transport  *kafka.Transport
	partitions map[string][]int
}

// maxRequestBytes keeps a produce request under the broker's default
// message.max.bytes (1 MiB) for one record batch.
const maxRequestBytes = 768 << 10

// NewRouter returns a Router writing to topics (name → partition count,
// as EnsureTopics made them); only Brokers, ClientID, TLS, SASL and
// Logger are used from cfg.
func NewRouter(cfg Config, topics map[string]int) (*Router, error) {
	cfg, mech, err := cfg.prepare(false)
	if err != nil {
		return nil, err
	}
	transport := cfg.newTransport(mech)
	r := &Router{client: &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: requestTimeout, Transport: transport},
		transport: transport, partitions: map[string][]int{}}
	for t, n := range topics {
		for p := range n {
			r.partitions[t] = append(r.partitions[t], p)
		}
	}
	return r, nil
}

// Write writes rs and returns once the broker has acknowledged all of
// them. Each partition receives its records in the order of rs; partitions
// are written concurrently. After an error some records may be written:
// writing rs again duplicates them, in order, which keyed detection
// recognises by their origin.
func (r *Router) Write(ctx context.Context, rs []Routed) error {
	type part struct {
		topic string
		p     int
	}
	byPart := map[part][]kafka.Record{}
	bal := kafka.Murmur2Balancer{Consistent: true} // an empty key is a key too
	for i := range rs {
		x := &rs[i]
		ps := r.partitions[x.Topic]
		if len(ps) == 0 {
			return fmt.Errorf("ingest: repartition: unknown topic %q", x.Topic)
		}
		if x.Progress != nil {
			k := part{x.Topic, x.Partition}
			byPart[k] = append(byPart[k], kafka.Record{Time: time.Now(),
				Headers: []kafka.Header{{Key: headerProgress, Value: appendProgress(nil, x.Progress)}}})
			continue
		}
		key := x.Key
		if key == nil {
			key = []byte{}
		}
		k := part{x.Topic, bal.Balance(kafka.Message{Key: key}, ps...)}
		byPart[k] = append(byPart[k], kafka.Record{
			Time:  x.Msg.Time,
			Key:   kafka.NewBytes(key),
			Value: kafka.NewBytes(x.Msg.Value),
			Headers: []kafka.Header{
				{Key: headerSourceTopic, Value: []byte(x.Msg.Topic)},
				{Key: headerSourcePartition, Value: strconv.AppendInt(nil, int64(x.Msg.Partition), 10)},
				{Key: headerSourceOffset, Value: strconv.AppendInt(nil, x.Msg.Offset, 10)},
				{Key: headerSource, Value: []byte(x.Msg.Source.String())},
				{Key: headerMergeTime, Value: strconv.AppendInt(nil, x.MergeTS, 10)},
			},
		})
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for k, recs := range byPart {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.produce(ctx, k.topic, k.p, recs); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// produce writes recs to one partition in requests of at most
// maxRequestBytes, one after the other.
func (r *Router) produce(ctx context.Context, topic string, partition int, recs []kafka.Record) error {
	for len(recs) > 0 {
		n, size := 0, 0
		for n < len(recs) && (n == 0 || size < maxRequestBytes) {
			size += 96 // headers and framing
			if rec := &recs[n]; rec.Value != nil {
				size += rec.Key.Len() + rec.Value.Len()
			}
			n++
		}
		res, err := r.client.Produce(ctx, &kafka.ProduceRequest{Topic: topic, Partition: partition,
			RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs[:n]...)})
		if err == nil {
			err = res.Error
		}
		if err != nil {
			return fmt.Errorf("ingest: repartition %s/%d: %w", topic, partition, err)
		}
		recs = recs[n:]
	}
	return nil
}

// Close releases the Router's connections.
func (r *Router) Close() error {
	r.transport.CloseIdleConnections()
	return nil
}

// TopicSpec is how EnsureTopics creates a topic.
type TopicSpec struct {
	Partitions, Replication int
	// Configs are topic configs such as retention.ms.
	Configs map[string]string
}

// EnsureTopics creates the topics that do not exist yet and checks that
// the others have the partition count asked for: records are routed by a
// hash modulo the count, so a topic with another count would split groups
// between partitions written before and after.
func EnsureTopics(ctx context.Context, cfg Config, topics map[string]TopicSpec) error {
	cfg, mech, err := cfg.prepare(false)
	if err != nil {
		return err
	}
	transport := cfg.newTransport(mech)
	defer transport.CloseIdleConnections()
	client := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: requestTimeout, Transport: transport}
	req := &kafka.CreateTopicsRequest{}
	for name, spec := range topics {
		tc := kafka.TopicConfig{Topic: name, NumPartitions: spec.Partitions, ReplicationFactor: max(spec.Replication, 1)}
		for k, v := range spec.Configs {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, tc)
	}
	var res *kafka.CreateTopicsResponse
	err = retry(ctx, func() (err error) {
		res, err = client.CreateTopics(ctx, req)
		return err
	})
	if err != nil {
		return fmt.Errorf("ingest: creating topics: %w", err)
	}
	for name, e := range res.Errors {
		if e != nil && !errors.Is(e, kafka.TopicAlreadyExists) {
			return fmt.Errorf("ingest: creating topic %q: %w", name, e)
		}
	}
	names := make([]string, 0, len(topics))
	for name := range topics {
		names = append(names, name)
	}
	// A broker may answer metadata for a new topic a moment after creating it.
	var parts map[string][]int
	for attempt := 0; ; attempt++ {
		if parts, err = partitionsOf(ctx, client, names); err == nil {
			break
		}
		if attempt == 20 {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	for name, spec := range topics {
		if n := len(parts[name]); n != spec.Partitions {
			return fmt.Errorf("ingest: topic %q has %d partitions, not the %d configured: set scaling.partitions to %d, or delete the topic (it is derived data) while no replica runs", name, n, spec.Partitions, n)
		}
	}
	return nil
}
