package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReplayCommand(t *testing.T) {
	const rulesFile = "../../replay/testdata/rules.yaml"
	reqs, audit := "../../replay/testdata/requests.example.jsonl", "../../replay/testdata/audit.example.jsonl"
	golden, err := os.ReadFile("../../replay/testdata/examples.golden.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	nsFile := filepath.Join(dir, "ns.yaml")
	os.WriteFile(nsFile, []byte("ns_9: PHI\n"), 0o644)
	phiRule := filepath.Join(dir, "phi.yaml")
	os.WriteFile(phiRule, []byte("rules:\n  - id: phi-read\n    source: requests\n    where: 'data_classification == \"PHI\"'\n    window: 1m\n    threshold: '>= 1'\n"), 0o644)
	badNS := filepath.Join(dir, "bad-ns.yaml")
	os.WriteFile(badNS, []byte("ns_9: SECRET\n"), 0o644)

	tests := []struct {
		name       string
		args       []string
		code       int
		stdout     string // exact, when not empty
		stdoutHas  string
		stderrHave string
	}{
		{"replays the examples to the golden alerts", []string{"--rules", rulesFile, "--requests", reqs, "--audit", audit}, 0, string(golden), "", "events: 7 (requests 4, audit 3), invalid lines: 0, alerts: 6"},
		{"several shards give the same bytes", []string{"--shards", "4", "--rules", rulesFile, "--requests", reqs, "--audit", audit}, 0, string(golden), "", ""},
		{"a namespace table marks events PHI", []string{"--namespaces", nsFile, "--rules", phiRule, "--requests", reqs}, 0, "", `"rule":"phi-read","severity":2,"severity_name":"high","source":"requests","group":{},"value":1,"threshold":">= 1","window_start":"2026-11-22T17:59:01Z","window_end":"2026-11-22T18:00:01Z","at":"2026-11-22T18:00:00.48Z","phi":true,"labels":{},"sample_ids":["req_0002"]`, ""},
		{"an unknown classification is a usage error", []string{"--namespaces", badNS, "--rules", rulesFile, "--requests", reqs}, 2, "", "", `unknown classification "SECRET"`},
		{"no input files is a usage error", []string{"--rules", rulesFile}, 2, "", "", "usage: vigil replay"},
		{"a bad rule file is reported with its position", []string{"--rules", "../../rules/testdata/bad-id.bad.yaml", "--requests", reqs}, 2, "", "", "bad-id.bad.yaml:2:9: invalid rule id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append([]string{"replay"}, tt.args...), &out, &errOut)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, errOut.String())
			}
			if tt.stdout != "" && out.String() != tt.stdout {
				t.Errorf("stdout:\n%s\nwant:\n%s", out.String(), tt.stdout)
			}
			if !strings.Contains(out.String(), tt.stdoutHas) {
				t.Errorf("stdout lacks %q:\n%s", tt.stdoutHas, out.String())
			}
			if !strings.Contains(errOut.String(), tt.stderrHave) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderrHave, errOut.String())
			}
		})
	}
}

func TestReplayWritesDeadLetters(t *testing.T) {
	dir := t.TempDir()
	reqs := filepath.Join(dir, "r.jsonl")
	os.WriteFile(reqs, []byte("{\"ts\":\"2026-11-22T18:00:00Z\"}\nnot json \xff\n"), 0o644)
	dl := filepath.Join(dir, "dead.jsonl")
	var out, errOut bytes.Buffer
	if code := run([]string{"replay", "-q", "--dead-letters", dl, "--rules", "../../replay/testdata/rules.yaml", "--requests", reqs}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	got, err := os.ReadFile(dl)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(got)), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"source":"requests","file":"`+reqs+`","line":1,"reason":`) ||
		!strings.Contains(lines[0], `"raw":"{\"ts\":\"2026-11-22T18:00:00Z\"}"`) || !strings.Contains(lines[1], `"line":2`) ||
		!strings.Contains(lines[1], `"raw_base64":"bm90IGpzb24g/w=="`) {
		t.Errorf("dead letters:\n%s", got)
	}
}

// Two hosts' logs of one source overlap in time: replay merges them by
// event time, so a burst split across them is one window.
func TestReplayMergesFilesOfOneSourceByDefault(t *testing.T) {
	dir := t.TempDir()
	rule := filepath.Join(dir, "r.yaml")
	os.WriteFile(rule, []byte("rules:\n  - id: errors\n    source: requests\n    where: 'status >= 500'\n    group_by: [org_id]\n    window: 1m\n    threshold: '>= 3'\n"), 0o644)
	line := func(ts, id string, status int) string {
		return fmt.Sprintf(`{"ts":"2026-11-22T%sZ","request_id":"%s","org_id":"o","ip":"192.0.2.1","method":"GET","route":"/x","operation":"data","status":%d}`+"\n", ts, id, status)
	}
	a, b := filepath.Join(dir, "host-a.jsonl"), filepath.Join(dir, "host-b.jsonl")
	os.WriteFile(a, []byte(line("18:00:00", "a1", 500)+line("18:20:00", "a2", 500)), 0o644)
	os.WriteFile(b, []byte(line("18:05:00", "b1", 500)+line("18:05:01", "b2", 503)+line("18:05:02", "b3", 502)), 0o644)
	for _, tt := range []struct {
		args   []string
		alerts int
	}{{nil, 1}, {[]string{"--merge=false"}, 0}} {
		var out, errOut bytes.Buffer
		args := append(append([]string{"replay", "-q"}, tt.args...), "--rules", rule, "--requests", a, "--requests", b)
		if code := run(args, &out, &errOut); code != 0 {
			t.Fatalf("%v: exit %d: %s", tt.args, code, errOut.String())
		}
		if n := strings.Count(out.String(), "\n"); n != tt.alerts {
			t.Errorf("%v: %d alerts, want %d:\n%s", tt.args, n, tt.alerts, out.String())
		}
	}
}
