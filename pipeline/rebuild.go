package pipeline

import (
	"context"
	"slices"
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

// Rebuild feeds the detector the committed events of the last lookback so
// that a restarted daemon continues windows, baselines, cooldowns and
// partial sequences where it stopped. Call it before Run. The events go
// through the same merge by event time as live ones, and the last of them
// wait there for the records Kafka redelivers (those after the committed
// offsets), so that state evolves exactly as it did before the restart.
// The alerts rebuilt events re-derive were stored before the restart and
// are dropped; only redelivered records produce alerts.
func (p *Pipeline) Rebuild(ctx context.Context, h History, committed map[string]map[int]int64, lookback time.Duration) (int, error) {
	// Partitions with nothing after their committed offset must not hold
	// the rebuilt events back.
	p.refreshPositions(ctx)
	drop := func(*detector.Alert) {}
	return h.Replay(ctx, committed, lookback, func(events []event.Event, origins []storage.Origin) {
		events = slices.Clone(events) // Replay reuses its slice; the reorderer may keep these
		for i := range events {
			q := p.single.order.queue(events[i].Source, origins[i].Topic, origins[i].Partition)
			p.single.order.push(q, item{ev: &events[i], origin: origins[i], kafka: origins[i].Offset, at: events[i].TS, rebuilt: true})
		}
		if p.single.order.waiting() && time.Since(p.positionsAt) >= positionsEvery {
			p.refreshPositions(ctx)
		}
		_, _ = p.releaseTo(p.single, nil, drop)
	})
}
