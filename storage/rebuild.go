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

// ReplaySlice is how much event time Replay hands over at once when a
// table holds several partitions; replayChunk how many offsets when it
// holds one.
const (
	ReplaySlice = 30 * time.Second
	replayChunk = 10000
)

// Replay streams the stored events that were committed — rows whose Kafka
// offset is below the group's committed offset of their partition — from
// the last `lookback` of event time, to fn. It is how a restarted daemon
// rebuilds its detection state without counting the uncommitted tail twice
// (Kafka redelivers that). A table fed by a single partition comes in its
// arrival (offset) order, so the rebuilt state is the one the daemon had;
// with several partitions rows come in slices of ReplaySlice of event time,
// ordered within a slice by topic, partition and offset, so the caller can
// merge each partition's run by event time as it does live. The two tables
// are independent streams (rules read one source each). Partitions without
// a commit contribute nothing.
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
	rargs := append([]any{newest.Add(-lookback)}, args...)
	open := func(table, cols string) (driver.Rows, error) {
		// A table fed by one partition replays in offset order — exactly
		// the order its records first arrived in, out-of-order event times
		// included — in chunks of offsets. Several partitions have no
		// single arrival order: they replay in slices of event time, each
		// partition's run in offset order, merged like a live batch.
		var parts uint64
		if err := s.conn.QueryRow(ctx, "SELECT uniqExact(topic, partition) FROM "+s.db+"."+table+
			" WHERE ts >= ? AND ("+cond+")", rargs...).Scan(&parts); err != nil {
			return nil, err
		}
		slice := "intDiv(toUnixTimestamp64Milli(ts), " + fmt.Sprint(ReplaySlice.Milliseconds()) + ")"
		if parts <= 1 {
			slice = "toInt64(intDiv(offset, " + fmt.Sprint(replayChunk) + "))"
		}
		return s.conn.Query(ctx, "SELECT "+slice+" AS slice, topic, partition, offset, "+cols+" FROM "+s.db+"."+table+
			" FINAL WHERE ts >= ? AND ("+cond+") ORDER BY slice, topic, partition, offset", rargs...)
	}
	reqRows, err := open("request_events", requestSelect)
	if err != nil {
		return 0, fmt.Errorf("clickhouse: rebuild: %w", err)
	}
	defer reqRows.Close()
	audRows, err := open("audit_events", auditSelect)
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
