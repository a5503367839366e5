package devbroker_test

import (
	"context"
	"log"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/vigil-sec/vigil/devbroker"
)

// A broker with a 6-partition topic, written to with kafka-go. In tests,
// brokertest.Start does the same in one line.
func ExampleStart() {
	b, err := devbroker.Start(devbroker.Config{
		DataDir: "", // in memory
		Topics:  map[string]int32{"requests": 6},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()

	tr := &kafka.Transport{} // not kafka.DefaultTransport, whose goroutines outlive the writer
	defer tr.CloseIdleConnections()
	w := &kafka.Writer{
		Addr:         kafka.TCP(b.Addr()),
		Topic:        "requests",
		RequiredAcks: kafka.RequireAll,     // the zero value is fire-and-forget
		BatchTimeout: 5 * time.Millisecond, // the 1s default delays small writes
		Transport:    tr,
	}
	defer w.Close()
	if err := w.WriteMessages(context.Background(), kafka.Message{Value: []byte(`{"path":"/"}`)}); err != nil {
		log.Fatal(err)
	}
}
