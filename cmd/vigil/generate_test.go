package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateCommand(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		code       int
		stderrHave string
	}{
		{"no output directory is a usage error", []string{"--duration", "1m"}, 2, "usage: vigil generate"},
		{"an unknown attack is named", []string{"--out", "OUT", "--attacks", "key-guessing,telepathy"}, 2, `unknown attack "telepathy"`},
		{"a bad start time is a usage error", []string{"--out", "OUT", "--start", "yesterday"}, 2, "--start"},
		{"an attack that needs more time is reported as skipped", []string{"--out", "OUT", "--duration", "5m", "--attacks", "key-volume-spike"}, 0, "key-volume-spike       skipped: needs a span of at least"},
		{"help lists the attacks", []string{"-h"}, 2, "attacks: key-guessing, stolen-key-list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i, a := range tt.args {
				if a == "OUT" {
					tt.args[i] = t.TempDir()
				}
			}
			var out, errOut bytes.Buffer
			if code := run(append([]string{"generate"}, tt.args...), &out, &errOut); code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, errOut.String())
			}
			if !strings.Contains(errOut.String(), tt.stderrHave) {
				t.Errorf("stderr lacks %q:\n%s", tt.stderrHave, errOut.String())
			}
		})
	}
}

// TestGenerateThenReplay is the demo in small: generated traffic with a few
// attacks, replayed through the shipped pack, raises the alerts the
// manifest expects.
func TestGenerateThenReplay(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	args := []string{"generate", "--out", dir, "--start", "2026-11-23T14:00:00Z", "--duration", "20m", "--seed", "3",
		"--attacks", "metadata-ssrf,mass-delete,metrics-exposure", "--gzip", "--invalid", "2"}
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("generate: exit %d\n%s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "invalid") || !strings.Contains(errOut.String(), "metadata-ssrf") {
		t.Errorf("summary:\n%s", errOut.String())
	}
	data, err := os.ReadFile(filepath.Join(dir, "attacks.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Attacks []struct {
			Name  string   `json:"name"`
			Rules []string `json:"expected_rules"`
		} `json:"attacks"`
	}
	if err := json.Unmarshal(data, &m); err != nil || len(m.Attacks) != 3 {
		t.Fatalf("manifest: %v\n%s", err, data)
	}

	out.Reset()
	errOut.Reset()
	args = []string{"replay", "--rules", "../../configs/rules",
		"--requests", filepath.Join(dir, "requests.jsonl.gz"), "--audit", filepath.Join(dir, "audit.jsonl.gz")}
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("replay: exit %d\n%s", code, errOut.String())
	}
	for _, a := range m.Attacks {
		for _, r := range a.Rules {
			if !strings.Contains(out.String(), `{"rule":"`+r+`"`) {
				t.Errorf("attack %s: no %s alert in\n%s", a.Name, r, out.String())
			}
		}
	}
	if !strings.Contains(errOut.String(), "invalid lines: ") || strings.Contains(errOut.String(), "invalid lines: 0,") {
		t.Errorf("--invalid 2 gave no invalid lines:\n%s", errOut.String())
	}
}
