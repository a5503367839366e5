package ingest

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// DumpPartition writes the value of every record of one partition, from
// its first offset to its end as of the call, to w, one per line in offset
// order, and returns how many it wrote. With one file per partition,
// `vigil replay --merge` then sees exactly what the daemon read. For
// development and tests.
func DumpPartition(ctx context.Context, cfg Config, topic string, partition int, w io.Writer) (int, error) {
	n := 0
	err := ReadPartition(ctx, cfg, topic, partition, 0, -1, func(m Message) error {
		n++
		_, err := w.Write(append(m.Value, '\n'))
		return err
	})
	return n, err
}

// ReadPartition calls fn, in offset order, for the records of one partition
// from offset from (or its log start, if later) up to, not including,
// offset until (the end as of the call for a negative until), and stops at
// fn's first error, which it returns. Source is not set; the origin of
// repartitioned records is. Keyed detection rebuilds a partition's state
// with it when it gains the partition: the topic's retention bounds what
// is read.
func ReadPartition(ctx context.Context, cfg Config, topic string, partition int, from, until int64, fn func(Message) error) error {
	mech, err := cfg.saslMechanism()
	if err != nil {
		return err
	}
	if len(cfg.Brokers) == 0 {
		return fmt.Errorf("ingest: read %s/%d: no brokers", topic, partition)
	}
	conn, err := cfg.newDialer(mech).DialLeader(ctx, "tcp", cfg.Brokers[0], topic, partition)
	if err != nil {
		return fmt.Errorf("ingest: read %s/%d: %w", topic, partition, err)
	}
	defer conn.Close()
	first, end, err := conn.ReadOffsets()
	if err != nil {
		return fmt.Errorf("ingest: read %s/%d: %w", topic, partition, err)
	}
	first = max(first, from)
	if until >= 0 && until < end {
		end = until
	}
	for off := first; off < end; {
		if err := ctx.Err(); err != nil {
			return err
		}
		conn.SetReadDeadline(time.Now().Add(requestTimeout))
		if _, err := conn.Seek(off, kafka.SeekAbsolute); err != nil {
			return fmt.Errorf("ingest: read %s/%d at %d: %w", topic, partition, off, err)
		}
		batch := conn.ReadBatch(1, 16<<20)
		for off < end {
			km, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if km.Offset < off {
				continue // a compressed batch starts before the offset asked for
			}
			m := Message{Topic: topic, Partition: partition, Offset: km.Offset, Key: km.Key, Value: km.Value, Time: km.Time}
			withOrigin(&m, km.Headers)
			if err := fn(m); err != nil {
				batch.Close()
				return err
			}
			off = km.Offset + 1
		}
		if err := batch.Close(); err != nil {
			return fmt.Errorf("ingest: read %s/%d at %d of %d: %w", topic, partition, off, end, err)
		}
	}
	return nil
}

// withOrigin sets m's origin from the headers a Router writes; records
// without them are their own origin.
func withOrigin(m *Message, hs []kafka.Header) {
	for _, h := range hs {
		switch h.Key {
		case headerSourceTopic:
			m.OriginTopic = string(h.Value)
		case headerSourcePartition:
			n, _ := strconv.Atoi(string(h.Value))
			m.OriginPartition = n
		case headerSourceOffset:
			n, _ := strconv.ParseInt(string(h.Value), 10, 64)
			m.OriginOffset = n
		case headerMergeTime:
			n, _ := strconv.ParseInt(string(h.Value), 10, 64)
			m.MergeTS = n
		case headerProgress:
			m.Progress = parseProgress(h.Value)
		}
	}
}
