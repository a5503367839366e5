package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
)

// historyRecords spreads n events over two hours and a half from t0, with
// ties inside and across the tables, in shuffled insertion order.
func historyRecords(n int) []Record {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]Record, n)
	for i := range out {
		ts := t0.Add(time.Duration(rng.IntN(int(150*time.Minute/time.Millisecond))) * time.Millisecond)
		if i%10 == 0 && i > 0 {
			ts = time.Unix(0, out[i-1].Event.TS) // a tie with the previous one
		}
		var e event.Event
		if i%3 == 0 {
			e = event.Event{Source: event.Audit, TS: ts.UnixNano(), ID: fmt.Sprintf("evt_%05d", i), OrgID: "org_1",
				ActorID: "user_1", ActorType: "user", Action: "document.read", Outcome: "success", Changes: []byte(`{"a":1}`)}
		} else {
			e = event.Event{Source: event.Requests, TS: ts.UnixNano(), ID: fmt.Sprintf("req_%05d", i), OrgID: "org_1",
				IP: "203.0.113.7", Method: "GET", Route: "/v1/x", Status: 200 + int64(i%5), BytesOut: int64(i), LatencyMs: 2.5}
		}
		out[i] = Record{Event: &e, Origin: Origin{Topic: "t", Offset: int64(i)}}
	}
	return out
}

// wantOrder is History's order: by time, requests before audit events at
// the same time, then by id.
func wantOrder(recs []Record, from, to time.Time) []string {
	var in []*event.Event
	for _, r := range recs {
		if r.Event.TS >= from.UnixNano() && r.Event.TS < to.UnixNano() {
			in = append(in, r.Event)
		}
	}
	slices.SortFunc(in, func(a, b *event.Event) int {
		if a.TS != b.TS {
			return int(a.TS - b.TS)
		}
		if a.Source != b.Source {
			return int(a.Source) - int(b.Source)
		}
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	ids := make([]string, len(in))
	for i, e := range in {
		ids[i] = e.ID
	}
	return ids
}

func TestHistoryStreamsStoredEventsInEventTimeOrder(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	recs := historyRecords(12000)
	if err := s.InsertEvents(ctx, recs, Token("h1")); err != nil {
		t.Fatal(err)
	}
	// A redelivered part of the stream, in another insert, must not show twice.
	if err := s.InsertEvents(ctx, recs[2000:3000], Token("h2")); err != nil {
		t.Fatal(err)
	}
	defer func(n uint64) { historySliceRows = n }(historySliceRows)
	for _, tt := range []struct {
		name      string
		sliceRows uint64
		from, to  time.Time
		slices    int
	}{
		{"whole span in one slice", 1 << 20, t0.Add(-time.Hour), t0.Add(4 * time.Hour), 1},
		{"many slices, busy hours cut into parts", 1000, t0.Add(-time.Hour), t0.Add(4 * time.Hour), 15},
		{"bounds with milliseconds, to excluded", 3000, t0.Add(17*time.Minute + 123*time.Millisecond), t0.Add(97*time.Minute + 456*time.Millisecond), 5},
		{"an empty range", 1000, t0.Add(5 * time.Hour), t0.Add(6 * time.Hour), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			historySliceRows = tt.sliceRows
			if sl, err := s.historySlices(ctx, tt.from, tt.to); err != nil || len(sl) != tt.slices {
				t.Errorf("%d slices (%v), want %d", len(sl), err, tt.slices)
			}
			var got []string
			var batches int
			n, err := s.History(ctx, tt.from, tt.to, func(b []event.Event) error {
				batches++
				if len(b) == 0 || len(b) > HistoryBatch {
					t.Errorf("batch of %d events", len(b))
				}
				for i := range b {
					got = append(got, b[i].ID)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := wantOrder(recs, tt.from, tt.to)
			if n != len(want) || !slices.Equal(got, want) {
				t.Fatalf("History gave %d events (n=%d) in %d batches, want %d in order; first difference at %d",
					len(got), n, batches, len(want), firstDiff(got, want))
			}
		})
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Every field a rule can read comes back as it was stored.
func TestHistoryReturnsEveryRuleField(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	req := event.Event{Source: event.Requests, TS: t0.Add(1500 * time.Millisecond).UnixNano(), ID: "req_1", OrgID: "org_1",
		APIKeyID: "key_1", KeyPermission: "WRITE", IP: "2001:db8::1", Namespace: "ns_1", DataClassification: "PHI",
		Country: "DE", Method: "POST", Route: "/v1/d", Path: "/v1/d/7", Operation: "upload", Status: 201,
		BytesIn: 1 << 40, BytesOut: 12, LatencyMs: 12.25, UserAgent: "curl/8"}
	aud := event.Event{Source: event.Audit, TS: t0.Add(1500 * time.Millisecond).UnixNano(), ID: "evt_1", OrgID: "org_1",
		APIKeyID: "key_1", KeyPermission: "ADMIN", IP: "198.51.100.1", Namespace: "ns_2", DataClassification: "INTERNAL",
		ActorID: "user_1", ActorType: "user", Action: "api_key.create", ResourceType: "api_key", ResourceID: "key_2",
		Outcome: "denied", Changes: []byte(`{"permission":"ADMIN"}`)}
	if err := s.InsertEvents(ctx, []Record{{Event: &aud}, {Event: &req}}, Token("f")); err != nil {
		t.Fatal(err)
	}
	var got []event.Event
	if _, err := s.History(ctx, t0, t0.Add(time.Minute), func(b []event.Event) error {
		got = append(got, b...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d events, want 2", len(got))
	}
	for i, want := range []event.Event{req, aud} { // requests first on a tie
		if fmt.Sprintf("%+v", got[i]) != fmt.Sprintf("%+v", want) {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want)
		}
	}
}

func TestHistoryStopsAtTheCallbacksError(t *testing.T) {
	s, _, _ := openStore(t)
	ctx := context.Background()
	if err := s.InsertEvents(ctx, historyRecords(3*HistoryBatch), Token("e")); err != nil {
		t.Fatal(err)
	}
	stop := errors.New("enough")
	calls := 0
	n, err := s.History(ctx, t0, t0.Add(3*time.Hour), func([]event.Event) error {
		calls++
		return stop
	})
	if !errors.Is(err, stop) || calls != 1 || n != HistoryBatch {
		t.Errorf("History = %d, %v after %d calls; want %d, %v after 1", n, err, calls, HistoryBatch, stop)
	}
	// The store is still usable: nothing was left half-read.
	if _, err := s.History(ctx, t0, t0.Add(time.Minute), func([]event.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
