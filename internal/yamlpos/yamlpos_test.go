package yamlpos

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestMappingReportsUnknownAndDuplicateKeys(t *testing.T) {
	var doc yaml.Node
	src := "base: &b {x: 1}\nwindow: 1m\nwindw: 2m\nwindow: 3m\nref: *b\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	m := Mapping(doc.Content[0], map[string]bool{"base": true, "window": true, "ref": true}, func(n *yaml.Node, msg string) {
		got = append(got, strings.Join([]string{itoa(n.Line), itoa(n.Column), msg}, ":"))
	})
	want := []string{`3:1:unknown key "windw" (did you mean "window"?)`, `4:1:duplicate key "window"`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q", got)
	}
	if m["window"].Value.Value != "1m" || m["ref"].Value.Kind != yaml.MappingNode {
		t.Errorf("entries %+v", m)
	}
}

func itoa(n int) string { return string(rune('0' + n)) }

func TestSuggest(t *testing.T) {
	tests := []struct{ word, want string }{
		{"windw", ` (did you mean "window"?)`},
		{"cnt", ` (did you mean "count"?)`},
		{"zzzzzz", " (allowed here: at, count, window)"},
	}
	for _, tt := range tests {
		if got := Suggest(tt.word, []string{"at", "count", "window"}); got != tt.want {
			t.Errorf("Suggest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
}

func TestExpandPaths(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"b.yaml", "a.yml", "c.txt"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	os.Mkdir(filepath.Join(dir, "tests"), 0o755)
	files, err := ExpandPaths("rule", []string{dir}, true)
	if err != nil || len(files) != 2 || filepath.Base(files[0]) != "a.yml" {
		t.Errorf("got %v, %v", files, err)
	}
	if _, err := ExpandPaths("test", []string{filepath.Join(dir, "tests")}, true); err == nil {
		t.Error("an empty directory must be an error when files are required")
	}
	if _, err := ExpandPaths("rule", nil, false); err == nil || !strings.Contains(err.Error(), "no rule files given") {
		t.Errorf("err = %v", err)
	}
	if _, err := ExpandPaths("rule", []string{filepath.Join(dir, "nope")}, false); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}

func TestSyntaxError(t *testing.T) {
	var n yaml.Node
	err := yaml.Unmarshal([]byte("a: [1\n"), &n)
	line, msg := SyntaxError(err)
	if line < 1 || msg == "" || strings.HasPrefix(msg, "yaml:") {
		t.Errorf("line %d msg %q", line, msg)
	}
}
