package replay

import (
	"bytes"
	"compress/gzip"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/rules"
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
