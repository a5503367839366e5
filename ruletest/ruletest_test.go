package ruletest

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/rules"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// inline is the name inline test files get: beside testdata/rules.yaml, so
// that `rule_files: [rules.yaml]` finds it.
const inline = "testdata/inline.test.yaml"

// header starts every inline test file.
const header = `rule_files: [rules.yaml]
start: 2026-11-22T18:00:00Z
defaults:
  requests: {org_id: org_1, ip: 198.51.100.23, method: POST, route: /v1/auth/token, operation: metadata, status: 401}
  audit: {org_id: org_1, actor_id: user_1, actor_type: user, action: auth.login, resource_type: session, status: failure}
`

func mustParse(t *testing.T, src string) *File {
	t.Helper()
	f, err := Parse(inline, []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return f
}

func mustRun(t *testing.T, f *File) []*Result {
	t.Helper()
	res, err := f.Run()
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

func report(res []*Result) string {
	var b bytes.Buffer
	for _, r := range res {
		r.Write(&b)
	}
	return b.String()
}

func TestAPassingFilePassesEveryTest(t *testing.T) {
	f, err := Load("testdata/passing.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	res := mustRun(t, f)
	if len(res) != 4 {
		t.Fatalf("got %d results, want 4", len(res))
	}
	for _, r := range res {
		if !r.Passed() {
			t.Errorf("test %q failed:\n%s", r.Name, report([]*Result{r}))
		}
	}
}

// The diff of every kind of failure is pinned in testdata/failing.diff.
func TestFailingTestsPrintTheDiffInTheGoldenFile(t *testing.T) {
	f, err := Load("testdata/failing.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := report(mustRun(t, f))
	const golden = "testdata/failing.diff"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("missing golden file (run go test ./ruletest -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (run go test ./ruletest -update after checking it)\n--- got\n%s--- want\n%s", golden, got, want)
	}
}

func TestProblemsInTestFilesAreReportedWithPositions(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string // the file: the header, then this
		file string // the whole file instead, when set
		want []string
	}{
		{
			name: "an unknown top-level key names its position and the closest key",
			body: "test:\n  - name: x\n",
			want: []string{
				`testdata/inline.test.yaml:1:1: missing required key "tests" (a list of test cases)`,
				`testdata/inline.test.yaml:6:1: unknown key "test" (did you mean "tests"?)`,
			},
		},
		{
			name: "unknown keys in tests, events and expectations are all reported",
			body: `tests:
  - name: x
    event: []
    events:
      - {source: requests, repeats: 3}
    expect:
      - {rule: failed-logins, cout: 2}
`,
			want: []string{
				`testdata/inline.test.yaml:8:5: unknown key "event" (did you mean "events"?)`,
				`testdata/inline.test.yaml:10:28: unknown key "repeats" (did you mean "repeat"?)`,
				`testdata/inline.test.yaml:12:31: unknown key "cout" (did you mean "count"?)`,
			},
		},
		{
			name: "an event field of the wrong type points at the value",
			body: `tests:
  - name: x
    events:
      - source: requests
      - source: requests
        fields: {status: "401"}
`,
			want: []string{`testdata/inline.test.yaml:11:26: event 2: field "status": want integer, got string`},
		},
		{
			name: "a bad value from the defaults points at the defaults",
			body: `tests:
  - name: x
    defaults:
      requests: {ip: 10.0.0.300}
    events:
      - source: requests
`,
			want: []string{`testdata/inline.test.yaml:9:22: event 1: field "ip": "10.0.0.300" is not an IPv4 or IPv6 address`},
		},
		{
			name: "a required field set to null points at the null",
			body: `tests:
  - name: x
    events:
      - source: audit
        fields: {actor_id: null}
`,
			want: []string{`testdata/inline.test.yaml:10:28: event 1: missing required field "actor_id"`},
		},
		{
			name: "a missing required field points at the event",
			file: `rule_files: [rules.yaml]
tests:
  - name: x
    events:
      - source: requests
        fields: {request_id: r1}
`,
			want: []string{`testdata/inline.test.yaml:5:9: event 1: missing required field "org_id"`},
		},
		{
			name: "event fields outside the schema are errors with a suggestion",
			body: `tests:
  - name: x
    events:
      - {source: requests, fields: {staus: 200, ts: 5}}
`,
			want: []string{
				`testdata/inline.test.yaml:9:37: event 1: unknown requests field "staus" (did you mean "status"?)`,
				`testdata/inline.test.yaml:9:49: event 1: ts is set by the event's at (relative to start) or ts (absolute), not among its fields`,
			},
		},
		{
			name: "times and repeats are checked",
			body: `tests:
  - name: x
    events:
      - {source: requests, at: 30}
      - {source: requests, at: +1s, ts: 2026-11-22T18:00:00Z}
      - {source: requests, ts: yesterday}
      - {source: requests, repeat: 0}
      - {source: requests, every: 1s}
      - {source: dns}
`,
			want: []string{
				`testdata/inline.test.yaml:9:32: event 1: at must be a duration relative to start such as +30s, 5m or 1d2h: invalid duration "30" (use e.g. 90s, 5m, 1h30m, 7d)`,
				`testdata/inline.test.yaml:10:37: event 2: give either at (relative to start) or ts (absolute), not both`,
				`testdata/inline.test.yaml:11:32: event 3: ts must be an RFC 3339 time such as 2026-11-22T18:00:30Z, got "yesterday"`,
				`testdata/inline.test.yaml:12:36: event 4: repeat must be a whole number from 1 to 100000`,
				`testdata/inline.test.yaml:13:28: event 5: every is the spacing between repeats and needs repeat`,
				`testdata/inline.test.yaml:14:18: event 6: source must be requests or audit`,
			},
		},
		{
			name: "expectations are checked",
			body: `tests:
  - name: x
    expect:
      - {severity: urgent, count: 0, phi: maybe, at: later, value: many}
  - name: x
`,
			want: []string{
				`testdata/inline.test.yaml:9:9: missing required key "rule" (the id of the rule expected to fire)`,
				`testdata/inline.test.yaml:9:20: unknown severity "urgent": use critical, high, medium, low or 1-4`,
				`testdata/inline.test.yaml:9:35: count must be a whole number of at least 1 (alerts not listed in expect already fail the test)`,
				`testdata/inline.test.yaml:9:43: phi must be true or false`,
				`testdata/inline.test.yaml:9:54: at must be a duration relative to start such as +50s, or an RFC 3339 time, got "later"`,
				`testdata/inline.test.yaml:9:68: value must be a number`,
				`testdata/inline.test.yaml:10:5: duplicate test name "x" (first used on line 7)`,
			},
		},
		{
			name: "a missing rule file is reported where it is named",
			file: "rule_files: [nope.yaml]\ntests: [{name: x}]\n",
			want: []string{`testdata/inline.test.yaml:1:14: rule_files: testdata/nope.yaml: no such file or directory`},
		},
		{
			name: "a rule file passed by mistake is recognised",
			file: "rules:\n  - id: x\n",
			want: []string{`testdata/inline.test.yaml:1:1: this is a rule file, not a test file: pass test files or their directory (docs/rule-tests.md)`},
		},
		{
			name: "namespaces must map to a classification",
			body: "namespaces: {ns_1: SECRET}\ntests: [{name: x}]\n",
			want: []string{`testdata/inline.test.yaml:6:20: namespace "ns_1": data_classification must be PUBLIC, INTERNAL, CONFIDENTIAL or PHI`},
		},
		{
			// yaml.v3 reports the line before the flow sequence that is
			// not closed (its context mark, 0-based); pinned as it is.
			name: "broken YAML is reported with the line yaml gives",
			body: "tests:\n  - name: [x\n",
			want: []string{`testdata/inline.test.yaml:6:1: invalid YAML: did not find expected ',' or ']'`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := header + tc.body
			if tc.file != "" {
				src = tc.file
			}
			_, err := Parse(inline, []byte(src))
			var list rules.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("Parse = %v, want an ErrorList", err)
			}
			got := strings.Split(list.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors differ\n--- got\n%s\n--- want\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestExpectationsThatCannotMatchTheRulesAreErrors(t *testing.T) {
	for _, tc := range []struct {
		name, expect, want string
	}{
		{
			name:   "an unknown rule id suggests the closest",
			expect: "{rule: failed-login}",
			want:   `testdata/inline.test.yaml:9:16: expect: no rule "failed-login" in testdata/rules.yaml (did you mean "failed-logins"?)`,
		},
		{
			name:   "a group must name exactly the rule's group fields",
			expect: "{rule: failed-logins, group: {ip: 1.2.3.4, org_id: org_1}}",
			want:   `testdata/inline.test.yaml:9:38: expect: group of rule "failed-logins" must name exactly ip`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustParse(t, header+"tests:\n  - name: x\n    expect:\n      - "+tc.expect+"\n")
			_, err := f.Run()
			if err == nil || err.Error() != tc.want {
				t.Errorf("Run = %v\nwant %s", err, tc.want)
			}
		})
	}
}

func TestEventsAreBuiltFromDefaultsFieldsAndTimes(t *testing.T) {
	start := time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)
	type ev struct {
		id, ip, status string
		at             time.Duration // after start
	}
	for _, tc := range []struct {
		name   string
		events string // the test's body
		want   []ev
	}{
		{
			name:   "repeat with every spaces copies and numbers their ids",
			events: "    events:\n      - {source: requests, at: +1m, repeat: 3, every: 1500ms}\n",
			want: []ev{
				{"1-1", "198.51.100.23", "401", time.Minute},
				{"1-2", "198.51.100.23", "401", time.Minute + 1500*time.Millisecond},
				{"1-3", "198.51.100.23", "401", time.Minute + 3*time.Second},
			},
		},
		{
			name:   "repeat without every puts every copy at the same time",
			events: "    events:\n      - {source: requests, repeat: 2}\n",
			want:   []ev{{"1-1", "198.51.100.23", "401", 0}, {"1-2", "198.51.100.23", "401", 0}},
		},
		{
			name: "relative and absolute times mix and events are sorted stably by time",
			events: `    events:
      - {source: requests, at: 1d, fields: {ip: 10.0.0.1}}
      - {source: requests, ts: 2026-11-22T19:00:00+01:00, fields: {ip: 10.0.0.2}}
      - {source: requests, at: +2h30m, fields: {ip: 10.0.0.3}}
      - {source: requests, fields: {ip: 10.0.0.4}}
      - {source: requests, ts: 2026-11-22T18:00:00.25Z, fields: {ip: 10.0.0.5}}
`,
			want: []ev{
				{"1-2", "10.0.0.2", "401", 0},
				{"1-4", "10.0.0.4", "401", 0},
				{"1-5", "10.0.0.5", "401", 250 * time.Millisecond},
				{"1-3", "10.0.0.3", "401", 150 * time.Minute},
				{"1-1", "10.0.0.1", "401", 24 * time.Hour},
			},
		},
		{
			name: "test defaults override file defaults and fields override both",
			events: `    defaults:
      requests: {ip: 203.0.113.9, status: 500}
    events:
      - {source: requests}
      - {source: requests, fields: {status: 403, request_id: req_own}}
`,
			want: []ev{{"1-1", "203.0.113.9", "500", 0}, {"req_own", "203.0.113.9", "403", 0}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := mustParse(t, header+"tests:\n  - name: x\n"+tc.events)
			var got []ev
			for _, e := range f.Tests[0].Events {
				got = append(got, ev{e.ID, e.IP, strconv.FormatInt(e.Status, 10), time.Duration(e.TS - start.UnixNano())})
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d events %v, want %d", len(got), got, len(tc.want))
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("event %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestTestsPassOnlyWhenTheAlertsAreExactlyTheExpectedOnes(t *testing.T) {
	for _, tc := range []struct {
		name       string
		test       string // the test's body after its name
		pass       bool
		unexpected int
	}{
		{
			name: "expect [] passes when nothing fires",
			test: "    events: [{source: requests, repeat: 2}]\n    expect: []\n",
			pass: true,
		},
		{
			name: "expect [] fails when an alert fires",
			test: "    events: [{source: requests, repeat: 3}]\n    expect: []\n",
			pass: false, unexpected: 1,
		},
		{
			name: "an absent expect means no alerts too",
			test: "    events: [{source: requests, repeat: 3}]\n",
			pass: false, unexpected: 1,
		},
		{
			name: "an entry with the rule alone matches its alert",
			test: "    events: [{source: requests, repeat: 3}]\n    expect: [{rule: failed-logins}]\n",
			pass: true,
		},
		{
			name: "count must be met exactly: more alerts than the count fail",
			test: "    events: [{source: requests, repeat: 3}, {source: requests, at: +2m, repeat: 3}]\n    expect: [{rule: failed-logins}]\n",
			pass: false, unexpected: 1,
		},
		{
			name: "count covers several alerts",
			test: "    events: [{source: requests, repeat: 3}, {source: requests, at: +2m, repeat: 3}]\n    expect: [{rule: failed-logins, count: 2}]\n",
			pass: true,
		},
		{
			name: "alerts are claimed greedily in entry order",
			test: "    events: [{source: requests, repeat: 3}, {source: requests, at: +2m, repeat: 3}]\n    expect: [{rule: failed-logins, at: +2m}, {rule: failed-logins}]\n",
			pass: true,
		},
		{
			name: "a group value is compared as text",
			test: "    events: [{source: requests, repeat: 3}]\n    expect: [{rule: failed-logins, group: {ip: '198.51.100.23'}, value: 3.0000000001}]\n",
			pass: true,
		},
		{
			name: "a wrong group value does not match",
			test: "    events: [{source: requests, repeat: 3}]\n    expect: [{rule: failed-logins, group: {ip: 198.51.100.24}}]\n",
			pass: false, unexpected: 1,
		},
		{
			name: "severity may be given as a number",
			test: "    events: [{source: requests, repeat: 3}]\n    expect: [{rule: failed-logins, severity: 3}]\n",
			pass: true,
		},
		{
			name: "a namespace classified PHI in the table makes the alert PHI and one level more severe",
			test: "    events: [{source: requests, repeat: 3, fields: {namespace: ns_phi_1}}]\n    expect: [{rule: failed-logins, phi: true, severity: high}]\n",
			pass: true,
		},
		{
			name: "a namespace missing from the table leaves the alert as it was",
			test: "    events: [{source: requests, repeat: 3, fields: {namespace: ns_other}}]\n    expect: [{rule: failed-logins, phi: false, severity: medium}]\n",
			pass: true,
		},
		{
			name: "a PHI alert does not match an entry expecting phi: false",
			test: "    events: [{source: requests, repeat: 3, fields: {namespace: ns_phi_1}}]\n    expect: [{rule: failed-logins, phi: false}]\n",
			pass: false, unexpected: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := strings.Replace(header, "defaults:", "namespaces: {ns_phi_1: PHI}\ndefaults:", 1) +
				"tests:\n  - name: x\n" + tc.test
			res := mustRun(t, mustParse(t, src))
			r := res[0]
			if r.Passed() != tc.pass || len(r.Unexpected) != tc.unexpected {
				t.Errorf("passed %v with %d unexpected alerts, want %v with %d\n%s",
					r.Passed(), len(r.Unexpected), tc.pass, tc.unexpected, report(res))
			}
		})
	}
}

func TestDirectoriesExpandToTheirYAMLFiles(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"b.test.yaml", "a.yml", "notes.txt"} {
		if err := os.WriteFile(dir+"/"+name, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(dir+"/sub.yaml", 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Files(dir, "testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{dir + "/a.yml", dir + "/b.test.yaml", "testdata/rules.yaml"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Files = %v, want %v", got, want)
	}
	if _, err := Files(t.TempDir()); err == nil {
		t.Error("an empty directory expanded without error")
	}
}
