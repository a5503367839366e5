package replay

import (
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/traffic"
)

var update = flag.Bool("update", false, "rewrite golden files")

func replayFiles(t testing.TB, shards int, opts Options, ruleFiles ...string) (string, *Summary) {
	t.Helper()
	set, err := rules.LoadFiles(ruleFiles...)
	if err != nil {
		t.Fatal(err)
	}
	det := detector.New(set.Rules, detector.Config{Shards: shards})
	defer det.Close()
	var out []byte
	sum, err := Run(opts, det, func(a *detector.Alert) { out = append(a.AppendJSON(out), '\n') })
	if err != nil {
		t.Fatal(err)
	}
	return string(out), sum
}

// The contract's example records replay to the alerts pinned in
// testdata/examples.golden.jsonl, byte for byte, whatever the shard count.
func TestGoldenReplayOfTheContractExamples(t *testing.T) {
	opts := Options{Requests: []string{"testdata/requests.example.jsonl"}, Audit: []string{"testdata/audit.example.jsonl"}}
	got, sum := replayFiles(t, 1, opts, "testdata/rules.yaml")
	if sum.Requests != 4 || sum.Audit != 3 || sum.Invalid != 0 {
		t.Errorf("summary %+v", sum)
	}
	golden := "testdata/examples.golden.jsonl"
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("alerts differ from %s:\n%s", golden, got)
	}
	if again, _ := replayFiles(t, 3, opts, "testdata/rules.yaml"); again != got {
		t.Errorf("3 shards gave other output:\n%s", again)
	}
}

func TestInvalidLinesAreCountedAndSkipped(t *testing.T) {
	dir := t.TempDir()
	good, _ := os.ReadFile("testdata/requests.example.jsonl")
	lines := strings.Split(strings.TrimSpace(string(good)), "\n")
	body := lines[0] + "\nnot json\n\n" + lines[1] + "\n{\"ts\":1}\n" + strings.Repeat("x", maxLine+10) + "\n" + lines[2] + "\n" + lines[3]
	path := filepath.Join(dir, "r.jsonl")
	os.WriteFile(path, []byte(body), 0o644)
	_, sum := replayFiles(t, 1, Options{Requests: []string{path}}, "testdata/rules.yaml")
	if sum.Requests != 4 || sum.Invalid != 3 {
		t.Fatalf("summary %+v", sum)
	}
	wantLines := []int{2, 5, 6}
	for i, il := range sum.InvalidSamples {
		if il.Line != wantLines[i] || il.File != path || il.Reason == "" {
			t.Errorf("invalid sample %d = %+v, want line %d", i, il, wantLines[i])
		}
	}
}

func TestGzipInputReadsLikePlain(t *testing.T) {
	dir := t.TempDir()
	plain, _ := os.ReadFile("testdata/requests.example.jsonl")
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(plain)
	zw.Close()
	gz := filepath.Join(dir, "r.jsonl.gz")
	os.WriteFile(gz, buf.Bytes(), 0o644)
	a, _ := replayFiles(t, 1, Options{Requests: []string{"testdata/requests.example.jsonl"}}, "testdata/rules.yaml")
	b, sum := replayFiles(t, 1, Options{Requests: []string{gz}}, "testdata/rules.yaml")
	if a != b || sum.Requests != 4 {
		t.Errorf("gzip replay differs (%d events):\n%s\nvs\n%s", sum.Requests, b, a)
	}
}

func TestMissingFileIsAnError(t *testing.T) {
	set, _ := rules.LoadFiles("testdata/rules.yaml")
	det := detector.New(set.Rules, detector.Config{})
	_, err := Run(Options{Requests: []string{"testdata/nope.jsonl"}}, det, func(*detector.Alert) {})
	if err == nil || !strings.Contains(err.Error(), "nope.jsonl") {
		t.Errorf("err = %v", err)
	}
}

// Files given with MergeFiles are partitions of one stream: a time-ordered
// stream dealt out to several files (each keeping its order) replays to
// the alerts of the stream itself.
func TestMergeFilesReassemblesPartitions(t *testing.T) {
	var reqs, auds bytes.Buffer
	if _, err := traffic.Generate(traffic.Config{Duration: 20 * time.Minute, Rate: 20, Seed: 3, Attacks: traffic.AttackNames()}, &reqs, &auds); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	split := func(name string, src event.Source, data []byte, parts int) (whole string, files []string) {
		var lines [][]byte
		var ts []int64
		var dec event.Decoder
		for _, l := range bytes.Split(data, []byte("\n")) {
			var e event.Event
			if dec.Decode(src, l, &e) == nil {
				lines, ts = append(lines, l), append(ts, e.TS)
			}
		}
		idx := make([]int, len(lines))
		for i := range idx {
			idx[i] = i
		}
		// Deal the lines out, then order the whole stream as the merge
		// does: by time, equal times in partition order.
		part := func(i int) int { return (i * 7 / 3) % parts }
		sort.SliceStable(idx, func(a, b int) bool {
			if ts[idx[a]] != ts[idx[b]] {
				return ts[idx[a]] < ts[idx[b]]
			}
			return part(idx[a]) < part(idx[b])
		})
		bufs := make([]bytes.Buffer, parts)
		var all bytes.Buffer
		for _, i := range idx {
			all.Write(append(lines[i], '\n'))
			bufs[part(i)].Write(append(lines[i], '\n'))
		}
		whole = filepath.Join(dir, name+".jsonl")
		os.WriteFile(whole, all.Bytes(), 0o644)
		for p := range bufs {
			f := filepath.Join(dir, fmt.Sprintf("%s-%d.jsonl", name, p))
			os.WriteFile(f, bufs[p].Bytes(), 0o644)
			files = append(files, f)
		}
		return whole, files
	}
	r, rParts := split("requests", event.Requests, reqs.Bytes(), 3)
	a, aParts := split("audit", event.Audit, auds.Bytes(), 2)
	want, _ := replayFiles(t, 1, Options{Requests: []string{r}, Audit: []string{a}}, "../configs/rules")
	got, sum := replayFiles(t, 2, Options{Requests: rParts, Audit: aParts, MergeFiles: true}, "../configs/rules")
	if sum.Alerts == 0 {
		t.Fatal("no alerts: the traffic's attacks should fire")
	}
	if got != want {
		t.Errorf("merged partitions replay to other alerts than the whole stream:\n got %s\nwant %s", got, want)
	}
}
