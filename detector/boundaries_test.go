package detector

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Kafka types stay in ingest (and the dev broker), ClickHouse types in
// storage: no other package may import their client libraries, apart from
// the dev broker and the ClickHouse test-server helper. (docs/architecture.md)
func TestClientLibrariesStayInTheirPackages(t *testing.T) {
	owners := map[string][]string{
		"github.com/segmentio/kafka-go":        {"ingest", "devbroker"},
		"github.com/twmb/franz-go":             {"devbroker"},
		"github.com/ClickHouse/clickhouse-go/": {"storage", "internal/chtest"},
		"github.com/cloudflare/cloudflare-go":  {"responders/cloudflare"},
		"github.com/getsentry/sentry-go":       {"responders/sentry"},
	}
	root := ".."
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for lib, allowed := range owners {
				if !strings.HasPrefix(p, lib) {
					continue
				}
				ok := false
				for _, a := range allowed {
					if rel == a || strings.HasPrefix(rel, a+"/") {
						ok = true
					}
				}
				if !ok {
					t.Errorf("%s imports %s; only %v may", path, p, allowed)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
