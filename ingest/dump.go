package ingest

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// DumpPartition writes the value of every record of one partition, from
// its first offset to its end as of the call, to w, one per line in offset
// order, and returns how many it wrote. With one file per partition,
// `vigil replay --merge` then sees exactly what the daemon read. For
// development and tests.
func DumpPartition(ctx context.Context, cfg Config, topic string, partition int, w io.Writer) (int, error) {
	mech, err := cfg.saslMechanism()
	if err != nil {
		return 0, err
	}
	if len(cfg.Brokers) == 0 {
		return 0, fmt.Errorf("ingest: dump: no brokers")
	}
	d := &kafka.Dialer{ClientID: cfg.ClientID, Timeout: dialTimeout, DualStack: true, TLS: cfg.TLS, SASLMechanism: mech}
	conn, err := d.DialLeader(ctx, "tcp", cfg.Brokers[0], topic, partition)
	if err != nil {
		return 0, fmt.Errorf("ingest: dump %s/%d: %w", topic, partition, err)
	}
	defer conn.Close()
	first, end, err := conn.ReadOffsets()
	if err != nil {
		return 0, fmt.Errorf("ingest: dump %s/%d: %w", topic, partition, err)
	}
	n := 0
	for off := first; off < end; {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		conn.SetReadDeadline(time.Now().Add(requestTimeout))
		if _, err := conn.Seek(off, kafka.SeekAbsolute); err != nil {
			return n, fmt.Errorf("ingest: dump %s/%d at %d: %w", topic, partition, off, err)
		}
		batch := conn.ReadBatch(1, 16<<20)
		for {
			m, err := batch.ReadMessage()
			if err != nil {
				break
			}
			if _, err := w.Write(append(m.Value, '\n')); err != nil {
				batch.Close()
				return n, err
			}
			n++
			off = m.Offset + 1
		}
		if err := batch.Close(); err != nil {
			return n, fmt.Errorf("ingest: dump %s/%d at %d of %d: %w", topic, partition, off, end, err)
		}
	}
	return n, nil
}
