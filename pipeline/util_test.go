package pipeline

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/ingest"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// drained reports whether the group has committed every record of the
// input topics: all stored and evaluated.
func drained(t testing.TB, c *ingest.Consumer) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	lag, err := c.Lag(ctx)
	if err != nil {
		return false
	}
	for _, ps := range lag {
		for _, l := range ps {
			if l > 0 {
				return false
			}
		}
	}
	return true
}
