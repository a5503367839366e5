package ruletest

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/internal/yamlpos"
	"github.com/vigil-sec/vigil/rules"
)

// Result is the outcome of one test.
type Result struct {
	File string
	Name string
	Line int
	// Entries are the test's expect entries with how many alerts each
	// matched, in file order.
	Entries []EntryResult
	// Unexpected are the alerts no entry claimed, in detector order.
	Unexpected []*detector.Alert
}

// EntryResult is one expect entry and the number of alerts it matched.
type EntryResult struct {
	*Expect
	Matched int
}

// Passed reports whether every entry matched exactly its count and every
// alert was expected.
func (r *Result) Passed() bool {
	for _, e := range r.Entries {
		if e.Matched != e.Count {
			return false
		}
	}
	return len(r.Unexpected) == 0
}

// Write writes "PASS name" or "FAIL name"; a failure is followed by the
// difference between the expected and the actual alerts, indented:
// satisfied entries as context, `-` for entries not satisfied with how many
// alerts they matched, `+` for unexpected alerts as `vigil replay` prints them.
func (r *Result) Write(w io.Writer) error {
	bw := bufio.NewWriter(w)
	if r.Passed() {
		fmt.Fprintf(bw, "PASS %s\n", r.Name)
		return bw.Flush()
	}
	fmt.Fprintf(bw, "FAIL %s\n", r.Name)
	fmt.Fprintf(bw, "  --- expected (%s:%d)\n  +++ got\n", r.File, r.Line)
	for _, e := range r.Entries {
		if e.Matched == e.Count {
			fmt.Fprintf(bw, "    %s\n", e.Text)
			continue
		}
		fmt.Fprintf(bw, "  - %s  # line %d: matched %d of %d\n", e.Text, e.Line, e.Matched, e.Count)
	}
	var line []byte
	for _, a := range r.Unexpected {
		line = append(a.AppendJSON(append(line[:0], "  + "...)), '\n')
		bw.Write(line)
	}
	return bw.Flush()
}

// Run loads the file's rules and runs every test through a fresh detector.
// Rule file problems and expectations that cannot match the loaded rules
// (unknown rule id, group fields the rule does not group by) are returned
// as a rules.ErrorList, and no test runs.
func (f *File) Run() ([]*Result, error) {
	set, err := rules.LoadFiles(f.RuleFiles...)
	if err != nil {
		return nil, err
	}
	if err := f.check(set); err != nil {
		return nil, err
	}
	out := make([]*Result, 0, len(f.Tests))
	for _, t := range f.Tests {
		out = append(out, f.run(t, set.Rules))
	}
	return out, nil
}

// check verifies that every expect entry names a loaded rule and, when it
// gives a group, exactly the fields that rule groups by.
func (f *File) check(set *rules.Set) error {
	var errs rules.ErrorList
	for _, t := range f.Tests {
		for _, x := range t.Expect {
			r := set.ByID(x.Rule)
			if r == nil {
				ids := make([]string, len(set.Rules))
				for i, r := range set.Rules {
					ids[i] = r.ID
				}
				slices.Sort(ids)
				errs = append(errs, &rules.Error{File: f.Path, Line: x.ruleLine, Column: x.ruleCol,
					Msg: fmt.Sprintf("expect: no rule %q in %s%s", x.Rule, strings.Join(f.RuleFiles, ", "), yamlpos.Suggest(x.Rule, ids))})
				continue
			}
			if x.Group == nil {
				continue
			}
			var names []string
			for _, gf := range r.GroupFields() {
				names = append(names, gf.Name)
			}
			same := len(names) == len(x.Group)
			for _, n := range names {
				if _, ok := x.Group[n]; !ok {
					same = false
				}
			}
			if !same {
				want := "{}, as it has no groups"
				if len(names) > 0 {
					want = "exactly " + strings.Join(names, ", ")
				}
				errs = append(errs, &rules.Error{File: f.Path, Line: x.groupLine, Column: x.groupCol,
					Msg: fmt.Sprintf("expect: group of rule %q must name %s", r.ID, want)})
			}
		}
	}
	return errs.Err()
}

func (f *File) run(t *Test, rs []*rules.Rule) *Result {
	det := detector.New(rs, detector.Config{Namespaces: f.Namespaces, Shards: 1})
	defer det.Close()
	// The detector enriches events in place; keep the test's own copy clean.
	batch := slices.Clone(t.Events)
	var alerts []*detector.Alert
	det.ProcessBatch(batch, func(a *detector.Alert) { alerts = append(alerts, a) })

	res := &Result{File: f.Path, Name: t.Name, Line: t.Line}
	claimed := make([]bool, len(alerts))
	for _, x := range t.Expect {
		got := 0
		for i, a := range alerts {
			if got == x.Count {
				break
			}
			if !claimed[i] && x.Matches(a) {
				claimed[i] = true
				got++
			}
		}
		res.Entries = append(res.Entries, EntryResult{Expect: x, Matched: got})
	}
	for i, a := range alerts {
		if !claimed[i] {
			res.Unexpected = append(res.Unexpected, a)
		}
	}
	return res
}

// Matches reports whether the alert has every property the entry gives.
// Values are equal when they differ by at most one part in 10⁹, so that a
// ratio can be written with the digits that matter.
func (x *Expect) Matches(a *detector.Alert) bool {
	if a.Rule.ID != x.Rule {
		return false
	}
	if x.Group != nil {
		if len(a.Group) != len(x.Group) {
			return false
		}
		for _, g := range a.Group {
			if v, ok := x.Group[g.Field.Name]; !ok || v != g.Value {
				return false
			}
		}
	}
	switch {
	case x.Severity != 0 && a.Severity != x.Severity,
		x.PHI != nil && a.PHI != *x.PHI,
		x.At != nil && a.At != x.At.UnixNano():
		return false
	}
	if x.Value != nil {
		want, got := *x.Value, a.Value
		if want != got && math.Abs(want-got) > 1e-9*math.Max(math.Abs(want), math.Abs(got)) {
			return false
		}
	}
	return true
}
