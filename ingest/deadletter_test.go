package ingest

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/event"
)

func TestDeadLetterWriter(t *testing.T) {
	b := brokertest.Start(t, map[string]int32{"vigil.deadletter": 1})
	cfg := Config{Brokers: []string{b.Addr()}, ClientID: "ingest-test", DeadLetterTopic: "vigil.deadletter", Logger: testLogger(t)}
	w, err := NewDeadLetterWriter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	var dls []DeadLetter
	for i := range 10 {
		src, topic := event.Requests, "requests"
		if i%2 == 1 {
			src, topic = event.Audit, "audit"
		}
		var key []byte
		if i%3 != 0 {
			key = []byte(fmt.Sprintf("key-%d", i))
		}
		// Original bytes, including ones that are neither JSON nor UTF-8.
		value := []byte(fmt.Sprintf(`{"ts":%d,"broken`, i))
		if i == 4 {
			value = []byte{0xff, 0x00, 0xfe, '\n'}
		}
		dls = append(dls, DeadLetter{
			Msg:    Message{Source: src, Topic: topic, Partition: i % 3, Offset: int64(1000 + i), Key: key, Value: value, Time: time.Now()},
			Reason: fmt.Sprintf("reason %d: missing required field ts", i),
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := w.Write(ctx, dls[:1]); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, dls[1:]); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote 1 + 9 dead letters in %v", time.Since(start))
	if time.Since(start) > 900*time.Millisecond {
		t.Errorf("writes took %v; the writer's batch timeout is too long (gotcha 10)", time.Since(start))
	}

	r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b.Addr()}, Topic: "vigil.deadletter", Partition: 0, MaxWait: 100 * time.Millisecond})
	defer r.Close()
	for i, d := range dls {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("reading dead letter %d: %v", i, err)
		}
		if !bytes.Equal(m.Key, d.Msg.Key) || !bytes.Equal(m.Value, d.Msg.Value) {
			t.Errorf("dead letter %d: key %q value %q, want %q %q", i, m.Key, m.Value, d.Msg.Key, d.Msg.Value)
		}
		h := make(map[string]string)
		for _, hd := range m.Headers {
			if _, dup := h[hd.Key]; dup {
				t.Errorf("dead letter %d: header %s twice", i, hd.Key)
			}
			h[hd.Key] = string(hd.Value)
		}
		want := map[string]string{
			"vigil-reason":           d.Reason,
			"vigil-source-topic":     d.Msg.Topic,
			"vigil-source-partition": strconv.Itoa(d.Msg.Partition),
			"vigil-source-offset":    strconv.FormatInt(d.Msg.Offset, 10),
			"vigil-source":           d.Msg.Source.String(),
		}
		if fmt.Sprint(h) != fmt.Sprint(want) {
			t.Errorf("dead letter %d: headers %v, want %v", i, h, want)
		}
	}
}

func TestDeadLetterWriterErrors(t *testing.T) {
	if _, err := NewDeadLetterWriter(Config{Brokers: []string{"127.0.0.1:1"}}); err == nil {
		t.Fatal("NewDeadLetterWriter without a topic succeeded")
	}
	var none *DeadLetterWriter // no dead-letter topic configured
	if err := none.Write(context.Background(), []DeadLetter{{Reason: "x"}}); err != nil {
		t.Fatal(err)
	}
	if err := none.Close(); err != nil {
		t.Fatal(err)
	}

	// A missing topic is an error, not a silent drop (gotchas 2 and 9).
	b := brokertest.Start(t, nil)
	w, err := NewDeadLetterWriter(Config{Brokers: []string{b.Addr()}, DeadLetterTopic: "missing", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = w.Write(ctx, []DeadLetter{{Msg: Message{Source: event.Requests, Topic: "requests", Value: []byte("x")}, Reason: "r"}})
	if err == nil || !strings.Contains(err.Error(), "Unknown Topic") {
		t.Fatalf("Write to a missing topic: %v, want an Unknown Topic error", err)
	}
}
