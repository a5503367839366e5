// Package yamlpos holds the helpers shared by Vigil's strict YAML loaders
// (rule files, rule test files, configuration): walking yaml.v3 nodes,
// reporting unknown and duplicate keys with suggestions, positions of
// syntax errors, and expanding file and directory arguments. It knows
// nothing of what the files mean.
package yamlpos

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Entry is one key of a mapping and its value (aliases resolved).
type Entry struct {
	Key, Value *yaml.Node
}

// Report receives one problem positioned at a node.
type Report func(n *yaml.Node, msg string)

// Mapping returns a mapping node's entries by key, reporting keys that are
// not plain strings, duplicates, and keys outside allowed (nil allows any).
// YAML merge keys (`<<: *base`, or a list of anchors) add the entries of
// the mappings they name that the mapping does not set itself.
func Mapping(n *yaml.Node, allowed map[string]bool, report Report) map[string]Entry {
	out := map[string]Entry{}
	if n.Kind != yaml.MappingNode {
		return out
	}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], Resolve(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			report(k, "keys must be plain strings")
			continue
		}
		if _, dup := out[k.Value]; dup {
			report(k, fmt.Sprintf("duplicate key %q", k.Value))
			continue
		}
		if allowed != nil && !allowed[k.Value] {
			report(k, fmt.Sprintf("unknown key %q%s", k.Value, Suggest(k.Value, SortedKeys(allowed))))
			continue
		}
		out[k.Value] = Entry{k, v}
	}
	for _, m := range merges {
		// In a list of mappings, the first to set a key wins.
		srcs := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			srcs = m.Content
		}
		for _, src := range srcs {
			if src = Resolve(src); src.Kind != yaml.MappingNode {
				report(src, "<< (a YAML merge key) takes a mapping or a list of mappings, e.g. <<: *defaults")
				continue
			}
			for key, e := range Mapping(src, allowed, report) {
				if _, set := out[key]; !set {
					out[key] = e
				}
			}
		}
	}
	return out
}

// Resolve follows YAML aliases (*anchor) to the node they name.
func Resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n is an explicit null (`~`, `null` or empty).
func IsNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// SortedKeys lists a key set in order.
func SortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Suggest names the closest allowed word — preferring one that starts
// like the typo, then the first in order — or lists them all.
func Suggest(word string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		d := editDistance(word, a)
		if d < bestD || (d == bestD && best != "" && word != "" && a[0] == word[0] && best[0] != word[0]) {
			best, bestD = a, d
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return " (allowed here: " + strings.Join(allowed, ", ") + ")"
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// SyntaxError splits a yaml.v3 parse error into the line it names and the
// message. yaml.v3 names the line where the enclosing block starts, which
// is at or before the actual problem.
func SyntaxError(err error) (line int, msg string) {
	s := err.Error()
	if m := yamlLine.FindStringSubmatch(s); m != nil {
		line, _ = strconv.Atoi(m[1])
		return line, m[2]
	}
	return 1, strings.TrimPrefix(s, "yaml: ")
}

// ExpandPaths turns file and directory arguments into files: files as
// given, directories contribute every *.yaml and *.yml file directly
// inside, sorted. what names the files in messages ("rule", "test").
// With requireFiles, a directory without YAML files is an error.
func ExpandPaths(what string, paths []string, requireFiles bool) ([]string, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("no %s files given: pass %s files or directories", what, what)
	}
	var files []string
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s path %s: %w", what, p, err)
		}
		if !st.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("%s directory %s: %w", what, p, err)
		}
		var found []string
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml") {
				found = append(found, filepath.Join(p, e.Name()))
			}
		}
		if len(found) == 0 && requireFiles {
			return nil, errors.New(what + " directory " + p + " holds no *.yaml or *.yml files")
		}
		sort.Strings(found)
		files = append(files, found...)
	}
	return files, nil
}
