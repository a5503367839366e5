package ruletest

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/rules"
)

// ruleTestErrorForm is the text of one problem: `name:L:C: message` with
// L, C ≥ 1, or `name: message` for the whole file, on one line.
func ruleTestErrorForm(name string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `(:[1-9][0-9]*:[1-9][0-9]*)?: [^\n]+$`)
}

// fuzzEventBudget is the most events an input may ask for before
// FuzzRuleTestFile skips it. repeat (≤ MaxRepeat) times the entries of the
// events and tests lists, which YAML aliases multiply, has no bound of its
// own: 200 bytes can ask for a million events and gigabytes of memory.
const fuzzEventBudget = 20000

// repeatValue matches a repeat key and its value as written.
var repeatValue = regexp.MustCompile(`repeat["']?[ \t]*:[ \t]*["']?([^\s,}\]#"']*)`)

// eventUpperBound estimates from the raw bytes how many events a test file
// can build: the repeats it writes (MaxRepeat for one that does not read
// as an integer, such as an alias), one each for the other events, times
// the square of the list entries aliases can add.
func eventUpperBound(data []byte) int64 {
	total := int64(bytes.Count(data, []byte("source")))
	for _, m := range repeatValue.FindAllSubmatch(data, -1) {
		lit := strings.TrimPrefix(strings.ReplaceAll(string(m[1]), "_", ""), "+")
		v, err := strconv.ParseInt(lit, 0, 64)
		if err != nil || v > MaxRepeat || v < 0 {
			v = MaxRepeat
		}
		total += v
	}
	if bytes.Contains(data, []byte("repeat")) && total == 0 {
		total = MaxRepeat // a repeat key the pattern does not read
	}
	aliases := int64(bytes.Count(data, []byte("*")) + 1)
	return total * aliases * aliases
}

// addRuleTestSeeds adds the shipped rule pack's unit tests and this
// package's test files, with their rule_files made absolute so that they
// resolve wherever the fuzzed file is said to be, and every repeat cut to
// at most 50 so that the fuzzer spends its time on the format rather than
// on building thousands of events.
func addRuleTestSeeds(f *testing.F) {
	f.Helper()
	var files []string
	for _, pattern := range []string{"../configs/rules/tests/*.yaml", "../configs/examples/*.test.yaml", "testdata/*.test.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		f.Fatal("no seed files found: run the test from the ruletest directory")
	}
	ruleFiles := regexp.MustCompile(`(?m)^rule_files: \[([^\]]+)\]`)
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		dir, err := filepath.Abs(filepath.Dir(name))
		if err != nil {
			f.Fatal(err)
		}
		data = ruleFiles.ReplaceAllFunc(data, func(m []byte) []byte {
			var abs []string
			for _, p := range strings.Split(string(ruleFiles.FindSubmatch(m)[1]), ",") {
				abs = append(abs, strconv.Quote(filepath.Join(dir, strings.TrimSpace(p))))
			}
			return []byte("rule_files: [" + strings.Join(abs, ", ") + "]")
		})
		data = repeatValue.ReplaceAllFunc(data, func(m []byte) []byte {
			v, err := strconv.Atoi(string(repeatValue.FindSubmatch(m)[1]))
			if err != nil || v <= 50 {
				return m
			}
			return []byte("repeat: 50")
		})
		f.Add(data)
	}
}

// FuzzRuleTestFile checks that Parse never panics on any bytes, that every
// problem is reported as file:line:col on one line like the rule loader's,
// that a parsed file holds what File documents (named tests, events in time
// order, counts of at least one), and that running a parsed file through
// the detector does not panic either.
func FuzzRuleTestFile(f *testing.F) {
	addRuleTestSeeds(f)
	name := filepath.Join(f.TempDir(), "fuzz.test.yaml")
	form := ruleTestErrorForm(name)

	f.Fuzz(func(t *testing.T, data []byte) {
		// rule_files are read from disk: keep the fuzzer away from devices
		// and kernel files that never end (/dev/zero, /proc/kmsg).
		for _, p := range []string{"/dev", "/proc", "/sys"} {
			if bytes.Contains(data, []byte(p)) {
				t.Skip("names a device or kernel file")
			}
		}
		if n := eventUpperBound(data); n > fuzzEventBudget {
			t.Skipf("may build up to %d events, over the budget of %d", n, fuzzEventBudget)
		}

		file, err := Parse(name, data)
		if err != nil {
			if file != nil {
				t.Fatalf("a file together with the error %v", err)
			}
			list, ok := err.(rules.ErrorList)
			if !ok || len(list) == 0 {
				t.Fatalf("got %T %v, want a non-empty rules.ErrorList", err, err)
			}
			for _, e := range list {
				if !form.MatchString(e.Error()) {
					t.Fatalf("problem %q is not of the form %s:L:C: message on one line", e.Error(), name)
				}
			}
			return
		}
		if file == nil || file.Path != name || len(file.RuleFiles) == 0 || len(file.Tests) == 0 {
			t.Fatalf("parsed file is incomplete: %+v", file)
		}
		for _, tc := range file.Tests {
			if strings.TrimSpace(tc.Name) == "" || tc.Line < 1 {
				t.Fatalf("test %q at line %d: want a name and a line ≥ 1", tc.Name, tc.Line)
			}
			for i := 1; i < len(tc.Events); i++ {
				if tc.Events[i].TS < tc.Events[i-1].TS {
					t.Fatalf("test %q: event %d at %d comes after one at %d", tc.Name, i, tc.Events[i].TS, tc.Events[i-1].TS)
				}
			}
			for _, x := range tc.Expect {
				if x.Rule == "" || x.Count < 1 || x.Line < 1 || x.Column < 1 {
					t.Fatalf("test %q: expectation %+v: want a rule, a count ≥ 1 and a position", tc.Name, x)
				}
			}
		}
		results, err := file.Run()
		if err != nil {
			if err.Error() == "" {
				t.Fatalf("Run failed with an empty message (%T)", err)
			}
			return
		}
		if len(results) != len(file.Tests) {
			t.Fatalf("Run returned %d results for %d tests", len(results), len(file.Tests))
		}
		var out bytes.Buffer
		for _, r := range results {
			if err := r.Write(&out); err != nil {
				t.Fatalf("writing the result of %q: %v", r.Name, err)
			}
		}
	})
}
