package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/config"
	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/rules"
)

func TestConfigCheckCommand(t *testing.T) {
	dir := t.TempDir()
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("rules: {paths: ["+abs("../../replay/testdata/rules.yaml")+"]}\n"), 0o644)
	badRules := filepath.Join(dir, "bad-rules.yaml")
	os.WriteFile(badRules, []byte("rules: {paths: ["+abs("../../rules/testdata/bad-id.bad.yaml")+"]}\n"), 0o644)
	badKey := filepath.Join(dir, "bad-key.yaml")
	os.WriteFile(badKey, []byte("kafka: {grup_id: x}\nrules: {paths: [r]}\n"), 0o644)
	tests := []struct {
		name string
		args []string
		code int
		out  string
	}{
		{"a valid config and its rules pass", []string{"check", good}, 0, "ok: " + good + " (5 rules from 1 files)"},
		{"rule problems are reported with positions", []string{"check", badRules}, 1, "bad-id.bad.yaml:2:9: invalid rule id"},
		{"config problems name the key", []string{"check", badKey}, 1, `bad-key.yaml:1:9: kafka: unknown key "grup_id" (did you mean "group_id"?)`},
		{"a missing file is reported", []string{"check", filepath.Join(dir, "nope.yaml")}, 1, "no such file"},
		{"no file is a usage error", []string{"check"}, 2, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if code := run(append([]string{"config"}, tt.args...), &out, &errOut); code != tt.code {
				t.Fatalf("exit %d, want %d: %s %s", code, tt.code, out.String(), errOut.String())
			}
			if !strings.Contains(out.String(), tt.out) {
				t.Errorf("output %q lacks %q", out.String(), tt.out)
			}
		})
	}
}

func TestPolicyKeepsTheDefaultsOfSeveritiesLeftOut(t *testing.T) {
	cfg, err := config.Parse("c.yaml", []byte("rules: {paths: [r]}\nresponders:\n  policy:\n    critical: [open_incident, block_ip]\n    medium: []\n"), os.LookupEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := detector.Policy{rules.Critical: {"open_incident", "block_ip"}, rules.High: {"open_incident", "revoke_key", "watch"},
		rules.Medium: {}, rules.Low: {}}
	if got := policy(cfg); !reflect.DeepEqual(got, want) {
		t.Errorf("policy = %v, want %v", got, want)
	}
}
