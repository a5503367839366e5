package rules

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// fuzzRuleFile is the name FuzzParseRules gives every input; errors must
// carry it.
const fuzzRuleFile = "fuzz.yaml"

// ruleErrorForm is the text of one error: `name:L:C: message` with L, C ≥ 1,
// or `name: message` for a problem with the whole file. The message is one
// line, so that editors and CI logs can read an ErrorList line by line.
var ruleErrorForm = regexp.MustCompile(`^` + regexp.QuoteMeta(fuzzRuleFile) + `(:[1-9][0-9]*:[1-9][0-9]*)?: [^\n]+$`)

// addRuleSeeds adds the shipped rule pack, its unit tests and the bad rule
// files pinned in testdata as seeds: the fuzzer starts from every kind of
// rule and every kind of error.
func addRuleSeeds(f *testing.F) {
	f.Helper()
	var files []string
	for _, pattern := range []string{"../configs/rules/*.yaml", "../configs/rules/tests/*.yaml", "../configs/examples/*.yaml", "testdata/*.yaml"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		f.Fatal("no seed files found: run the test from the rules directory")
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(""))
	f.Add([]byte("rules: []\n"))
	f.Add([]byte("rules:\n  - id: a\n    source: requests\n    where: |\n      status >= 500 and\n      route == '/x'\n    window: 1m\n    threshold: '> 1'\n"))
	f.Add([]byte("rules:\n  - &r {id: a, source: audit, dormant: {field: api_key_id, idle: 1d}}\n  - *r\n"))
}

// FuzzParseRules checks that Parse never panics on any bytes, that every
// problem it reports is positioned in the file (or names the whole file)
// in the form editors read, that parsing is deterministic, and that a
// rule's Hash — which decides whether a reload keeps the rule's state — is
// the same on a second parse and does not depend on the file's name.
func FuzzParseRules(f *testing.F) {
	addRuleSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, errs := Parse(fuzzRuleFile, data)
		for _, e := range errs {
			if e.File != fuzzRuleFile {
				t.Fatalf("error names file %q, want %q: %v", e.File, fuzzRuleFile, e)
			}
			positioned := e.Line >= 1 && e.Column >= 1
			wholeFile := e.Line == 0 && e.Column == 0
			if !positioned && !wholeFile {
				t.Fatalf("error at line %d, column %d: want both ≥ 1, or both 0 for the whole file: %q", e.Line, e.Column, e.Error())
			}
			if !ruleErrorForm.MatchString(e.Error()) {
				t.Fatalf("error %q is not of the form %s:L:C: message or %s: message", e.Error(), fuzzRuleFile, fuzzRuleFile)
			}
		}
		for _, r := range rs {
			if r.ID == "" || r.Source == 0 || r.Kind == 0 || r.Hash == "" {
				t.Fatalf("returned an incomplete rule: id %q, source %v, kind %v, hash %q", r.ID, r.Source, r.Kind, r.Hash)
			}
			if r.File != fuzzRuleFile || r.Line < 1 {
				t.Fatalf("rule %q at %s:%d, want %s and a line ≥ 1", r.ID, r.File, r.Line, fuzzRuleFile)
			}
		}

		again, againErrs := Parse(fuzzRuleFile, data)
		if got, want := againErrs.Error(), errs.Error(); got != want {
			t.Fatalf("a second parse reports different problems:\nfirst:\n%s\nsecond:\n%s", want, got)
		}
		renamed, _ := Parse("elsewhere/renamed.yaml", data)
		if len(again) != len(rs) || len(renamed) != len(rs) {
			t.Fatalf("a second parse returned %d rules and a parse under another name %d, the first %d", len(again), len(renamed), len(rs))
		}
		for i, r := range rs {
			if again[i].ID != r.ID || again[i].Hash != r.Hash || again[i].FileHash != r.FileHash {
				t.Fatalf("rule %d: first parse %q hash %s (file %s), second %q hash %s (file %s)",
					i, r.ID, r.Hash, r.FileHash, again[i].ID, again[i].Hash, again[i].FileHash)
			}
			if renamed[i].Hash != r.Hash {
				t.Fatalf("rule %q: hash %s under %s but %s under another name; moving a file must not reset rule state",
					r.ID, r.Hash, fuzzRuleFile, renamed[i].Hash)
			}
		}
	})
}
