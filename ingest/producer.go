package ingest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/segmentio/kafka-go"
)

// ProduceLines writes each non-empty line of r as one message to topic,
// in order and round-robin over the partitions (lines carry no key), for
// development, demos and tests (`vigil dev produce`). With pace > 0
// it sends at most pace messages per second; onBatch, if set, is called
// with the running count after each batch.
func ProduceLines(ctx context.Context, cfg Config, topic string, r io.Reader, pace float64, onBatch func(int)) (int, error) {
	mech, err := cfg.saslMechanism()
	if err != nil {
		return 0, err
	}
	tr := cfg.newTransport(mech)
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: topic, Transport: tr, RequiredAcks: kafka.RequireAll,
		Balancer: &kafka.RoundRobin{}, BatchSize: 2000, BatchTimeout: 5 * time.Millisecond}
	defer w.Close()
	const batch = 2000
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 2<<20)
	msgs := make([]kafka.Message, 0, batch)
	n := 0
	start := time.Now()
	flush := func() error {
		if len(msgs) == 0 {
			return nil
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			return fmt.Errorf("produce to %s: %w", topic, err)
		}
		n += len(msgs)
		msgs = msgs[:0]
		if onBatch != nil {
			onBatch(n)
		}
		if pace > 0 { // sleep until the pace allows the next batch
			due := start.Add(time.Duration(float64(n) / pace * float64(time.Second)))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Until(due)):
			}
		}
		return nil
	}
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		msgs = append(msgs, kafka.Message{Value: append([]byte(nil), sc.Bytes()...)})
		size := batch
		if pace > 0 && pace < batch {
			size = max(1, int(pace/10))
		}
		if len(msgs) >= size {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return n, err
	}
	return n, flush()
}
