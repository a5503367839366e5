package backtest

import (
	"bufio"
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/traffic"
)

// memSource is a Source over events held in memory, in the order
// storage.Store.History gives: by time, requests first, then by id.
type memSource struct{ events []event.Event }

func (m *memSource) History(ctx context.Context, from, to time.Time, fn func([]event.Event) error) (int, error) {
	lo, _ := slices.BinarySearchFunc(m.events, from.UnixNano(), func(e event.Event, ts int64) int { return cmpInt(e.TS, ts) })
	hi, _ := slices.BinarySearchFunc(m.events, to.UnixNano(), func(e event.Event, ts int64) int { return cmpInt(e.TS, ts) })
	batch := make([]event.Event, 0, 1000)
	n := 0
	for i := lo; i < hi; i += len(batch) {
		batch = append(batch[:0], m.events[i:min(i+cap(batch), hi)]...) // copies: the detector enriches in place
		if err := fn(batch); err != nil {
			return n, err
		}
		n += len(batch)
	}
	return n, nil
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// sortEvents puts events in History's order.
func sortEvents(es []event.Event) {
	slices.SortFunc(es, func(a, b event.Event) int {
		if c := cmpInt(a.TS, b.TS); c != 0 {
			return c
		}
		if a.Source != b.Source {
			return int(a.Source) - int(b.Source)
		}
		return bytes.Compare([]byte(a.ID), []byte(b.ID))
	})
}

// decodeLines decodes the valid lines of a JSON-lines log.
func decodeLines(t testing.TB, src event.Source, data []byte) []event.Event {
	t.Helper()
	var out []event.Event
	var dec event.Decoder
	var e event.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 2<<20)
	for sc.Scan() {
		if dec.Decode(src, sc.Bytes(), &e) == nil {
			out = append(out, e.Clone())
		}
	}
	return out
}

// generated is traffic.Generate's output for cfg, decoded and sorted.
type generated struct {
	manifest *traffic.Manifest
	events   []event.Event
	from, to time.Time
}

var (
	genMu    sync.Mutex
	genCache = map[string]*generated{}
)

// generate runs the traffic generator once per name for the test binary.
func generate(t testing.TB, name string, cfg traffic.Config) *generated {
	t.Helper()
	genMu.Lock()
	defer genMu.Unlock()
	if g := genCache[name]; g != nil {
		return g
	}
	var req, aud bytes.Buffer
	m, err := traffic.Generate(cfg, &req, &aud)
	if err != nil {
		t.Fatal(err)
	}
	g := &generated{manifest: m, from: m.Start, to: m.End}
	g.events = append(decodeLines(t, event.Requests, req.Bytes()), decodeLines(t, event.Audit, aud.Bytes())...)
	// The generator places a dormant key's previous use months back; a
	// backtest over the span does not see it.
	g.events = slices.DeleteFunc(g.events, func(e event.Event) bool { return e.TS < m.Start.UnixNano() })
	sortEvents(g.events)
	genCache[name] = g
	return g
}

func loadRules(t testing.TB, paths ...string) *rules.Set {
	t.Helper()
	set, err := rules.LoadFiles(paths...)
	if err != nil {
		t.Fatal(err)
	}
	return set
}
