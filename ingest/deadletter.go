package ingest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// Dead-letter header names (see DeadLetterWriter).
const (
	headerReason          = "vigil-reason"
	headerSourceTopic     = "vigil-source-topic"
	headerSourcePartition = "vigil-source-partition"
	headerSourceOffset    = "vigil-source-offset"
	headerSource          = "vigil-source"
)

// DeadLetter is an invalid record and why it is invalid.
type DeadLetter struct {
	Msg    Message
	Reason string
}

// DeadLetterWriter writes invalid records to the dead-letter topic with
// their original key and value bytes; the reason and the record's origin go
// in headers: vigil-reason, vigil-source-topic, vigil-source-partition and
// vigil-source-offset (decimal), and vigil-source (requests or audit).
//
// A nil *DeadLetterWriter (no dead-letter topic configured) accepts and
// drops everything.
type DeadLetterWriter struct {
	w         *kafka.Writer
	transport *kafka.Transport
}

// NewDeadLetterWriter returns a writer to cfg.DeadLetterTopic, which must be
// set and must exist (the writer does not create topics). Only Brokers,
// ClientID, TLS, SASL and Logger are used from cfg.
func NewDeadLetterWriter(cfg Config) (*DeadLetterWriter, error) {
	if cfg.DeadLetterTopic == "" {
		return nil, errors.New("ingest: no dead-letter topic configured")
	}
	cfg, mech, err := cfg.prepare(false)
	if err != nil {
		return nil, err
	}
	// An own Transport: the default one's goroutines outlive Close (gotcha 8).
	transport := cfg.newTransport(mech)
	info, errs := kafkaLoggers(cfg.Logger, "deadletter")
	w := &kafka.Writer{
		Addr:     kafka.TCP(cfg.Brokers...),
		Topic:    cfg.DeadLetterTopic,
		Balancer: &kafka.Hash{}, // by original key; round robin for nil keys
		// The zero value is RequireNone: fire and forget, errors unseen
		// (gotcha 9).
		RequiredAcks: kafka.RequireAll,
		// The defaults (100 messages, 1s) make a small write take a second
		// (gotcha 10).
		BatchSize:    10000,
		BatchTimeout: 5 * time.Millisecond,
		Transport:    transport,
		Logger:       info,
		ErrorLogger:  errs,
	}
	return &DeadLetterWriter{w: w, transport: transport}, nil
}

// Write writes dls and returns once the broker has acknowledged all of them
// (or with the error of the first that failed). kafka-go retries transient
// failures (10 attempts, backoff up to 1s) within ctx.
func (w *DeadLetterWriter) Write(ctx context.Context, dls []DeadLetter) error {
	if w == nil || len(dls) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(dls))
	for i := range dls {
		d := &dls[i]
		msgs[i] = kafka.Message{
			Key:   d.Msg.Key,
			Value: d.Msg.Value,
			Headers: []kafka.Header{
				{Key: headerReason, Value: []byte(d.Reason)},
				{Key: headerSourceTopic, Value: []byte(d.Msg.Topic)},
				{Key: headerSourcePartition, Value: strconv.AppendInt(nil, int64(d.Msg.Partition), 10)},
				{Key: headerSourceOffset, Value: strconv.AppendInt(nil, d.Msg.Offset, 10)},
				{Key: headerSource, Value: []byte(d.Msg.Source.String())},
			},
		}
	}
	if err := w.w.WriteMessages(ctx, msgs...); err != nil {
		var werrs kafka.WriteErrors
		if errors.As(err, &werrs) {
			failed := 0
			var first error
			for _, e := range werrs {
				if e != nil {
					failed++
					if first == nil {
						first = e
					}
				}
			}
			return fmt.Errorf("ingest: dead letters: %d of %d not written: %w", failed, len(msgs), first)
		}
		return fmt.Errorf("ingest: dead letters: %w", err)
	}
	return nil
}

// Close flushes and closes the writer.
func (w *DeadLetterWriter) Close() error {
	if w == nil {
		return nil
	}
	err := w.w.Close()
	w.transport.CloseIdleConnections()
	return err
}
