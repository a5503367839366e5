// Package ruletest runs rule unit-test files (docs/rule-tests.md), in the
// spirit of `promtool test rules`: each test lists input events and the
// complete list of alerts they must produce. The package loads and checks
// test files (every problem reported as file:line:col, like the rule
// loader), turns their events into records decoded by event.Decoder, runs
// them through a fresh detector per test and compares the alerts with the
// expected ones, producing a readable diff for each failing test.
//
// It uses the same decoder, rule loader and detector as `vigil replay` and
// the daemon, so a passing test means the same alerts in production. It
// reads test and rule files only and never prints on its own: the command
// line decides where results go.
package ruletest

import (
	"github.com/vigil-sec/vigil/internal/yamlpos"

	"fmt"
	"os"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
)

// DefaultStart is the base of relative times when a test file names no `start`.
var DefaultStart = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxRepeat bounds an event's `repeat`, so a typo cannot exhaust memory.
const MaxRepeat = 100000

// File is a loaded test file whose events have been built and decoded.
type File struct {
	Path string
	// RuleFiles are the rule files and directories to test, resolved
	// against the test file's directory.
	RuleFiles []string
	// Start is the base of relative times (`at: +30s`).
	Start time.Time
	// Namespaces is the namespace → data_classification table given to
	// the detector (detector.Config.Namespaces).
	Namespaces map[string]string
	Tests      []*Test
}

// Test is one named case: events in, alerts expected out.
type Test struct {
	Name string
	// Line is the line of the test's entry in its file.
	Line int
	// Events are decoded, own their memory and are sorted by event time
	// (stably, so events at the same time keep their file order).
	Events []event.Event
	// Expect is the complete list of alerts expected; empty means none.
	Expect []*Expect
}

// Expect is one entry of a test's `expect` list: it must match exactly
// Count alerts. Unset optional properties match any alert.
type Expect struct {
	Rule string
	// Group, when non-nil, must equal the alert's group exactly (same
	// fields, values compared as text).
	Group    map[string]string
	Severity rules.Severity // 0: any
	PHI      *bool
	Count    int
	At       *time.Time
	Value    *float64

	// Text is the entry as written, in YAML flow style, for diffs.
	Text   string
	Line   int
	Column int

	ruleLine, ruleCol   int
	groupLine, groupCol int
}

// Files expands test paths: files are taken as given, directories
// contribute every *.yaml and *.yml file directly inside, sorted (the same
// rule as rules.LoadFiles). A directory without test files is an error, so
// that a wrong path cannot pass by testing nothing.
func Files(paths ...string) ([]string, error) {
	return yamlpos.ExpandPaths("test", paths, true)
}

// Load reads and parses one test file. Problems come back as a
// rules.ErrorList with file:line:col positions.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, rules.ErrorList{{File: path, Msg: fmt.Sprintf("cannot read test file: %v", err)}}
	}
	return Parse(path, data)
}
