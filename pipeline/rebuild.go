package pipeline

import (
	"context"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/storage"
)

// History replays stored, committed events in event-time order (a
// storage.Store).
type History interface {
	Replay(ctx context.Context, committed map[string]map[int]int64, lookback time.Duration, fn func([]event.Event, []storage.Origin)) (int, error)
}

// Rebuild feeds det the committed events of the last lookback so that a
// restarted daemon continues windows, baselines, cooldowns and partial
// sequences where it stopped. The alerts it re-derives were stored before
// the restart, so they are dropped here; only events after the committed
// offsets (redelivered by Kafka) produce new alerts.
func Rebuild(ctx context.Context, h History, committed map[string]map[int]int64, lookback time.Duration, det *detector.Detector) (int, error) {
	drop := func(*detector.Alert) {}
	return h.Replay(ctx, committed, lookback, func(events []event.Event, origins []storage.Origin) {
		// The same per-partition merge as live batches, so state evolves
		// as it did the first time.
		events, _ = mergeByTime(events, origins)
		det.ProcessBatch(events, drop)
	})
}
