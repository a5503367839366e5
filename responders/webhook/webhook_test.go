package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/responders"
	"github.com/vigil-sec/vigil/responders/webhook"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const (
	secret    = "whsec_4f9c2b7e81d0a3c6"
	authValue = "Bearer receiver-token-9d1e"
)

func incident(phi bool) *responders.Incident {
	t0 := time.Date(2026, 11, 22, 18, 0, 0, 0, time.UTC)
	inc := &responders.Incident{
		ID: "inc_01", Rule: "auth-failure-burst", RuleHash: "rh1", RuleFileHash: "fh1", RuleFile: "authentication.yaml",
		Severity: 2, SeverityName: "high", PHI: phi, Status: "open", Source: "requests",
		Group:      []string{"org_id=org_1", "ip=198.51.100.23"},
		GroupJSON:  `{"org_id":"org_1","ip":"198.51.100.23"}`,
		Orgs:       []string{"org_1"},
		Namespaces: []string{"ns_patients"},
		Keys:       []string{"ak_1", "ak_2"},
		AdminKeys:  []string{"ak_2"},
		Addresses:  []string{"198.51.100.23"},
		FirstEvent: t0, LastEvent: t0.Add(59 * time.Second),
		SampleIDs:   []string{"req_0003", "req_0107"},
		Query:       "SELECT * FROM requests WHERE org_id = {org_id:String} AND ip = {ip:String}",
		QueryParams: map[string]string{"org_id": "org_1", "ip": "198.51.100.23"},
		Threshold:   "> 50", Value: 51, Alerts: 3,
		Labels:   map[string]string{"team": "edge"},
		Actions:  []string{"open_incident", "revoke_key"},
		Notes:    []string{"a human must isolate namespace ns_patients"},
		OpenedAt: t0.Add(time.Minute), UpdatedAt: t0.Add(2 * time.Minute),
	}
	if phi {
		inc.NotificationDue = inc.OpenedAt.Add(60 * 24 * time.Hour)
	}
	return inc
}

// receiver is a webhook endpoint that records what it got.
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	next func(w http.ResponseWriter, r *http.Request) // the answer
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) *receiver {
	rc := &receiver{next: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{r.Header.Clone(), body})
		rc.mu.Unlock()
		if rc.next != nil {
			rc.next(w, r)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) received() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func TestNewReportsEveryBadSetting(t *testing.T) {
	tests := []struct {
		name string
		cfg  webhook.Config
		want []string
	}{
		{"a URL and a secret are enough", webhook.Config{URL: "https://hooks.example.com/vigil", Secret: secret}, nil},
		{"extra headers are fine", webhook.Config{URL: "http://127.0.0.1:9/x", Secret: secret,
			Headers: map[string]string{"authorization": authValue, "X-Team": "sec"}}, nil},
		{"an empty config names both keys", webhook.Config{},
			[]string{"responders.webhook.url is empty", "responders.webhook.secret is empty"}},
		{"a URL without scheme is rejected", webhook.Config{URL: "hooks.example.com", Secret: secret},
			[]string{"responders.webhook.url must be an absolute http or https URL"}},
		{"credentials in the URL are rejected", webhook.Config{URL: "https://u:pw@hooks.example.com", Secret: secret},
			[]string{"must not hold credentials"}},
		{"a negative timeout is rejected", webhook.Config{URL: "https://h.example", Secret: secret, Timeout: -1},
			[]string{"Config.Timeout must not be negative"}},
		{"Vigil's own headers cannot be configured", webhook.Config{URL: "https://h.example", Secret: secret,
			Headers: map[string]string{"x-vigil-signature": "x", "Content-Type": "text/plain"}},
			[]string{"header X-Vigil-Signature is set by Vigil", "header Content-Type is set by Vigil"}},
		{"a header value with a line break is rejected without quoting it", webhook.Config{URL: "https://h.example", Secret: secret,
			Headers: map[string]string{"Authorization": "Bearer abc\r\nX-Evil: 1"}},
			[]string{"the value of header Authorization holds a line break"}},
		{"a bad header name is rejected", webhook.Config{URL: "https://h.example", Secret: secret,
			Headers: map[string]string{"Bad Header": "x"}}, []string{`"Bad Header" is not a valid header name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.New(tt.cfg)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			for _, v := range tt.cfg.Headers {
				if strings.Contains(err.Error(), v) && len(v) > 1 {
					t.Errorf("error %q quotes a header value", err)
				}
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q holds the secret", err)
			}
		})
	}
}

func TestNotify(t *testing.T) {
	tests := []struct {
		name       string
		answer     func(w http.ResponseWriter, r *http.Request)
		timeout    time.Duration
		status     int
		final      bool
		retryAfter time.Duration
		msg        string // substring of the error; "" with status 0 means success
	}{
		{name: "a 200 is delivered", answer: func(w http.ResponseWriter, r *http.Request) {}},
		{name: "a 204 is delivered", answer: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }},
		{name: "429 is retryable with its Retry-After", status: 429, retryAfter: 30 * time.Second, msg: "slow down",
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "30")
				http.Error(w, `{"message":"slow down"}`, http.StatusTooManyRequests)
			}},
		{name: "503 is retryable", status: 503, retryAfter: 5 * time.Second,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", "5")
				w.WriteHeader(503)
			}},
		{name: "500 is retryable", status: 500, msg: "boom",
			answer: func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }},
		{name: "408 is retryable", status: 408,
			answer: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(408) }},
		{name: "400 is final", status: 400, final: true, msg: "unknown field",
			answer: func(w http.ResponseWriter, r *http.Request) { http.Error(w, `{"error":"unknown field"}`, 400) }},
		{name: "401 is final and points at the secret", status: 401, final: true, msg: "check responders.webhook.secret",
			answer: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(401) }},
		{name: "a receiver echoing the secret and the token has both redacted", status: 400, final: true, msg: "[redacted]",
			answer: func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "bad signature for secret "+secret+" and auth "+authValue, 400)
			}},
		{name: "a redirect is not followed and is final", status: 302, final: true, msg: "redirect",
			answer: func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/elsewhere", http.StatusFound) }},
		{name: "a hanging receiver times out as retryable", timeout: 100 * time.Millisecond, msg: "no answer within 100ms",
			answer: func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(time.Minute):
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t, tt.answer)
			n, err := webhook.New(webhook.Config{URL: rc.URL + "/hook", Secret: secret, Timeout: tt.timeout,
				Headers: map[string]string{"Authorization": authValue}})
			if err != nil {
				t.Fatal(err)
			}
			inc := incident(false)
			start := time.Now()
			err = n.Notify(context.Background(), inc)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Notify took %v", d)
			}
			if tt.status == 0 && tt.msg == "" {
				if err != nil {
					t.Fatalf("Notify: %v", err)
				}
			} else {
				var ce *responders.CallError
				if !errors.As(err, &ce) {
					t.Fatalf("got %v, want a *responders.CallError", err)
				}
				if ce.System != "webhook" || ce.Status != tt.status || ce.Final != tt.final || ce.RetryAfter != tt.retryAfter {
					t.Errorf("got %+v, want status %d final %v retryAfter %v", ce, tt.status, tt.final, tt.retryAfter)
				}
				if !strings.Contains(err.Error(), tt.msg) {
					t.Errorf("error %q does not contain %q", err, tt.msg)
				}
				if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), authValue) {
					t.Errorf("error %q holds a credential", err)
				}
			}

			got := rc.received()
			if len(got) != 1 {
				t.Fatalf("receiver got %d requests, want exactly 1", len(got))
			}
			h := got[0].header
			if err := webhook.Verify(secret, h.Get("X-Vigil-Timestamp"), got[0].body, h.Get("X-Vigil-Signature")); err != nil {
				t.Errorf("Verify: %v", err)
			}
			ts, err := strconv.ParseInt(h.Get("X-Vigil-Timestamp"), 10, 64)
			if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
				t.Errorf("X-Vigil-Timestamp %q is not the current Unix time", h.Get("X-Vigil-Timestamp"))
			}
			for name, want := range map[string]string{
				"Content-Type":     "application/json",
				"X-Vigil-Delivery": "inc_01-3",
				"Authorization":    authValue,
			} {
				if h.Get(name) != want {
					t.Errorf("header %s = %q, want %q", name, h.Get(name), want)
				}
			}
			var doc webhook.Document
			if err := json.Unmarshal(got[0].body, &doc); err != nil {
				t.Fatalf("body is not a Document: %v", err)
			}
			if doc.Type != "vigil.incident" || doc.Version != 1 || doc.Incident.ID != "inc_01" {
				t.Errorf("document %+v", doc)
			}
		})
	}
}

func TestNotifyRefusedConnectionIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + "/hook?token=" + secret + "x"
	srv.Close()
	n, err := webhook.New(webhook.Config{URL: url, Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Notify(context.Background(), incident(false))
	if responders.IsFinal(err) || responders.StatusOf(err) != 0 || err == nil {
		t.Fatalf("got %v, want a retryable error without status", err)
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("error %q holds the secret", err)
	}
}

func TestNotifyRejectsAnIncidentWithoutID(t *testing.T) {
	n, err := webhook.New(webhook.Config{URL: "http://127.0.0.1:1", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(context.Background(), &responders.Incident{}); !responders.IsFinal(err) {
		t.Fatalf("got %v, want a final error", err)
	}
}

func TestVerify(t *testing.T) {
	body := []byte(`{"type":"vigil.incident","version":1,"incident":{"id":"inc_01"}}`)
	ts := "1795370400"
	sig := webhook.Sign(secret, ts, body)
	tests := []struct {
		name   string
		secret string
		ts     string
		body   []byte
		sig    string
		want   error
	}{
		{"the signature of the sent body verifies", secret, ts, body, sig, nil},
		{"a tampered body fails", secret, ts, bytes.Replace(body, []byte("inc_01"), []byte("inc_02"), 1), sig, webhook.ErrBadSignature},
		{"a body with a trailing newline fails", secret, ts, append(append([]byte(nil), body...), '\n'), sig, webhook.ErrBadSignature},
		{"another secret fails", "other", ts, body, sig, webhook.ErrBadSignature},
		{"another timestamp fails", secret, "1795370401", body, sig, webhook.ErrBadSignature},
		{"a signature without prefix fails", secret, ts, body, strings.TrimPrefix(sig, "sha256="), webhook.ErrBadSignature},
		{"an empty signature fails", secret, ts, body, "", webhook.ErrBadSignature},
		{"a timestamp that is not a number fails", secret, "yesterday", body, sig, webhook.ErrBadTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := webhook.Verify(tt.secret, tt.ts, tt.body, tt.sig); !errors.Is(err, tt.want) {
				t.Errorf("Verify = %v, want %v", err, tt.want)
			}
		})
	}
	// A known answer, computed with openssl, so receivers in other
	// languages can check their code against it.
	if want := "sha256=f72d42f3da258787d441a4577b945c2edda751e16d6163696155fcc0d10c0ac8"; sig != want {
		t.Errorf("Sign = %q, want %q", sig, want)
	}
}

func TestPayloadMatchesGolden(t *testing.T) {
	tests := []struct {
		name   string
		inc    *responders.Incident
		golden string
	}{
		{"a non-PHI incident carries its group, addresses and query parameters", incident(false), "incident.json"},
		{"a PHI incident carries a group hash and its notification clock instead", incident(true), "incident_phi.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := webhook.Marshal(tt.inc)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := json.Indent(&buf, body, "", "  "); err != nil {
				t.Fatal(err)
			}
			got := append(buf.Bytes(), '\n')
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("payload differs from %s (run with -update after checking):\n%s", path, got)
			}
		})
	}
}

func TestPHIPayloadHoldsNoGroupValue(t *testing.T) {
	inc := incident(true)
	b, err := webhook.Marshal(inc)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"198.51.100.23", `"group"`, `"query_params"`, `"addresses"`} {
		if bytes.Contains(b, []byte(v)) {
			t.Errorf("PHI payload holds %s: %s", v, b)
		}
	}
}

func TestGroupRoundTrips(t *testing.T) {
	tests := []struct {
		name  string
		group webhook.Group
		json  string
	}{
		{"order is kept", webhook.Group{"z=1", "a=2"}, `{"z":"1","a":"2"}`},
		{"values are escaped", webhook.Group{`path=/a"b=c`}, `{"path":"/a\"b=c"}`},
		{"no group is an empty object", webhook.Group{}, `{}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.group)
			if err != nil || string(b) != tt.json {
				t.Fatalf("Marshal = %s, %v; want %s", b, err, tt.json)
			}
			var back webhook.Group
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if len(back) != len(tt.group) || (len(back) > 0 && !reflect.DeepEqual(back, tt.group)) {
				t.Errorf("round trip = %q, want %q", back, tt.group)
			}
		})
	}
}

func TestGroupHash(t *testing.T) {
	tests := []struct {
		name  string
		group []string
		key   string
		hash  string
	}{
		// The Sentry notifier pins the same values: the two must agree.
		{"pairs are joined in order", []string{"org_id=org_1", "ip=198.51.100.23"}, "org_id=org_1,ip=198.51.100.23",
			"1fbecb28ddfbce84f44649923254f9e1ee9eb10ef0b87776e11cc41acbe346fe"},
		{"commas inside a value are escaped", []string{"path=/a,b", "x=1"}, "path=/a%2Cb,x=1", ""},
		{"no group has no key and no hash", nil, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := responders.GroupKey(tt.group); got != tt.key {
				t.Errorf("GroupKey = %q, want %q", got, tt.key)
			}
			h := responders.GroupHash(tt.group)
			if len(tt.group) == 0 && h != "" {
				t.Errorf("GroupHash = %q, want empty", h)
			}
			if tt.hash != "" && h != tt.hash {
				t.Errorf("GroupHash = %q, want %q", h, tt.hash)
			}
		})
	}
}

func TestPayloadSurvivesANaNValue(t *testing.T) {
	inc := incident(false)
	inc.Value = math.NaN()
	if _, err := json.Marshal(webhook.NewPayload(inc)); err != nil {
		t.Errorf("a NaN value breaks the payload: %v", err)
	}
}
