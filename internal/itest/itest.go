// Package itest holds the helpers the end-to-end tests share: producing
// log lines to the dev broker, reading what the daemon stored in
// ClickHouse, and the records a table TTL drops. Tests only.
package itest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/internal/chtest"
)

// ProduceLines writes each line of data as one message to topic, in order
// (ingest.ProduceLines, as `vigil dev produce` does); usable off the test
// goroutine.
func ProduceLines(ctx context.Context, addr, topic string, data []byte) (int, error) {
	return ingest.ProduceLines(ctx, ingest.Config{Brokers: []string{addr}}, topic, bytes.NewReader(data), 0, nil)
}

// Produce is ProduceLines that fails the test on error.
func Produce(t testing.TB, addr, topic string, data []byte) int {
	t.Helper()
	n, err := ProduceLines(context.Background(), addr, topic, data)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// DumpPartitions writes each partition of topic, in offset order, to its
// own file under dir and returns the files in partition order: the records
// exactly as the daemon could read them, for `vigil replay --merge`.
func DumpPartitions(t testing.TB, addr, topic string, partitions int, dir string) []string {
	t.Helper()
	var files []string
	for p := range partitions {
		var buf bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := ingest.DumpPartition(ctx, ingest.Config{Brokers: []string{addr}}, topic, p, &buf)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, fmt.Sprintf("%s-%d.jsonl", topic, p))
		if err := os.WriteFile(f, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// StoredAlerts returns the alert JSON the daemon stored, deduplicated
// (FINAL) and sorted.
func StoredAlerts(t testing.TB, addr, db string) []string {
	t.Helper()
	conn := chtest.Open(t, addr, db)
	rows, err := conn.Query(context.Background(), "SELECT alert_json FROM "+db+".alerts FINAL")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// Expired counts the valid records of data older than ttl: the table TTL
// drops them at insert (the generator replays a dormant key's last use
// months back).
func Expired(data []byte, src event.Source, ttl time.Duration) uint64 {
	var n uint64
	var dec event.Decoder
	var e event.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 2<<20)
	for sc.Scan() {
		if dec.Decode(src, sc.Bytes(), &e) == nil && time.Unix(0, e.TS).Before(time.Now().Add(-ttl)) {
			n++
		}
	}
	return n
}
