package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/devbroker"
	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/internal/itest"
	"github.com/vigil-sec/vigil/replay"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/traffic"
)

// stream is generated traffic as produced: the lines of each topic, with
// in-stream duplicates, and how many records of each kind there are.
type stream struct {
	reqs, auds     []byte
	validReq       uint64 // distinct valid requests
	validAud       uint64 // distinct valid audit events
	invalid        uint64 // invalid lines (never duplicated)
	dupReq, dupAud uint64 // valid lines sent twice
	expReq, expAud uint64 // valid records older than the table TTLs
}

// withDuplicates repeats every nth valid line of data a few lines later,
// as a producer retrying a send does, and counts the distinct valid and
// the invalid lines.
func withDuplicates(data []byte, src event.Source, n int) (out []byte, valid, invalid, dups uint64) {
	var dec event.Decoder
	var e event.Event
	var pending [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	var buf bytes.Buffer
	i := 0
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		buf.Write(line)
		buf.WriteByte('\n')
		if dec.Decode(src, line, &e) != nil {
			invalid++
			continue
		}
		valid++
		i++
		if len(pending) > 0 && i%3 == 0 {
			buf.Write(pending[0])
			buf.WriteByte('\n')
			pending = pending[1:]
			dups++
		}
		if n > 0 && i%n == 0 {
			pending = append(pending, append([]byte(nil), line...))
		}
	}
	for _, l := range pending {
		buf.Write(l)
		buf.WriteByte('\n')
		dups++
	}
	return buf.Bytes(), valid, invalid, dups
}

// newStream prepares generated traffic for producing: duplicates added,
// records counted.
func newStream(reqs, auds []byte, dupEvery int) *stream {
	s := &stream{}
	var invR, invA uint64
	s.reqs, s.validReq, invR, s.dupReq = withDuplicates(reqs, event.Requests, dupEvery)
	s.auds, s.validAud, invA, s.dupAud = withDuplicates(auds, event.Audit, dupEvery)
	s.invalid = invR + invA
	s.expReq = itest.Expired(reqs, event.Requests, 90*24*time.Hour)
	s.expAud = itest.Expired(auds, event.Audit, 365*24*time.Hour)
	return s
}

// streamOnBroker generates traffic with every attack (tc's duration,
// rate, seed and invalid records), adds records the producer sends twice
// (one valid line in dupEvery), starts a dev broker with the input topics'
// partitions and a dead-letter topic, and produces the stream. It returns
// the stream, the broker and how many records were produced.
func streamOnBroker(t testing.TB, tc traffic.Config, dupEvery int, partitions map[string]int) (*stream, *devbroker.Broker, uint64) {
	t.Helper()
	tc.Attacks = traffic.AttackNames()
	var reqs, auds bytes.Buffer
	if _, err := traffic.Generate(tc, &reqs, &auds); err != nil {
		t.Fatal(err)
	}
	s := newStream(reqs.Bytes(), auds.Bytes(), dupEvery)
	topics := map[string]int32{"dlq": 1}
	for topic, n := range partitions {
		topics[topic] = int32(n)
	}
	broker := brokertest.Start(t, topics)
	n := itest.Produce(t, broker.Addr(), "requests", s.reqs) + itest.Produce(t, broker.Addr(), "audit", s.auds)
	return s, broker, uint64(n)
}

// replayMerged runs `vigil replay --merge` over per-partition files (the
// daemon's default detector settings) and returns its alerts' JSON.
func replayMerged(t *testing.T, rulesDir string, reqFiles, audFiles []string) map[string]bool {
	t.Helper()
	set, err := rules.LoadFiles(rulesDir)
	if err != nil {
		t.Fatal(err)
	}
	det := detector.New(set.Rules, detector.Config{})
	defer det.Close()
	out := map[string]bool{}
	if _, err := replay.Run(replay.Options{Requests: reqFiles, Audit: audFiles, MergeFiles: true}, det,
		func(a *detector.Alert) { out[string(a.AppendJSON(nil))] = true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// compareAlerts reports alerts missing from or extra to replay's. A
// dormant key whose previous use is older than the request retention
// may be missing after a restart: that record was never stored (the TTL
// drops it at insert), so no rebuild can know it.
func compareAlerts(t *testing.T, got []string, want map[string]bool, restarted bool) (missing, extra int) {
	t.Helper()
	have := map[string]bool{}
	for _, s := range got {
		have[s] = true
	}
	for s := range want {
		if have[s] {
			continue
		}
		missing++
		var a struct {
			Rule        string    `json:"rule"`
			WindowStart time.Time `json:"window_start"`
		}
		json.Unmarshal([]byte(s), &a)
		if !restarted || a.Rule != "key-dormant-reactivated" || time.Since(a.WindowStart) < 90*24*time.Hour {
			t.Errorf("missing: %s", s)
		}
	}
	for s := range have {
		if !want[s] {
			extra++
			t.Errorf("not in replay (fired twice or wrongly): %s", s)
		}
	}
	return missing, extra
}

// checkStored checks the end state in ClickHouse: every valid record
// stored exactly once, every invalid one dead-lettered.
func checkStored(t *testing.T, addr, db string, s *stream) {
	t.Helper()
	wantReq, wantAud := s.validReq-s.expReq, s.validAud-s.expAud
	for _, c := range []struct {
		q    string
		want uint64
	}{
		{"SELECT uniqExact(request_id) FROM " + db + ".request_events", wantReq},
		{"SELECT count() FROM " + db + ".request_events FINAL", wantReq},
		{"SELECT uniqExact(event_id) FROM " + db + ".audit_events", wantAud},
		{"SELECT count() FROM " + db + ".audit_events FINAL", wantAud},
		{"SELECT count() FROM " + db + ".dead_letters FINAL", s.invalid},
	} {
		if n := countQuery(t, addr, db, c.q); n != c.want {
			t.Errorf("%s = %d, want %d", c.q, n, c.want)
		}
	}
}

// waitCommitted waits until the group has committed every record of
// topics (the daemon stored and evaluated them all) and returns how long
// that took.
func waitCommitted(t *testing.T, d *daemonProc, addr string, topics map[string]int, patience time.Duration) time.Duration {
	t.Helper()
	began := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		lag, err := groupLag(ctx, addr, "vigil", topics)
		cancel()
		if err == nil {
			var sum int64
			for _, l := range lag {
				sum += l
			}
			if sum == 0 {
				return time.Since(began)
			}
		}
		if time.Since(began) > patience {
			t.Fatalf("group lag not zero %v after start: %v (%v)\n%s", patience, lag, err, d.tail(20))
		}
		if d.cmd.ProcessState != nil {
			t.Fatalf("daemon exited:\n%s", d.tail(20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dupEveryForTest() int {
	if v := os.Getenv("VIGIL_DUP_EVERY"); v != "" {
		var n int
		fmt.Sscan(v, &n)
		return n
	}
	return 200
}

// logTailOnFailure shows the end of the daemon's log when the test failed.
func logTailOnFailure(t *testing.T, logPath string, n int) {
	if !t.Failed() {
		return
	}
	b, _ := os.ReadFile(logPath)
	lines := strings.Split(string(b), "\n")
	t.Logf("daemon log (last %d lines):\n%s", n, strings.Join(lines[max(0, len(lines)-n):], "\n"))
}
