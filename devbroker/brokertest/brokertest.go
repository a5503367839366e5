// Package brokertest starts a devbroker for tests; it lives apart from
// devbroker so the vigil binary does not link the testing package.
package brokertest

import (
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/devbroker"
)

// Start starts an in-memory broker on a random port with the given
// topics (name → partitions) and registers t.Cleanup to close it. The broker
// accepts session timeouts down to 100ms, so readers in tests can use short
// timeouts; its warnings and errors go to t.Log. It fails the test if the
// broker cannot start.
func Start(t testing.TB, topics map[string]int32) *devbroker.Broker {
	t.Helper()
	tw := &testWriter{t: t}
	b, err := devbroker.Start(devbroker.Config{
		Topics:                 topics,
		GroupMinSessionTimeout: 100 * time.Millisecond,
		Logger:                 slog.New(slog.NewTextHandler(tw, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("devbroker: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("devbroker: %v", err)
		}
		tw.stop()
	})
	return b
}

// testWriter forwards log lines to t.Log until the test's cleanup runs;
// calling t.Log after a test has finished panics.
type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

var _ io.Writer = (*testWriter)(nil)

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(trimNewline(p)))
	}
	return len(p), nil
}

func (w *testWriter) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

func trimNewline(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		return p[:n-1]
	}
	return p
}
