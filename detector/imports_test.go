package detector

import (
	"go/build"
	"strings"
	"testing"
)

// The detector is pure computation: no I/O packages, no Kafka, no
// ClickHouse, no responders. (docs/architecture.md)
func TestDetectorImportsNoIO(t *testing.T) {
	forbidden := []string{"net", "net/http", "os", "database/sql", "github.com/segmentio/kafka-go",
		"github.com/ClickHouse/clickhouse-go/v2", "github.com/vigil-sec/vigil/ingest",
		"github.com/vigil-sec/vigil/storage", "github.com/vigil-sec/vigil/responders"}
	checkImports(t, "github.com/vigil-sec/vigil/detector", forbidden)
	checkImports(t, "github.com/vigil-sec/vigil/event", append(forbidden, "github.com/vigil-sec/vigil/rules", "github.com/vigil-sec/vigil/detector"))
	checkImports(t, "github.com/vigil-sec/vigil/rules", append(forbidden[3:], "github.com/vigil-sec/vigil/detector"))
}

func checkImports(t *testing.T, pkg string, forbidden []string) {
	t.Helper()
	p, err := build.Import(pkg, ".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range p.Imports {
		for _, f := range forbidden {
			// Standard-library entries match exactly (net/netip is fine).
			if imp == f || (strings.Contains(f, ".") && strings.HasPrefix(imp, f+"/")) {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
}
