package storage

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vigil-sec/vigil/event"
)

// replaySlice is about how much event time Replay hands over at once.
const replaySlice = 30 * time.Second

// Replay streams the stored events that were committed — rows whose Kafka
// offset is below the group's committed offset of their partition — from
// the last `lookback` of event time, to fn. It is how a restarted daemon
// rebuilds its detection state without counting the uncommitted tail twice
// (Kafka redelivers that).
//
// Each partition's rows come in offset order — the order they first
// arrived in, out-of-order event times included — so the caller can merge
// partitions exactly as it did live. For bounded memory the partitions
// advance together: each is cut into the same number of slices of
// consecutive offsets (about replaySlice of event time each, assuming a
// steady rate), and fn gets slice after slice, each holding every
// partition's rows of that slice, partition after partition. Partitions
// without a commit contribute nothing.
func (s *Store) Replay(ctx context.Context, committed map[string]map[int]int64, lookback time.Duration, fn func([]event.Event, []Origin)) (int, error) {
	cond, args := committedCondition(committed)
	if cond == "" {
		return 0, nil
	}
	var newest time.Time
	q := "SELECT greatest((SELECT max(ts) FROM " + s.db + ".request_events WHERE " + cond + "), " +
		"(SELECT max(ts) FROM " + s.db + ".audit_events WHERE " + cond + "))"
	if err := s.conn.QueryRow(ctx, q, append(append([]any{}, args...), args...)...).Scan(&newest); err != nil {
		return 0, fmt.Errorf("clickhouse: rebuild: newest committed event: %w", err)
	}
	if newest.IsZero() || newest.Unix() <= 0 {
		return 0, nil
	}
	cutoff := newest.Add(-lookback)
	rargs := append([]any{cutoff}, args...)
	// Per partition: its first offset, row count and oldest event, to cut
	// it into runs of consecutive offsets.
	type span struct {
		topic        string
		partition    uint32
		first, count uint64
		oldest       time.Time
	}
	spansOf := func(table string) ([]span, error) {
		rows, err := s.conn.Query(ctx, "SELECT topic, partition, min(offset), count(), min(ts) FROM "+s.db+"."+table+
			" WHERE ts >= ? AND ("+cond+") GROUP BY topic, partition ORDER BY topic, partition", rargs...)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var spans []span
		for rows.Next() {
			var sp span
			if err := rows.Scan(&sp.topic, &sp.partition, &sp.first, &sp.count, &sp.oldest); err != nil {
				return nil, err
			}
			spans = append(spans, sp)
		}
		return spans, rows.Err()
	}
	reqSpans, err := spansOf("request_events")
	if err != nil {
		return 0, fmt.Errorf("clickhouse: rebuild: %w", err)
	}
	audSpans, err := spansOf("audit_events")
	if err != nil {
		return 0, fmt.Errorf("clickhouse: rebuild: %w", err)
	}
	oldest := newest
	for _, sp := range append(reqSpans, audSpans...) {
		if sp.oldest.Before(oldest) {
			oldest = sp.oldest
		}
	}
	// The same number of slices for every partition of both tables, so
	// slice k is about the same stretch of event time everywhere.
	nSlices := uint64(newest.Sub(oldest)/replaySlice) + 1
	open := func(table, cols string, spans []span) (driver.Rows, error) {
		slice, sargs := "0", []any{}
		if len(spans) > 0 {
			var b strings.Builder
			b.WriteString("multiIf(")
			for _, sp := range spans {
				per := max(1, (sp.count+nSlices-1)/nSlices)
				b.WriteString("topic = ? AND partition = ?, toInt64(intDiv(offset - ?, ?)), ")
				sargs = append(sargs, sp.topic, sp.partition, sp.first, per)
			}
			b.WriteString("0)")
			slice = b.String()
		}
		return s.conn.Query(ctx, "SELECT "+slice+" AS slice, topic, partition, offset, "+cols+" FROM "+s.db+"."+table+
			" FINAL WHERE ts >= ? AND ("+cond+") ORDER BY slice, topic, partition, offset", append(sargs, rargs...)...)
	}
	reqRows, err := open("request_events", requestSelect, reqSpans)
	if err != nil {
		return 0, fmt.Errorf("clickhouse: rebuild: %w", err)
	}
	defer reqRows.Close()
	audRows, err := open("audit_events", auditSelect, audSpans)
	if err != nil {
		return 0, fmt.Errorf("clickhouse: rebuild: %w", err)
	}
	defer audRows.Close()

	streams := []*replayStream{{rows: reqRows, scan: scanRequest}, {rows: audRows, scan: scanAudit}}
	for _, st := range streams {
		if err := st.advance(); err != nil {
			return 0, err
		}
	}
	n := 0
	var events []event.Event
	var origins []Origin
	for {
		cur := int64(-1)
		for _, st := range streams {
			if st.ok && (cur < 0 || st.slice < cur) {
				cur = st.slice
			}
		}
		if cur < 0 {
			return n, nil
		}
		events, origins = events[:0], origins[:0]
		for _, st := range streams {
			for st.ok && st.slice == cur {
				events = append(events, st.ev)
				origins = append(origins, st.origin)
				if err := st.advance(); err != nil {
					return n, err
				}
			}
		}
		n += len(events)
		fn(events, origins)
	}
}

// replayStream is one table's ordered rows with a one-row lookahead.
type replayStream struct {
	rows   driver.Rows
	scan   func(driver.Rows, *event.Event, ...any) error
	ok     bool
	slice  int64
	origin Origin
	ev     event.Event
}

func (st *replayStream) advance() error {
	st.ok = st.rows.Next()
	if !st.ok {
		if err := st.rows.Err(); err != nil {
			return fmt.Errorf("clickhouse: rebuild: %w", err)
		}
		return nil
	}
	var part uint32
	var off uint64
	st.ev = event.Event{}
	if err := st.scan(st.rows, &st.ev, &st.slice, &st.origin.Topic, &part, &off); err != nil {
		return fmt.Errorf("clickhouse: rebuild: %w", err)
	}
	st.origin.Partition, st.origin.Offset = int32(part), int64(off)
	return nil
}

// committedCondition builds a parameterised filter selecting rows below
// each partition's committed offset; values are never spliced into SQL.
func committedCondition(committed map[string]map[int]int64) (string, []any) {
	var parts []string
	var args []any
	topics := make([]string, 0, len(committed))
	for t := range committed {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	for _, t := range topics {
		ps := make([]int, 0, len(committed[t]))
		for p := range committed[t] {
			ps = append(ps, p)
		}
		sort.Ints(ps)
		for _, p := range ps {
			parts = append(parts, "(topic = ? AND partition = ? AND offset < ?)")
			args = append(args, t, uint32(p), uint64(committed[t][p]))
		}
	}
	return strings.Join(parts, " OR "), args
}

const (
	requestSelect = "ts, request_id, org_id, api_key_id, key_permission, ip, country, method, route, path, " +
		"operation, namespace, data_classification, status, bytes_in, bytes_out, latency_ms, user_agent"
	auditSelect = "ts, event_id, org_id, actor_id, actor_type, api_key_id, key_permission, ip, action, " +
		"resource_type, resource_id, namespace, data_classification, status, changes"
)

func scanRequest(rows driver.Rows, e *event.Event, head ...any) error {
	var ts time.Time
	var status uint16
	var bin, bout uint64
	e.Source = event.Requests
	dest := append(head, &ts, &e.ID, &e.OrgID, &e.APIKeyID, &e.KeyPermission, &e.IP, &e.Country, &e.Method, &e.Route,
		&e.Path, &e.Operation, &e.Namespace, &e.DataClassification, &status, &bin, &bout, &e.LatencyMs, &e.UserAgent)
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	e.TS, e.Status, e.BytesIn, e.BytesOut = ts.UnixNano(), int64(status), int64(bin), int64(bout)
	return nil
}

func scanAudit(rows driver.Rows, e *event.Event, head ...any) error {
	var ts time.Time
	var changes string
	e.Source = event.Audit
	dest := append(head, &ts, &e.ID, &e.OrgID, &e.ActorID, &e.ActorType, &e.APIKeyID, &e.KeyPermission, &e.IP, &e.Action,
		&e.ResourceType, &e.ResourceID, &e.Namespace, &e.DataClassification, &e.Outcome, &changes)
	if err := rows.Scan(dest...); err != nil {
		return err
	}
	e.TS = ts.UnixNano()
	if changes != "" {
		e.Changes = []byte(changes)
	}
	return nil
}
