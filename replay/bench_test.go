package replay

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/rules"
)

// benchEvents is the size of the replay benchmark's input file.
const benchEvents = 1_000_000

var (
	benchOnce sync.Once
	benchDir  string
	benchReq  string
	benchAud  string
)

// benchFiles writes one million log lines (90% requests, 10% audit) once.
func benchFiles(b *testing.B) (string, string) {
	benchOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-replay-bench")
		if err != nil {
			b.Fatal(err)
		}
		benchDir = dir
		benchReq, benchAud = filepath.Join(dir, "requests.jsonl"), filepath.Join(dir, "audit.jsonl")
		rf, _ := os.Create(benchReq)
		af, _ := os.Create(benchAud)
		rw, aw := bufio.NewWriter(rf), bufio.NewWriter(af)
		for i := 0; i < benchEvents; i++ {
			ms := int64(1795370400000) + int64(i/10)
			if i%10 == 9 {
				fmt.Fprintf(aw, `{"ts":%d,"event_id":"evt_%d","org_id":"org_%d","actor_id":"user_%d","actor_type":"user","ip":"203.0.113.%d","action":"document.read","resource_type":"document","resource_id":"doc_%d","namespace":"ns_%d","status":"success"}`+"\n",
					ms, i, i%30, i%100, i%250, i, i%80)
				continue
			}
			status := 200
			if i%37 == 0 {
				status = 401
			}
			fmt.Fprintf(rw, `{"ts":"2026-11-22T18:%02d:%02d.%03dZ","request_id":"req_%d","org_id":"org_%d","api_key_id":"key_%d","key_permission":"WRITE","ip":"203.0.%d.%d","country":"US","method":"GET","route":"/v1/namespaces/{namespace_id}/search","path":"/v1/namespaces/ns_%d/search","operation":"search","namespace":"ns_%d","data_classification":"INTERNAL","status":%d,"bytes_in":512,"bytes_out":%d,"latency_ms":12.5,"user_agent":"client-python/1.4.0"}`+"\n",
				(i/10/1000/60)%60, (i/10/1000)%60, (i/10)%1000, i, i%30, i%300, i%8, i%250, i%80, i%80, status, 1000+i%5000)
		}
		rw.Flush()
		aw.Flush()
		rf.Close()
		af.Close()
	})
	return benchReq, benchAud
}

// BenchmarkReplay is `vigil replay` over one million events with the
// detector's ten-rule benchmark pack (../detector/bench_test.go).
func BenchmarkReplay(b *testing.B) {
	req, aud := benchFiles(b)
	set, err := rules.LoadFiles("testdata/bench-rules.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		det := detector.New(set.Rules, detector.Config{})
		sum, err := Run(Options{Requests: []string{req}, Audit: []string{aud}}, det, func(*detector.Alert) {})
		if err != nil || sum.Events() != benchEvents {
			b.Fatalf("%v, %d events", err, sum.Events())
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkBaselineJSONMap only reads each line and decodes it with
// encoding/json into map[string]any — no rules at all.
func BenchmarkBaselineJSONMap(b *testing.B) {
	req, aud := benchFiles(b)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n := 0
		for _, name := range []string{req, aud} {
			f, err := os.Open(name)
			if err != nil {
				b.Fatal(err)
			}
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					b.Fatal(err)
				}
				n++
			}
			f.Close()
		}
		if n != benchEvents {
			b.Fatalf("%d lines", n)
		}
	}
	b.ReportMetric(float64(benchEvents*b.N)/b.Elapsed().Seconds(), "events/s")
}
