package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/devbroker/brokertest"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/internal/itest"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
	"github.com/vigil-sec/vigil/traffic"
)

// benchData is generated request and audit traffic (about 300 k events).
func benchData(b *testing.B) (reqs, auds []byte) {
	var r, a bytes.Buffer
	if _, err := traffic.Generate(traffic.Config{Duration: time.Hour, Rate: 65, Seed: 3, Attacks: traffic.AttackNames()}, &r, &a); err != nil {
		b.Fatal(err)
	}
	return r.Bytes(), a.Bytes()
}

func lines(data []byte) [][]byte {
	var out [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 2<<20)
	for sc.Scan() {
		out = append(out, append([]byte(nil), sc.Bytes()...))
	}
	return out
}

func benchTopics(b *testing.B, reqs, auds []byte) (string, int) {
	broker := brokertest.Start(b, map[string]int32{"requests": 3, "audit": 3})
	n := itest.Produce(b, broker.Addr(), "requests", reqs) + itest.Produce(b, broker.Addr(), "audit", auds)
	return broker.Addr(), n
}

// BenchmarkRawConsume is the Kafka baseline: a kafka-go group reader
// fetching every message and committing every 10,000, nothing else.
func BenchmarkRawConsume(b *testing.B) {
	reqs, auds := benchData(b)
	addr, n := benchTopics(b, reqs, auds)
	var cpu cpuMeter
	b.ResetTimer()
	cpu.start()
	for i := 0; i < b.N; i++ {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{addr}, GroupID: fmt.Sprintf("raw-%d", i), GroupTopics: []string{"requests", "audit"},
			StartOffset: kafka.FirstOffset, MaxWait: 250 * time.Millisecond, SessionTimeout: time.Second, HeartbeatInterval: 200 * time.Millisecond,
			RebalanceTimeout: 2 * time.Second, JoinGroupBackoff: 100 * time.Millisecond})
		var pending []kafka.Message
		for got := 0; got < n; got++ {
			m, err := r.FetchMessage(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			pending = append(pending, m)
			if len(pending) == 10000 {
				r.CommitMessages(context.Background(), pending...)
				pending = pending[:0]
			}
		}
		r.CommitMessages(context.Background(), pending...)
		r.Close()
	}
	cpu.stop()
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	cpu.report(b, n*b.N)
}

// BenchmarkRawInsert is the ClickHouse baseline: decoded events inserted
// with clickhouse-go batches of 50,000 (through storage.InsertEvents).
func BenchmarkRawInsert(b *testing.B) {
	reqs, auds := benchData(b)
	var recs []storage.Record
	for _, src := range []struct {
		s    event.Source
		data []byte
	}{{event.Requests, reqs}, {event.Audit, auds}} {
		var dec event.Decoder
		for _, l := range lines(src.data) {
			var e event.Event
			if dec.Decode(src.s, l, &e) == nil {
				c := e.Clone()
				recs = append(recs, storage.Record{Event: &c, Origin: storage.Origin{Topic: src.s.String()}})
			}
		}
	}
	addr, db := chtest.NewDatabase(b)
	store, err := storage.Open(context.Background(), storage.Config{Addr: []string{addr}, Database: db, Username: "default"})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	var cpu cpuMeter
	b.ResetTimer()
	cpu.start()
	for i := 0; i < b.N; i++ {
		for j := 0; j < len(recs); j += 50000 {
			if err := store.InsertEvents(context.Background(), recs[j:min(j+50000, len(recs))], fmt.Sprintf("%d-%d", i, j)); err != nil {
				b.Fatal(err)
			}
		}
	}
	cpu.stop()
	b.ReportMetric(float64(len(recs)*b.N)/b.Elapsed().Seconds(), "events/s")
	cpu.report(b, len(recs)*b.N)
}

// BenchmarkDaemon is the whole data path: consume, decode, detect with the
// shipped pack, store events and alerts, commit, with the daemon's default
// batching and buffer.
func BenchmarkDaemon(b *testing.B) {
	reqs, auds := benchData(b)
	addr, n := benchTopics(b, reqs, auds)
	set, err := rules.LoadFiles("../configs/rules")
	if err != nil {
		b.Fatal(err)
	}
	var cpu cpuMeter
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// Creating the database (migrations) is set-up, as for RawInsert.
		b.StopTimer()
		chAddr, db := chtest.NewDatabase(b)
		store, err := storage.Open(context.Background(), storage.Config{Addr: []string{chAddr}, Database: db, Username: "default"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cpu.start()
		consumer, err := ingest.NewConsumer(testIngest(addr, fmt.Sprintf("daemon-%d", i)))
		if err != nil {
			b.Fatal(err)
		}
		det := detector.New(set.Rules, detector.Config{Shards: 2})
		pl := New(Config{BatchSize: 50000, BatchInterval: 250 * time.Millisecond, MaxBuffered: 500000}, consumer, store, nil, det)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- pl.Run(ctx) }()
		for pl.Stats.Stored.Load()+pl.Stats.Invalid.Load() < uint64(n) {
			time.Sleep(20 * time.Millisecond)
		}
		// Throughput is the time to store everything. The last events
		// then wait for the broker to say every partition is read to its
		// end (a finite stream's tail, not a rate); that is not timed.
		b.StopTimer()
		cpu.stop()
		for !drained(b, consumer) {
			time.Sleep(20 * time.Millisecond)
		}
		b.StartTimer()
		cpu.start()
		cancel()
		<-done
		det.Close()
		consumer.Close()
		store.Close()
		cpu.stop()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	cpu.report(b, n*b.N)
}

// cpuMeter adds up CPU time over the timed parts of a benchmark: this
// process's (Vigil or the baseline, and the dev broker, which runs in the
// same process) and the ClickHouse server's when this binary started it.
type cpuMeter struct {
	self, server time.Duration
	serverKnown  bool
}

func (m *cpuMeter) start() {
	self, server, known := cpuTimes()
	m.self -= self
	m.server -= server
	m.serverKnown = known
}

func (m *cpuMeter) stop() {
	self, server, known := cpuTimes()
	m.self += self
	m.server += server
	m.serverKnown = m.serverKnown && known
}

// report adds cpu-µs/event (this process) and, when known,
// server-cpu-µs/event (ClickHouse).
func (m *cpuMeter) report(b *testing.B, events int) {
	b.ReportMetric(float64(m.self.Nanoseconds())/1e3/float64(events), "cpu-µs/event")
	if m.serverKnown {
		b.ReportMetric(float64(m.server.Nanoseconds())/1e3/float64(events), "server-cpu-µs/event")
	}
}

func cpuTimes() (self, server time.Duration, serverKnown bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	pid, ok := chtest.ServerPID()
	if !ok {
		return self, 0, false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return self, 0, false
	}
	// utime and stime are fields 14 and 15, in clock ticks (100 per
	// second on Linux); the command name before them has no spaces here.
	f := strings.Fields(string(stat))
	if len(f) < 15 {
		return self, 0, false
	}
	utime, err1 := strconv.ParseInt(f[13], 10, 64)
	stime, err2 := strconv.ParseInt(f[14], 10, 64)
	if err1 != nil || err2 != nil {
		return self, 0, false
	}
	return self, time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// BenchmarkAlertLatency writes the traffic to Kafka at a fixed rate while
// the pipeline consumes it live, and reports event→alert latency over the
// alerts fired: from the write of the event that fired an alert (acked by
// the broker) to the alert being stored in ClickHouse. Sub-benchmarks set
// the rate (events/s) and the batch interval.
func BenchmarkAlertLatency(b *testing.B) {
	reqs, auds := benchData(b)
	set, err := rules.LoadFiles("../configs/rules")
	if err != nil {
		b.Fatal(err)
	}
	times := func(src event.Source, data []byte) []int64 {
		var dec event.Decoder
		var e event.Event
		var out []int64
		for _, l := range lines(data) {
			if len(l) == 0 {
				continue
			}
			ts := int64(0)
			if dec.Decode(src, l, &e) == nil {
				ts = e.TS
			}
			out = append(out, ts)
		}
		return out
	}
	reqTS, audTS := times(event.Requests, reqs), times(event.Audit, auds)
	total := len(reqTS) + len(audTS)
	// The traffic spans an hour of event time and is written in seconds:
	// the reorder slack, event time the merge waits for, is scaled by the
	// same factor so that it costs the wall-clock time it would live.
	span := time.Duration(slices.Max(reqTS) - slices.Min(slices.DeleteFunc(slices.Clone(reqTS), func(ts int64) bool { return ts == 0 })))
	for _, c := range []struct {
		rate     float64
		interval time.Duration
	}{{20000, time.Second}, {20000, 250 * time.Millisecond}, {50000, 250 * time.Millisecond}, {100000, 250 * time.Millisecond}} {
		speedup := c.rate / (float64(total) / span.Seconds())
		slack := time.Duration(float64(DefaultReorderSlack) * speedup)
		b.Run(fmt.Sprintf("rate=%.0f/interval=%v", c.rate, c.interval), func(b *testing.B) {
			var lat []time.Duration
			unmatched := 0
			for i := 0; i < b.N; i++ {
				broker := brokertest.Start(b, map[string]int32{"requests": 3, "audit": 3})
				chAddr, db := chtest.NewDatabase(b)
				store, err := storage.Open(context.Background(), storage.Config{Addr: []string{chAddr}, Database: db, Username: "default"})
				if err != nil {
					b.Fatal(err)
				}
				consumer, err := ingest.NewConsumer(testIngest(broker.Addr(), "latency"))
				if err != nil {
					b.Fatal(err)
				}
				det := detector.New(set.Rules, detector.Config{Shards: 2})
				// written maps an event time to when its record was acked.
				var mu sync.Mutex
				written := map[int64]time.Time{}
				var fired []*detector.Alert
				var firedAt []time.Time
				pl := New(Config{BatchSize: 50000, BatchInterval: c.interval, MaxBuffered: 500000, ReorderSlack: slack, OnAlert: func(a *detector.Alert) {
					mu.Lock()
					fired, firedAt = append(fired, a), append(firedAt, time.Now())
					mu.Unlock()
				}}, consumer, store, nil, det)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- pl.Run(ctx) }()
				var wg sync.WaitGroup
				for _, t := range []struct {
					topic string
					data  []byte
					ts    []int64
				}{{"requests", reqs, reqTS}, {"audit", auds, audTS}} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						prev := 0
						pace := c.rate * float64(len(t.ts)) / float64(total)
						_, err := ingest.ProduceLines(ctx, ingest.Config{Brokers: []string{broker.Addr()}}, t.topic, bytes.NewReader(t.data), pace, func(n int) {
							now := time.Now()
							mu.Lock()
							for _, ts := range t.ts[prev:n] {
								if _, ok := written[ts]; !ok && ts != 0 {
									written[ts] = now
								}
							}
							mu.Unlock()
							prev = n
						})
						if err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
				for !drained(b, consumer) {
					time.Sleep(20 * time.Millisecond)
				}
				cancel()
				<-done
				det.Close()
				consumer.Close()
				store.Close()
				for j, a := range fired {
					w, ok := written[a.At]
					if !ok {
						unmatched++ // fired by time passing a boundary, not by one event
						continue
					}
					lat = append(lat, firedAt[j].Sub(w))
				}
			}
			if len(lat) == 0 {
				b.Fatal("no alerts matched to the event that fired them")
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Milliseconds()), "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Milliseconds()), "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1].Milliseconds()), "max-ms")
			b.ReportMetric(float64(len(lat)), "alerts")
			b.ReportMetric(float64(unmatched), "unmatched")
		})
	}
}
