package sentry

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-sec/vigil/responders"
	"github.com/vigil-sec/vigil/responders/sentry/sentrytest"
)

func incident(phi bool) *responders.Incident {
	t0 := time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)
	inc := &responders.Incident{
		ID: "inc_01", Rule: "auth-failure-burst", RuleHash: "rh1", RuleFileHash: "fh1", RuleFile: "authentication.yaml",
		Severity: 2, SeverityName: "high", PHI: phi, Status: "open", Source: "requests",
		Group:      []string{"org_id=org_1", "ip=198.51.100.23"},
		Orgs:       []string{"org_1", "org_2"},
		Namespaces: []string{"ns_patients"},
		Keys:       []string{"ak_1"},
		Addresses:  []string{"198.51.100.23", "203.0.113.9"},
		FirstEvent: t0, LastEvent: t0.Add(59 * time.Second),
		SampleIDs:   []string{"req_0003", "req_0107"},
		Query:       "SELECT * FROM requests WHERE ip = {ip:String}",
		QueryParams: map[string]string{"ip": "198.51.100.23"},
		Threshold:   "> 50", Value: 51, Alerts: 3,
		Actions:  []string{"open_incident", "revoke_key"},
		Notes:    []string{"a human must isolate namespace ns_patients"},
		OpenedAt: t0.Add(time.Minute),
	}
	if phi {
		inc.NotificationDue = inc.OpenedAt.Add(60 * 24 * time.Hour)
	}
	return inc
}

// fakeClock is a settable clock for the pause tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newNotifier(t *testing.T, cfg Config) *Notifier {
	t.Helper()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// wantErr describes Notify's error; nil means success.
type wantErr struct {
	status     int
	final      bool
	retryAfter time.Duration
	msg        string
}

func checkErr(t *testing.T, err error, want *wantErr, secrets ...string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("got %v, want success", err)
		}
		return
	}
	var ce *responders.CallError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a *responders.CallError", err)
	}
	if ce.System != "sentry" || ce.Status != want.status || ce.Final != want.final || ce.RetryAfter != want.retryAfter {
		t.Errorf("got %+v, want status %d final %v retryAfter %v", ce, want.status, want.final, want.retryAfter)
	}
	if !strings.Contains(err.Error(), want.msg) {
		t.Errorf("error %q does not contain %q", err, want.msg)
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds a secret", err)
		}
	}
}

func TestNewReportsBadSettingsWithoutQuotingTheDSN(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"a DSN is enough", Config{DSN: "https://abc123def@o1.ingest.sentry.io/42"}, ""},
		{"an empty DSN names the key", Config{}, "responders.sentry.dsn is empty"},
		{"a DSN without project is rejected", Config{DSN: "https://abc123def@o1.ingest.sentry.io/"}, "responders.sentry.dsn is not a valid DSN"},
		{"a DSN without key is rejected", Config{DSN: "https://o1.ingest.sentry.io/42"}, "responders.sentry.dsn is not a valid DSN"},
		{"a DSN with another scheme is rejected", Config{DSN: "ftp://abc123def@o1.ingest.sentry.io/42"}, "responders.sentry.dsn is not a valid DSN"},
		{"a negative timeout is rejected", Config{DSN: "https://abc123def@o1.ingest.sentry.io/42", Timeout: -1}, "Config.Timeout must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "abc123def") {
				t.Errorf("error %q quotes the DSN key", err)
			}
		})
	}
}

func TestNotifySendsOneDescriptiveEvent(t *testing.T) {
	srv := sentrytest.New(t)
	n := newNotifier(t, Config{DSN: srv.DSN(), Environment: "staging", Release: "vigil@1.2.3"})
	if err := n.Notify(context.Background(), incident(false)); err != nil {
		t.Fatal(err)
	}
	events := srv.Events()
	if len(events) != 1 {
		t.Fatalf("Sentry got %d events, want 1", len(events))
	}
	ev := events[0]
	for k, want := range map[string]any{
		"message":     "[vigil] auth-failure-burst: high incident inc_01",
		"level":       "error",
		"environment": "staging",
		"release":     "vigil@1.2.3",
		"server_name": "vigil",
		"logger":      "vigil",
	} {
		if ev[k] != want {
			t.Errorf("event %s = %v, want %v", k, ev[k], want)
		}
	}
	if got, want := ev["fingerprint"], []any{"vigil", "auth-failure-burst", "org_id=org_1,ip=198.51.100.23"}; !reflect.DeepEqual(got, want) {
		t.Errorf("fingerprint %v, want %v", got, want)
	}
	wantTags := map[string]any{"rule": "auth-failure-burst", "severity": "high", "org": "org_1", "orgs": "2",
		"incident_id": "inc_01", "phi": "false", "source": "requests", "status": "open"}
	if got := ev["tags"]; !reflect.DeepEqual(got, wantTags) {
		t.Errorf("tags %v, want %v", got, wantTags)
	}
	contexts, _ := ev["contexts"].(map[string]any)
	inc, _ := contexts["incident"].(map[string]any)
	evidence, _ := contexts["evidence"].(map[string]any)
	if inc["id"] != "inc_01" || inc["alerts"] != 3.0 || inc["threshold"] != "> 50" || inc["value"] != 51.0 ||
		inc["first_event"] != "2026-11-22T18:00:00Z" || inc["last_event"] != "2026-11-22T18:00:59Z" {
		t.Errorf("incident context %v", inc)
	}
	if g, _ := inc["group"].(map[string]any); g["ip"] != "198.51.100.23" || g["org_id"] != "org_1" {
		t.Errorf("incident group %v", inc["group"])
	}
	if !reflect.DeepEqual(inc["actions"], []any{"open_incident", "revoke_key"}) || inc["notification_due"] != nil {
		t.Errorf("incident context actions %v, notification_due %v", inc["actions"], inc["notification_due"])
	}
	if evidence["query"] != "SELECT * FROM requests WHERE ip = {ip:String}" ||
		!reflect.DeepEqual(evidence["sample_ids"], []any{"req_0003", "req_0107"}) {
		t.Errorf("evidence context %v", evidence)
	}
	for _, k := range []string{"device", "os", "runtime"} {
		if _, ok := contexts[k]; ok {
			t.Errorf("context %s leaks host details: %v", k, contexts[k])
		}
	}
	for _, k := range []string{"modules", "request", "breadcrumbs", "exception", "threads"} {
		if _, ok := ev[k]; ok {
			t.Errorf("event has %s: %v", k, ev[k])
		}
	}
	if u, ok := ev["user"].(map[string]any); ok && len(u) > 0 {
		t.Errorf("event has a user: %v", u)
	}
	env := srv.Envelopes()[0]
	payload := string(env.Items[0].Payload)
	if strings.Contains(payload, srv.PublicKey()) {
		t.Errorf("the event payload holds the DSN key")
	}
	if len(env.Items) != 1 {
		t.Errorf("envelope has %d items, want only the event", len(env.Items))
	}
}

func TestNotifyPHIIncidentHidesGroupValues(t *testing.T) {
	srv := sentrytest.New(t)
	n := newNotifier(t, Config{DSN: srv.DSN()})
	inc := incident(true)
	inc.Severity, inc.SeverityName = 1, ""
	if err := n.Notify(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
	ev := srv.Events()[0]
	raw, _ := json.Marshal(ev)
	for _, v := range []string{"198.51.100.23", "203.0.113.9", "query_params"} {
		if strings.Contains(string(raw), v) {
			t.Errorf("PHI event holds %q: %s", v, raw)
		}
	}
	want := []any{"vigil", "auth-failure-burst", "sha256:1fbecb28ddfbce84f44649923254f9e1ee9eb10ef0b87776e11cc41acbe346fe"}
	if !reflect.DeepEqual(ev["fingerprint"], want) {
		t.Errorf("fingerprint %v, want %v", ev["fingerprint"], want)
	}
	if ev["level"] != "fatal" || ev["message"] != "[vigil] auth-failure-burst: critical incident inc_01" {
		t.Errorf("level %v, message %v", ev["level"], ev["message"])
	}
	inc2 := ev["contexts"].(map[string]any)["incident"].(map[string]any)
	if inc2["notification_due"] != "2027-01-21T18:01:00Z" || inc2["address_count"] != 2.0 || inc2["phi"] != true {
		t.Errorf("incident context %v", inc2)
	}
	if tags := ev["tags"].(map[string]any); tags["phi"] != "true" {
		t.Errorf("tags %v", tags)
	}
}

func TestFingerprint(t *testing.T) {
	base := incident(false)
	tests := []struct {
		name string
		edit func(inc *responders.Incident)
		want []string
	}{
		{"an update of the same incident keeps the fingerprint", func(inc *responders.Incident) {
			inc.Alerts, inc.Value, inc.LastEvent = 9, 400, inc.LastEvent.Add(time.Hour)
		}, Fingerprint(base)},
		{"another group gets another fingerprint", func(inc *responders.Incident) {
			inc.Group = []string{"org_id=org_1", "ip=203.0.113.9"}
		}, []string{"vigil", "auth-failure-burst", "org_id=org_1,ip=203.0.113.9"}},
		{"a comma in a value cannot fake another group", func(inc *responders.Incident) {
			inc.Group = []string{"org_id=org_1,ip=198.51.100.23"}
		}, []string{"vigil", "auth-failure-burst", "org_id=org_1%2Cip=198.51.100.23"}},
		{"a rule without group has rule only", func(inc *responders.Incident) { inc.Group = nil },
			[]string{"vigil", "auth-failure-burst"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inc := *base
			tt.edit(&inc)
			if got := Fingerprint(&inc); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Fingerprint = %q, want %q", got, tt.want)
			}
		})
	}
	// The webhook pins the same value: the two notifiers must agree.
	if got := responders.GroupHash(base.Group); got != "1fbecb28ddfbce84f44649923254f9e1ee9eb10ef0b87776e11cc41acbe346fe" {
		t.Errorf("GroupHash = %s", got)
	}
}

func TestNotifyFailures(t *testing.T) {
	tests := []struct {
		name    string
		fault   *sentrytest.Fault
		dsn     func(srv *sentrytest.Server) string
		timeout time.Duration
		want    *wantErr
		events  int
	}{
		{name: "a malformed success answer still counts as accepted",
			fault: &sentrytest.Fault{Status: 200, Body: `{"id":`}, events: 1},
		{name: "429 with Retry-After is retryable after that wait",
			fault: &sentrytest.Fault{Status: 429, RetryAfter: "30"},
			want:  &wantErr{status: 429, retryAfter: 30 * time.Second, msg: "Too Many Requests"}},
		{name: "429 with X-Sentry-Rate-Limits for errors waits as long as it says",
			fault: &sentrytest.Fault{Status: 429, RetryAfter: "5", RateLimits: "120:error;default:organization:usage_exceeded, 10:transaction:key"},
			want:  &wantErr{status: 429, retryAfter: 120 * time.Second}},
		{name: "429 without any wait pauses a minute",
			fault: &sentrytest.Fault{Status: 429},
			want:  &wantErr{status: 429, retryAfter: time.Minute}},
		{name: "429 asking for an hour is capped at ten minutes",
			fault: &sentrytest.Fault{Status: 429, RateLimits: "3600::organization"},
			want:  &wantErr{status: 429, retryAfter: 10 * time.Minute}},
		{name: "500 is retryable",
			fault: &sentrytest.Fault{Status: 500, Body: `{"detail":"internal error"}`},
			want:  &wantErr{status: 500, msg: "internal error"}},
		{name: "503 is retryable with its Retry-After",
			fault: &sentrytest.Fault{Status: 503, RetryAfter: "3"},
			want:  &wantErr{status: 503, retryAfter: 3 * time.Second}},
		{name: "400 is final",
			fault: &sentrytest.Fault{Status: 400, Body: `{"detail":"invalid event envelope"}`},
			want:  &wantErr{status: 400, final: true, msg: "invalid event envelope"}},
		{name: "413 is final",
			fault: &sentrytest.Fault{Status: 413},
			want:  &wantErr{status: 413, final: true, msg: "event too large"}},
		{name: "a wrong key is final and points at the DSN",
			dsn: func(srv *sentrytest.Server) string {
				return strings.Replace(srv.DSN(), srv.PublicKey(), "0123456789abcdef0123456789abcdef", 1)
			},
			want: &wantErr{status: 401, final: true, msg: "check responders.sentry.dsn"}},
		{name: "another project is final",
			dsn:  func(srv *sentrytest.Server) string { return strings.TrimSuffix(srv.DSN(), "/42") + "/7" },
			want: &wantErr{status: 404, final: true, msg: "unknown project"}},
		{name: "a hanging server times out as retryable",
			fault: &sentrytest.Fault{Hang: time.Minute}, timeout: 100 * time.Millisecond,
			want: &wantErr{msg: "no answer within 100ms"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := sentrytest.New(t)
			if tt.fault != nil {
				srv.Inject(1, *tt.fault)
			}
			dsn := srv.DSN()
			if tt.dsn != nil {
				dsn = tt.dsn(srv)
			}
			n := newNotifier(t, Config{DSN: dsn, Timeout: tt.timeout})
			start := time.Now()
			err := n.Notify(context.Background(), incident(false))
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Notify took %v", d)
			}
			checkErr(t, err, tt.want, srv.PublicKey(), dsn)
			if got := len(srv.Events()); got != tt.events {
				t.Errorf("Sentry kept %d events, want %d", got, tt.events)
			}
		})
	}
}

func TestNotifyTransportFailures(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	refusedDSN := "http://0123456789abcdef@" + strings.TrimPrefix(closed.URL, "http://") + "/42"
	closed.Close()
	srv := sentrytest.New(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name string
		dsn  string
		ctx  context.Context
		msg  string
	}{
		{"a refused connection is retryable", refusedDSN, context.Background(), "refused"},
		{"a canceled context is retryable", srv.DSN(), canceled, "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := newNotifier(t, Config{DSN: tt.dsn})
			checkErr(t, n.Notify(tt.ctx, incident(false)), &wantErr{msg: tt.msg}, "0123456789abcdef", srv.PublicKey())
		})
	}
}

// The SDK remembers a 429 and then drops events silently until the wait
// is over. Notify must instead say so, and send again once the wait it
// returned has passed.
func TestNotifyHonorsAPauseAndSendsAfterIt(t *testing.T) {
	tests := []struct {
		name      string
		fault     sentrytest.Fault
		firstErr  *wantErr
		pause     time.Duration
		noPause   bool
		sentFirst int // events kept after the first call
	}{
		{name: "a 429 with Retry-After", fault: sentrytest.Fault{Status: 429, RetryAfter: "30"},
			firstErr: &wantErr{status: 429, retryAfter: 30 * time.Second}, pause: 30 * time.Second},
		{name: "a 429 with rate limits longer than ten minutes",
			fault:    sentrytest.Fault{Status: 429, RateLimits: "900:error:key"},
			firstErr: &wantErr{status: 429, retryAfter: 10 * time.Minute}, pause: 900 * time.Second},
		{name: "rate limits sent with a 200 pause the next event",
			fault: sentrytest.Fault{Status: 200, RateLimits: "45:default:project"}, pause: 45 * time.Second, sentFirst: 1},
		{name: "rate limits on other categories do not pause",
			fault: sentrytest.Fault{Status: 200, RateLimits: "45:transaction;span:project"}, noPause: true, sentFirst: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := sentrytest.New(t)
			srv.Inject(1, tt.fault)
			clock := &fakeClock{t: time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)}
			n := newNotifier(t, Config{DSN: srv.DSN()})
			n.now = clock.now
			ctx := context.Background()

			checkErr(t, n.Notify(ctx, incident(false)), tt.firstErr)
			if got := len(srv.Events()); got != tt.sentFirst {
				t.Fatalf("after the first call Sentry kept %d events, want %d", got, tt.sentFirst)
			}
			if tt.noPause {
				checkErr(t, n.Notify(ctx, incident(false)), nil)
				return
			}

			// Within the pause nothing is sent, and the wait left is given.
			clock.add(10 * time.Second)
			left := tt.pause - 10*time.Second
			checkErr(t, n.Notify(ctx, incident(false)),
				&wantErr{retryAfter: min(left, 10*time.Minute), msg: "not sent: Sentry asked for a pause"})
			if got := len(srv.Requests()); got != 1 {
				t.Fatalf("Sentry got %d requests during the pause, want 1", got)
			}

			// Once the pause is over the event goes out.
			clock.add(left)
			checkErr(t, n.Notify(ctx, incident(false)), nil)
			if got := len(srv.Events()); got != tt.sentFirst+1 {
				t.Fatalf("after the pause Sentry kept %d events, want %d", got, tt.sentFirst+1)
			}
		})
	}
}

func TestRateLimitPause(t *testing.T) {
	tests := []struct {
		header string
		want   time.Duration
	}{
		{"", 0},
		{"60:error:key", time.Minute},
		{"60::organization", time.Minute},
		{"60", time.Minute},
		{"2.5:default;error:project:reason", 3 * time.Second},
		{"60:transaction:key, 30:error:key", 30 * time.Second},
		{"60:transaction:key", 0},
		{"garbage, -5:error:key, NaN:error, 10:ERROR:key", 10 * time.Second},
	}
	for _, tt := range tests {
		if got := rateLimitPause(tt.header); got != tt.want {
			t.Errorf("rateLimitPause(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}

func TestNotifyRejectsAnIncompleteIncident(t *testing.T) {
	n := newNotifier(t, Config{DSN: "http://abc@127.0.0.1:1/42"})
	checkErr(t, n.Notify(context.Background(), &responders.Incident{ID: "inc_1"}),
		&wantErr{final: true, msg: "incident has no id or rule"})
}

func TestNotifySurvivesANaNValue(t *testing.T) {
	srv := sentrytest.New(t)
	n := newNotifier(t, Config{DSN: srv.DSN()})
	inc := incident(false)
	inc.Value = math.NaN()
	if err := n.Notify(context.Background(), inc); err != nil {
		t.Fatal(err)
	}
}

func TestNotifyLeavesNoGoroutines(t *testing.T) {
	srv := sentrytest.New(t)
	tr := &http.Transport{}
	n := newNotifier(t, Config{DSN: srv.DSN(), HTTPClient: &http.Client{Transport: tr}})
	ignore := goleak.IgnoreCurrent()
	for range 3 {
		if err := n.Notify(context.Background(), incident(false)); err != nil {
			t.Fatal(err)
		}
	}
	tr.CloseIdleConnections()
	if err := goleak.Find(ignore, goleak.IgnoreTopFunction("net/http.(*conn).serve")); err != nil {
		// Connection goroutines wind down asynchronously; give them a moment.
		time.Sleep(200 * time.Millisecond)
		if err := goleak.Find(ignore, goleak.IgnoreTopFunction("net/http.(*conn).serve")); err != nil {
			t.Error(err)
		}
	}
}

func TestReportSendsInternalErrorsApartFromIncidents(t *testing.T) {
	srv := sentrytest.New(t)
	n, err := New(Config{DSN: srv.DSN()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Report(context.Background(), "clickhouse inserts failing", map[string]string{"table": "events"}); err != nil {
		t.Fatal(err)
	}
	evs := srv.Events()
	if len(evs) != 1 {
		t.Fatalf("events = %d, want 1", len(evs))
	}
	tags, _ := evs[0]["tags"].(map[string]any)
	if tags["kind"] != "internal" || evs[0]["level"] != "error" {
		t.Errorf("event = %v", evs[0])
	}
}
