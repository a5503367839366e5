package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/internal/chtest"
	"github.com/vigil-sec/vigil/rules"
)

func TestMain(m *testing.M) { chtest.Main(m) }

func openStore(t *testing.T) (*Store, string, string) {
	t.Helper()
	addr, db := chtest.NewDatabase(t)
	s, err := Open(context.Background(), Config{Addr: []string{addr}, Database: db, Username: "default"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, addr, db
}

func count(t *testing.T, s *Store, query string) uint64 {
	t.Helper()
	rows, err := s.conn.Query(context.Background(), query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var n uint64
	for rows.Next() {
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

var t0 = time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)

func records(n int, topic string) []Record {
	out := make([]Record, n)
	for i := range out {
		var e event.Event
		if i%4 == 3 {
			e = event.Event{Source: event.Audit, TS: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(), ID: fmt.Sprintf("evt_%d", i),
				OrgID: "org_1", ActorID: "user_1", ActorType: "user", Action: "document.read", ResourceType: "document",
				Outcome: "success", Changes: []byte(`{"a":[1,2]}`)}
		} else {
			e = event.Event{Source: event.Requests, TS: t0.Add(time.Duration(i) * time.Millisecond).UnixNano(), ID: fmt.Sprintf("req_%d", i),
				OrgID: "org_1", IP: "2001:db8::42", Method: "GET", Route: "/v1/x", Operation: "data", Status: 200,
				BytesOut: 100, LatencyMs: 1.5, Extra: []byte(`{"trace":"abc"}`)}
		}
		out[i] = Record{Event: &e, Origin: Origin{Topic: topic, Partition: int32(i % 3), Offset: int64(i)}}
	}
	return out
}

func TestMigrationsAreIdempotent(t *testing.T) {
	s, _, db := openStore(t)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("second migration run: %v", err)
	}
	if n := count(t, s, "SELECT count() FROM "+db+".schema_migrations FINAL"); n != uint64(len(migrations)) {
		t.Errorf("%d migrations recorded, want %d", n, len(migrations))
	}
}

// A redelivered batch (the daemon crashed after inserting, before
// committing) leaves one row per event.
func TestRedeliveredEventsAreAbsorbed(t *testing.T) {
	s, _, db := openStore(t)
	ctx := context.Background()
	recs := records(1000, "requests")
	if err := s.InsertEvents(ctx, recs, Token("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertEvents(ctx, recs, Token("a")); err != nil { // same batch retried
		t.Fatal(err)
	}
	if err := s.InsertEvents(ctx, recs[100:600], Token("b")); err != nil { // re-formed after a restart
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count() FROM "+db+".request_events FINAL"); n != 750 {
		t.Errorf("%d request rows after FINAL, want 750", n)
	}
	if n := count(t, s, "SELECT uniqExact(event_id) FROM "+db+".audit_events"); n != 250 {
		t.Errorf("%d distinct audit events, want 250", n)
	}
	if n := count(t, s, "SELECT count() FROM "+db+".request_events WHERE extra = '{\"trace\":\"abc\"}' AND ip = '2001:db8::42'"); n == 0 {
		t.Error("unknown fields or the address were not stored as given")
	}
}

func TestDeadLettersAndAlertsAreStored(t *testing.T) {
	s, _, db := openStore(t)
	ctx := context.Background()
	dls := []DeadLetter{{Source: event.Requests, Origin: Origin{"requests", 1, 42}, Reason: `missing required field "org_id"`, Raw: []byte(`{"x":1}`), ReceivedAt: t0}}
	if err := s.InsertDeadLetters(ctx, dls); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertDeadLetters(ctx, dls); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "SELECT count() FROM "+db+".dead_letters FINAL WHERE reason LIKE 'missing%'"); n != 1 {
		t.Errorf("%d dead letters, want 1", n)
	}
	rs, errs := rules.Parse("r.yaml", []byte("rules:\n  - id: r\n    source: requests\n    group_by: [ip]\n    window: 1m\n    threshold: '>= 1'\n    labels: {team: edge}\n"))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	en := detector.NewEngine(rs, detector.Config{})
	var alerts []*detector.Alert
	for _, r := range records(3, "requests")[:1] {
		en.Process(r.Event, func(a *detector.Alert) { alerts = append(alerts, a) })
	}
	for i := 0; i < 2; i++ { // stored twice: a restart re-fires the same alert
		if err := s.InsertAlerts(ctx, alerts); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(t, s, "SELECT count() FROM "+db+".alerts FINAL WHERE group_json = '{\"ip\":\"2001:db8::42\"}' AND labels['team'] = 'edge'"); n != 1 {
		t.Errorf("%d alerts, want 1", n)
	}
}

func TestErrorsAreClassified(t *testing.T) {
	s, _, _ := openStore(t)
	err := s.insert(context.Background(), "no_such_table", "", nil)
	var se *Error
	if !errors.As(err, &se) || se.Retryable {
		t.Errorf("an unknown table is not retryable: %v", err)
	}
	_, err = Open(context.Background(), Config{Addr: []string{"127.0.0.1:1"}, Database: "x", Username: "default", DialTimeout: 200 * time.Millisecond})
	if err == nil || !IsRetryable(err) {
		t.Errorf("a refused connection is retryable: %v", err)
	}
}
