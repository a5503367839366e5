package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vigil-sec/vigil/event"
)

// HistoryBatch is the most events History hands to its callback at once.
const HistoryBatch = 4096

// historySliceRows is about how many rows (both tables together) one slice
// of History reads with a single pair of queries. A slice is held and
// sorted in memory (about 400 bytes a row); slices are planned from hourly
// row counts. A variable for tests.
var historySliceRows uint64 = 50_000

// History streams every stored event with from <= ts < to to fn, in
// event-time order: the request and audit tables are read in slices of
// event time, each ordered by ts then id with redelivered duplicates
// dropped, and merged by ts, requests first on ties — the order `vigil
// replay` gives time-sorted files. fn receives batches of at most HistoryBatch events;
// the slice and its events are only valid during the call. Reading runs
// one batch ahead of fn, on its own goroutine. An error from fn stops
// History, which returns it. The count is the number of events handed to
// fn.
func (s *Store) History(ctx context.Context, from, to time.Time, fn func([]event.Event) error) (int, error) {
	from, to = from.UTC(), to.UTC()
	if !from.Before(to) {
		return 0, nil
	}
	plan, err := s.historySlices(ctx, from, to)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Two batches circulate: the reader fills one while fn works on the other.
	free := make(chan []event.Event, 2)
	full := make(chan []event.Event, 1)
	for range 2 {
		free <- make([]event.Event, 0, HistoryBatch)
	}
	readErr := make(chan error, 1)
	go func() {
		defer close(full)
		readErr <- s.readHistory(ctx, plan, free, full)
	}()

	n := 0
	var fnErr error
	for b := range full {
		if fnErr == nil {
			if fnErr = fn(b); fnErr != nil {
				cancel()
			}
			n += len(b)
		}
		free <- b[:0]
	}
	if err := <-readErr; fnErr == nil && err != nil {
		return n, err
	}
	return n, fnErr
}

// timeRange is one slice of event time, [from, to).
type timeRange struct{ from, to time.Time }

// historySlices cuts [from, to) into slices of about historySliceRows
// stored rows, from an hourly count of both tables (without FINAL: a
// redelivered duplicate only makes a slice a little smaller than planned).
// Quiet hours share a slice; an hour with more rows than a slice is cut
// into equal parts.
func (s *Store) historySlices(ctx context.Context, from, to time.Time) ([]timeRange, error) {
	q := "SELECT hour, sum(n) FROM (" +
		"SELECT toStartOfHour(ts) AS hour, count() AS n FROM " + s.db + ".request_events WHERE ts >= {from:DateTime64(3)} AND ts < {to:DateTime64(3)} GROUP BY hour " +
		"UNION ALL SELECT toStartOfHour(ts) AS hour, count() AS n FROM " + s.db + ".audit_events WHERE ts >= {from:DateTime64(3)} AND ts < {to:DateTime64(3)} GROUP BY hour" +
		") GROUP BY hour ORDER BY hour"
	rows, err := s.conn.Query(ctx, q, clickhouse.DateNamed("from", from, clickhouse.MilliSeconds),
		clickhouse.DateNamed("to", to, clickhouse.MilliSeconds))
	if err != nil {
		return nil, fmt.Errorf("clickhouse: history: counting events: %w", err)
	}
	defer rows.Close()
	var out []timeRange
	var cur timeRange
	var curRows uint64
	flush := func() {
		if curRows > 0 {
			out = append(out, cur)
		}
		curRows = 0
	}
	for rows.Next() {
		var hour time.Time
		var n uint64
		if err := rows.Scan(&hour, &n); err != nil {
			return nil, fmt.Errorf("clickhouse: history: counting events: %w", err)
		}
		lo, hi := maxTime(hour.UTC(), from), minTime(hour.UTC().Add(time.Hour), to)
		if n > historySliceRows {
			// A busy hour alone: cut it into parts of about a slice each.
			flush()
			parts := int64((n + historySliceRows - 1) / historySliceRows)
			step := hi.Sub(lo) / time.Duration(parts)
			step = max(step.Truncate(time.Millisecond), time.Millisecond)
			for t := lo; t.Before(hi); t = t.Add(step) {
				out = append(out, timeRange{t, minTime(t.Add(step), hi)})
			}
			continue
		}
		if curRows > 0 && curRows+n > historySliceRows {
			flush()
		}
		if curRows == 0 {
			cur.from = lo
		}
		cur.to = hi
		curRows += n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("clickhouse: history: counting events: %w", err)
	}
	flush()
	return out, nil
}

// readHistory merges the slices in order and hands full batches over,
// while the next slice loads.
func (s *Store) readHistory(ctx context.Context, plan []timeRange, free <-chan []event.Event, full chan<- []event.Event) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Two pairs of table buffers: one is merged while the other loads.
	spare := make(chan *historySlice, 2)
	for range 2 {
		spare <- &historySlice{
			req: &historyTable{table: "request_events", cols: requestSelect, scan: scanRequest},
			aud: &historyTable{table: "audit_events", cols: auditSelect, scan: scanAudit},
		}
	}
	loaded := make(chan *historySlice)
	loadErr := make(chan error, 1)
	go func() {
		defer close(loaded)
		for _, sl := range plan {
			var hs *historySlice
			select {
			case hs = <-spare:
			case <-ctx.Done():
				loadErr <- ctx.Err()
				return
			}
			if err := s.loadHistorySlice(ctx, hs, sl); err != nil {
				loadErr <- err
				return
			}
			select {
			case loaded <- hs:
			case <-ctx.Done():
				loadErr <- ctx.Err()
				return
			}
		}
		loadErr <- nil
	}()

	var batch []event.Event
	send := func() error {
		select {
		case full <- batch:
			batch = nil
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	add := func(e *event.Event) error {
		if batch == nil {
			select {
			case batch = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		batch = append(batch, *e)
		if len(batch) == cap(batch) {
			return send()
		}
		return nil
	}
	for hs := range loaded {
		// Merge by time; requests first on a tie, as replay merges its files.
		req, aud := hs.req.sorted, hs.aud.sorted
		for len(req) > 0 || len(aud) > 0 {
			var e *event.Event
			if len(aud) == 0 || len(req) > 0 && req[0].TS <= aud[0].TS {
				e, req = req[0], req[1:]
			} else {
				e, aud = aud[0], aud[1:]
			}
			if err := add(e); err != nil {
				cancel()
				for range loaded { // let the loader see the cancellation and stop
				}
				<-loadErr
				return err
			}
		}
		spare <- hs
	}
	if err := <-loadErr; err != nil {
		return err
	}
	if len(batch) > 0 {
		return send()
	}
	return nil
}

// historySlice is one slice of both tables.
type historySlice struct{ req, aud *historyTable }

// loadHistorySlice reads one slice of both tables at once.
func (s *Store) loadHistorySlice(ctx context.Context, hs *historySlice, sl timeRange) error {
	errs := make(chan error, 1)
	go func() { errs <- s.readHistoryTable(ctx, hs.aud, sl) }()
	err := s.readHistoryTable(ctx, hs.req, sl)
	return errors.Join(err, <-errs)
}

// historyTable is one table's rows of the current slice, sorted by time
// then id, duplicates dropped. Its buffers are reused from slice to slice.
type historyTable struct {
	table, cols string
	scan        func(driver.Rows, *event.Event, ...any) error
	rows        []event.Event
	sorted      []*event.Event
}

// readHistoryTable reads one slice of a table. The server only filters:
// sorting wide rows there is several times slower than sorting pointers
// here. A record stored twice (Kafka redelivery before the table merged
// it away) has the same time and id; one copy is kept, as FINAL would.
func (s *Store) readHistoryTable(ctx context.Context, t *historyTable, sl timeRange) error {
	rows, err := s.conn.Query(ctx, "SELECT "+t.cols+" FROM "+s.db+"."+t.table+
		" WHERE ts >= {from:DateTime64(3)} AND ts < {to:DateTime64(3)}",
		clickhouse.DateNamed("from", sl.from, clickhouse.MilliSeconds), clickhouse.DateNamed("to", sl.to, clickhouse.MilliSeconds))
	if err != nil {
		return fmt.Errorf("clickhouse: history: %s: %w", t.table, err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if n == len(t.rows) {
			t.rows = append(t.rows, event.Event{})
			t.rows = t.rows[:cap(t.rows)]
		}
		e := &t.rows[n]
		*e = event.Event{}
		if err := t.scan(rows, e); err != nil {
			return fmt.Errorf("clickhouse: history: %s: %w", t.table, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("clickhouse: history: %s: %w", t.table, err)
	}
	t.sorted = t.sorted[:0]
	for i := range n {
		t.sorted = append(t.sorted, &t.rows[i])
	}
	slices.SortFunc(t.sorted, func(a, b *event.Event) int {
		if a.TS != b.TS {
			return cmp.Compare(a.TS, b.TS)
		}
		return strings.Compare(a.ID, b.ID)
	})
	t.sorted = slices.CompactFunc(t.sorted, func(a, b *event.Event) bool { return a.TS == b.TS && a.ID == b.ID })
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
