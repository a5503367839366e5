package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRulesTestCommand(t *testing.T) {
	rulesFile, err := filepath.Abs("../../ruletest/testdata/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.test.yaml")
	body := "rule_files: [" + rulesFile + "]\ntests:\n  - name: x\n    events:\n      - {source: requests, fields: {status: 200}}\n"
	if err := os.WriteFile(bad, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name       string
		args       []string
		code       int
		stdout     []string // each must appear, in this order
		lastLine   string   // the final line of stdout, when given
		stderrHave string
	}{
		{
			name:     "the shipped example tests pass",
			args:     []string{"../../configs/examples/example.test.yaml"},
			code:     0,
			stdout:   []string{"PASS a burst of 51 failures from one address fires once\n"},
			lastLine: "6 passed, 0 failed",
		},
		{
			name: "a failing file exits 1 and prints each failure's diff",
			args: []string{"../../ruletest/testdata/failing.test.yaml"},
			code: 1,
			stdout: []string{
				"FAIL an expected alert that does not come\n",
				"  - {rule: failed-logins, group: {ip: 198.51.100.23}}  # line 14: matched 0 of 1\n",
				"PASS this one passes\n",
			},
			lastLine: "1 passed, 5 failed",
		},
		{
			name:     "several files are run in the order given and counted together",
			args:     []string{"../../ruletest/testdata/passing.test.yaml", "../../ruletest/testdata/failing.test.yaml"},
			code:     1,
			stdout:   []string{"PASS three failures in a minute fire once\n", "FAIL an expected alert that does not come\n"},
			lastLine: "5 passed, 5 failed",
		},
		{
			name:       "a test file with problems exits 1 and prints them with positions",
			args:       []string{bad},
			code:       1,
			stdout:     []string{bad + `:5:9: event 1: missing required field "org_id"` + "\n"},
			lastLine:   "0 passed, 0 failed",
			stderrHave: "1 of 1 test file(s) could not run",
		},
		{
			name:       "no paths is a usage error",
			args:       nil,
			code:       2,
			stderrHave: "usage: vigil rules test PATH...",
		},
		{
			name:       "a path that does not exist is a usage error",
			args:       []string{"no/such/dir"},
			code:       2,
			stderrHave: "test path no/such/dir",
		},
		{
			name: "an unknown flag is a usage error",
			args: []string{"-x", "../../configs/rules/tests"},
			code: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(append([]string{"rules", "test"}, tc.args...), &stdout, &stderr)
			out := stdout.String()
			if code != tc.code {
				t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, out, stderr.String())
			}
			rest := out
			for _, s := range tc.stdout {
				i := strings.Index(rest, s)
				if i < 0 {
					t.Errorf("stdout lacks (in order) %q:\n%s", s, out)
					break
				}
				rest = rest[i+len(s):]
			}
			if tc.lastLine != "" {
				lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
				if last := lines[len(lines)-1]; last != tc.lastLine {
					t.Errorf("last line %q, want %q", last, tc.lastLine)
				}
			}
			if !strings.Contains(stderr.String(), tc.stderrHave) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderrHave, stderr.String())
			}
		})
	}
}
