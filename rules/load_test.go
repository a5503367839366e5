package rules

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
)

var update = flag.Bool("update", false, "rewrite testdata/*.errors golden files")

// Every testdata/*.bad.yaml is rejected with exactly the messages pinned in
// the .errors file beside it.
func TestBadRuleFilesReportEveryProblemWithPosition(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	if len(files) == 0 {
		t.Fatal("no testdata/*.bad.yaml files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := LoadFiles(f)
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("LoadFiles(%s) = %v, want an ErrorList", f, err)
			}
			got := list.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".errors"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("missing golden file (run go test ./rules -update): %v", err)
			}
			if got != string(want) {
				t.Errorf("errors differ\n--- got\n%s--- want\n%s", got, want)
			}
			for _, e := range list {
				if e.Line == 0 || e.Column == 0 {
					t.Errorf("error without position: %v", e)
				}
			}
		})
	}
}

func TestDuplicateIDsAcrossFilesAreRejected(t *testing.T) {
	dir := t.TempDir()
	body := "rules:\n  - id: dup\n    source: requests\n    window: 1m\n    threshold: '> 1'\n"
	for _, name := range []string{"a.yaml", "b.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := LoadFiles(dir)
	if err == nil || !strings.Contains(err.Error(), "b.yaml:2:9: duplicate rule id \"dup\" (first defined at "+filepath.Join(dir, "a.yaml")+":2)") {
		t.Fatalf("got %v", err)
	}
}

func TestEveryKindLoadsWithDefaults(t *testing.T) {
	src := `rules:
  - id: auth-failure-burst
    description: Many failed authentications from one address
    source: requests
    where: 'status in [401, 403]'
    group_by: [ip]
    window: 1m
    aggregate: count
    threshold: '> 50'
    severity: medium
    labels: {team: edge}
    actions: [block_ip]
  - id: org-request-spike
    source: requests
    group_by: [org_id]
    window: 1m
    aggregate: count
    anomaly: {baseline: 1h, z: 6, min: 200}
  - id: admin-key-new-address
    source: audit
    where: 'key_permission == "ADMIN"'
    new_value: {field: ip, per: [api_key_id], remember: 30d, learn: 24h}
  - id: dormant-key-reactivated
    source: requests
    dormant: {field: api_key_id, idle: 90d}
  - id: key-created-then-mass-delete
    source: audit
    sequence:
      by: [actor_id]
      within: 10m
      steps:
        - where: 'action == "api_key.create"'
        - where: 'action endsWith ".delete"'
          threshold: '>= 5'
  - id: exfil-ratio
    source: requests
    window: 5m
    aggregate: ratio(status >= 500)
    min_events: 20
    threshold: '>= 0.5'
    severity: 2
    phi_escalation: false
    cooldown: 0
`
	rs, errs := Parse("inline.yaml", []byte(src))
	if len(errs) > 0 {
		t.Fatalf("unexpected errors:\n%v", errs)
	}
	if len(rs) != 6 {
		t.Fatalf("got %d rules", len(rs))
	}
	tests := []struct {
		name  string
		check func(*Rule) bool
	}{
		{"threshold gets its window as cooldown", func(r *Rule) bool {
			return r.Kind == Threshold && r.Cooldown == time.Minute && r.Threshold.Text == "> 50"
		}},
		{"anomaly parses its baseline", func(r *Rule) bool {
			return r.Kind == Anomaly && r.Anomaly.Baseline == time.Hour && r.Anomaly.Z == 6 && r.Anomaly.Min == 200 && r.Severity == Medium
		}},
		{"new_value groups by per then field", func(r *Rule) bool {
			f := r.GroupFields()
			return r.Kind == NewValue && len(f) == 2 && f[0].Name == "api_key_id" && f[1].Name == "ip" && r.NewValue.Learn == 24*time.Hour
		}},
		{"dormant reads days", func(r *Rule) bool { return r.Kind == Dormant && r.Dormant.Idle == 90*24*time.Hour && r.Cooldown == 0 }},
		{"sequence defaults its cooldown to within", func(r *Rule) bool {
			return r.Kind == Sequence && len(r.Sequence.Steps) == 2 && r.Sequence.Steps[0].Count.Text == ">= 1" && r.Cooldown == 10*time.Minute
		}},
		{"ratio with min_events, numeric severity and cooldown 0", func(r *Rule) bool {
			return r.Aggregate.Op == Ratio && r.MinEvents == 20 && r.Severity == High && !r.PHIEscalation && r.Cooldown == 0
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !tt.check(rs[i]) {
				t.Errorf("rule %s: %+v", rs[i].ID, rs[i])
			}
		})
	}
	if rs[0].Source != event.Requests || rs[0].Labels["team"] != "edge" || rs[0].Actions[0] != "block_ip" || rs[0].Hash == "" {
		t.Errorf("rule 0: %+v", rs[0])
	}
	if rs[1].Actions != nil {
		t.Errorf("a rule without actions must leave them to the severity policy, got %v", rs[1].Actions)
	}
}

func TestHashChangesOnlyWithTheRule(t *testing.T) {
	a := "rules:\n  - id: x\n    source: requests\n    window: 1m\n    threshold: '> 1'\n"
	b := "# a comment\nrules:\n  - id: x\n    source: requests\n    window: 1m\n    threshold: '> 1'\n"
	c := "rules:\n  - id: x\n    source: requests\n    window: 1m\n    threshold: '> 2'\n"
	h := func(s string) string {
		rs, errs := Parse("f.yaml", []byte(s))
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return rs[0].Hash
	}
	if h(a) != h(b) {
		t.Error("a comment outside the rule changed its hash")
	}
	if h(a) == h(c) {
		t.Error("a changed threshold kept the hash")
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"90d", 90 * 24 * time.Hour, true},
		{"1d12h", 36 * time.Hour, true},
		{"0.5d", 12 * time.Hour, true},
		{"d", 0, false},
		{"-1d", 0, false},
		{"5x", 0, false},
		{"", 0, false},
		{"1d-1h", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseCondition(t *testing.T) {
	tests := []struct {
		in   string
		text string
		v    float64
		ok   bool
	}{
		{"> 50", "> 50", 51, true},
		{">=5", ">=5", 5, true},
		{"<= 0.5", "<= 0.5", 0.5, true},
		{"== 3", "== 3", 3, true},
		{" < 1e3 ", "< 1e3", 999, true},
		{"50", "", 0, false},
		{"> fifty", "", 0, false},
		{"=> 5", "", 0, false},
	}
	for _, tt := range tests {
		c, err := ParseCondition(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseCondition(%q) err = %v", tt.in, err)
			continue
		}
		if tt.ok && (c.Text != tt.text || !c.Holds(tt.v)) {
			t.Errorf("ParseCondition(%q) = %+v", tt.in, c)
		}
	}
}

func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	f.Add([]byte("rules:\n  - id: a\n    source: audit\n    sequence: {within: 1m, steps: [{where: 'true'}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, errs := Parse("fuzz.yaml", data)
		for _, e := range errs {
			if e.File != "fuzz.yaml" {
				t.Fatalf("error without file: %v", e)
			}
		}
		if len(errs) == 0 {
			for _, r := range rs {
				if r.ID == "" || r.Source == 0 || r.Kind == 0 {
					t.Fatalf("accepted an incomplete rule: %+v", r)
				}
			}
		}
	})
}

func TestZeroCooldownInAnySpelling(t *testing.T) {
	for _, c := range []string{"0", "0s", "0m", "0ms", "0h0m", "0d"} {
		src := "rules:\n  - id: r\n    source: requests\n    window: 1m\n    threshold: '> 1'\n    cooldown: " + c + "\n"
		rs, errs := Parse("c.yaml", []byte(src))
		if len(errs) > 0 || len(rs) != 1 || rs[0].Cooldown != 0 {
			t.Errorf("cooldown: %s: rules %v, errors %v; want one rule with no cooldown", c, rs, errs)
		}
	}
}

func TestMergeKeysShareSettingsBetweenRules(t *testing.T) {
	src := `x-auth: &auth
  source: requests
  where: 'status in [401, 403]'
  window: 1m
  severity: high
rules:
  - <<: *auth
    id: by-ip
    group_by: [ip]
    threshold: '> 50'
  - <<: [*auth]
    id: by-key
    group_by: [api_key_id]
    threshold: '> 20'
    severity: critical
`
	rs, errs := Parse("m.yaml", []byte(src))
	if len(errs) > 0 || len(rs) != 2 {
		t.Fatalf("rules %v, errors:\n%v", rs, errs)
	}
	if rs[0].Severity != High || rs[0].Window != time.Minute || rs[0].WhereText == "" || rs[1].Severity != Critical {
		t.Errorf("merged rules: %+v / %+v", rs[0], rs[1])
	}
	_, errs = Parse("m.yaml", []byte("defaults: {}\nrules:\n  - <<: 1\n    id: r\n    source: requests\n    threshold: '> 1'\n    window: 1m\n"))
	want := "m.yaml:1:1: unknown key \"defaults\" (allowed here: rules, and x-… keys to hold YAML anchors)\n" +
		"m.yaml:3:9: << (a YAML merge key) takes a mapping or a list of mappings, e.g. <<: *defaults"
	if got := errs.Error(); got != want {
		t.Errorf("errors:\n%s\nwant:\n%s", got, want)
	}
}
