package adminapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/responders"
	"github.com/vigil-sec/vigil/responders/adminapi"
	"github.com/vigil-sec/vigil/responders/adminapi/admintest"
)

const token = "tok_s3cr3t_bearer_value"

// wantErr describes the error a call should return; the zero value means
// success.
type wantErr struct {
	status     int
	final      bool
	retryAfter time.Duration
	msg        string // substring of the message
	inState    bool   // IsAlreadyInState
}

func checkErr(t *testing.T, err error, want *wantErr) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("got error %v, want success", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("got success, want an error")
	}
	var ce *responders.CallError
	if !errors.As(err, &ce) {
		t.Fatalf("got %T %v, want *responders.CallError", err, err)
	}
	if ce.System != "admin-api" {
		t.Errorf("System = %q, want admin-api", ce.System)
	}
	if ce.Status != want.status {
		t.Errorf("Status = %d, want %d (%v)", ce.Status, want.status, err)
	}
	if ce.Final != want.final {
		t.Errorf("Final = %v, want %v (%v)", ce.Final, want.final, err)
	}
	if ce.RetryAfter != want.retryAfter {
		t.Errorf("RetryAfter = %v, want %v", ce.RetryAfter, want.retryAfter)
	}
	if !strings.Contains(err.Error(), want.msg) {
		t.Errorf("error %q does not contain %q", err, want.msg)
	}
	if got := adminapi.IsAlreadyInState(err); got != want.inState {
		t.Errorf("IsAlreadyInState = %v, want %v", got, want.inState)
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("error %q holds the token", err)
	}
}

func TestNewReportsEveryBadSetting(t *testing.T) {
	good := adminapi.Config{BaseURL: "https://admin.example.com", Token: token}
	withIsolate := func(ic adminapi.IsolateConfig) adminapi.Config {
		c := good
		c.Isolate = &ic
		return c
	}
	tests := []struct {
		name string
		cfg  adminapi.Config
		want []string // substrings of the error; none means valid
	}{
		{"a base URL and a token are enough", good, nil},
		{"a base URL with a trailing slash is fine", adminapi.Config{BaseURL: "http://127.0.0.1:8080/", Token: token}, nil},
		{"an empty config names both keys", adminapi.Config{},
			[]string{"responders.admin_api.url is empty", "responders.admin_api.token is empty"}},
		{"a relative base URL is rejected", adminapi.Config{BaseURL: "admin.example.com", Token: token},
			[]string{"responders.admin_api.url must be an absolute http or https URL"}},
		{"credentials in the base URL are rejected", adminapi.Config{BaseURL: "https://u:p@admin.example.com", Token: token},
			[]string{"must not hold credentials"}},
		{"a negative timeout is rejected", adminapi.Config{BaseURL: "https://a.example", Token: token, Timeout: -time.Second},
			[]string{"Config.Timeout must not be negative"}},
		{"a PATCH template with a lift body is valid", withIsolate(adminapi.IsolateConfig{
			Path: "/v1/namespaces/{namespace_id}", Body: `{"status":"isolated"}`, LiftBody: `{"status":"active"}`}), nil},
		{"a POST and DELETE pair without bodies is valid", withIsolate(adminapi.IsolateConfig{
			Method: "post", Path: "/v1/namespaces/{namespace_id}/isolation", LiftMethod: "DELETE"}), nil},
		{"placeholders inside body strings are valid", withIsolate(adminapi.IsolateConfig{
			Method: "POST", Path: "/v1/isolations", Body: `{"namespace":"{namespace_id}","org":"{org_id}"}`,
			LiftMethod: "DELETE", LiftPath: "/v1/isolations/{org_id}/{namespace_id}"}), nil},
		{"an unknown placeholder in the path is named", withIsolate(adminapi.IsolateConfig{
			Path: "/v1/namespaces/{namespace}", Body: `{"status":"isolated"}`, LiftBody: `{"status":"active"}`}),
			[]string{"responders.admin_api.isolate.path: unknown placeholder {namespace}"}},
		{"an unknown placeholder in the body is named", withIsolate(adminapi.IsolateConfig{
			Path: "/v1/namespaces/{namespace_id}", Body: `{"status":"isolated","by":"{user}"}`, LiftBody: `{"status":"active"}`}),
			[]string{"responders.admin_api.isolate.body: unknown placeholder {user}"}},
		{"a body that is not JSON is rejected", withIsolate(adminapi.IsolateConfig{
			Path: "/v1/namespaces/{namespace_id}", Body: `status=isolated`, LiftBody: `{"status":"active"}`}),
			[]string{"responders.admin_api.isolate.body: is not valid JSON"}},
		{"a placeholder outside a JSON string is rejected", withIsolate(adminapi.IsolateConfig{
			Method: "POST", Path: "/v1/isolations", Body: `{"namespace":{namespace_id}}`, LiftMethod: "DELETE",
			LiftPath: "/v1/isolations/{namespace_id}"}),
			[]string{"responders.admin_api.isolate.body: is not valid JSON"}},
		{"a bad lift body is named as such", withIsolate(adminapi.IsolateConfig{
			Path: "/v1/namespaces/{namespace_id}", Body: `{"status":"isolated"}`, LiftBody: `{"status":`}),
			[]string{"responders.admin_api.isolate.lift_body: is not valid JSON"}},
		{"a GET method is rejected", withIsolate(adminapi.IsolateConfig{
			Method: "GET", Path: "/v1/namespaces/{namespace_id}", LiftMethod: "DELETE"}),
			[]string{`responders.admin_api.isolate.method: method "GET" is not one of PATCH, POST, PUT, DELETE`}},
		{"a bad lift method is named as such", withIsolate(adminapi.IsolateConfig{
			Method: "POST", Path: "/v1/namespaces/{namespace_id}/isolation", LiftMethod: "UNLOCK"}),
			[]string{"responders.admin_api.isolate.lift_method"}},
		{"an empty path is rejected", withIsolate(adminapi.IsolateConfig{Body: `{"status":"isolated"}`, LiftBody: `{}`}),
			[]string{"responders.admin_api.isolate.path: is empty"}},
		{"a path without a slash is rejected", withIsolate(adminapi.IsolateConfig{
			Path: "v1/namespaces/{namespace_id}", Body: `{"status":"isolated"}`, LiftBody: `{"status":"active"}`}),
			[]string{"must start with /"}},
		{"a template that never names the namespace is rejected", withIsolate(adminapi.IsolateConfig{
			Path: "/v1/organizations/{org_id}/lockdown", Body: `{"on":true}`, LiftBody: `{"on":false}`}),
			[]string{"neither the path nor the body names {namespace_id}"}},
		{"a missing lift body is rejected", withIsolate(adminapi.IsolateConfig{
			Path: "/v1/namespaces/{namespace_id}", Body: `{"status":"isolated"}`}),
			[]string{"responders.admin_api.isolate.lift_body: is empty while body is set"}},
		{"a lift equal to the isolation is rejected", withIsolate(adminapi.IsolateConfig{
			Method: "POST", Path: "/v1/namespaces/{namespace_id}/isolation"}),
			[]string{"the lift request equals the isolate request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := adminapi.New(tt.cfg)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if (tt.cfg.Isolate == nil) != (c.Isolator() == nil) {
					t.Errorf("Isolator() = %v with Isolate config %v", c.Isolator(), tt.cfg.Isolate)
				}
				return
			}
			if err == nil {
				t.Fatalf("New succeeded, want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error %q holds the token", err)
			}
		})
	}
}

func TestSetKeyStatus(t *testing.T) {
	long := strings.Repeat("very long explanation ", 40)
	tests := []struct {
		name       string
		setup      func(s *admintest.Server)
		token      string // token the client uses; the server's when empty
		timeout    time.Duration
		keyID      string
		status     string
		want       *wantErr
		wantStatus string // the key's status on the server afterwards
		requests   int
	}{
		{name: "revoking an active key revokes it", keyID: "ak_1", status: "revoked",
			wantStatus: "revoked", requests: 1},
		{name: "restoring a revoked key activates it", keyID: "ak_2", status: "active",
			wantStatus: "active", requests: 1},
		{name: "revoking a revoked key is a final conflict", keyID: "ak_2", status: "revoked",
			want:       &wantErr{status: 409, final: true, inState: true, msg: "conflict: key already in that state: API key is already revoked"},
			wantStatus: "revoked", requests: 1},
		{name: "an unknown key is final", keyID: "ak_missing", status: "revoked",
			want: &wantErr{status: 404, final: true, msg: "key not found: API key not found"}, requests: 1},
		{name: "a key id with a slash is escaped into one path segment", keyID: "ak/3", status: "revoked",
			wantStatus: "revoked", requests: 1},
		{name: "a wrong token is final and never quoted", keyID: "ak_1", status: "revoked", token: "wrong-token",
			want:       &wantErr{status: 401, final: true, msg: "check responders.admin_api.token"},
			wantStatus: "active", requests: 1},
		{name: "429 is retryable with its Retry-After",
			setup: func(s *admintest.Server) { s.Inject(1, admintest.Fault{Status: 429, RetryAfter: "7"}) },
			keyID: "ak_1", status: "revoked",
			want:       &wantErr{status: 429, retryAfter: 7 * time.Second, msg: "Too Many Requests"},
			wantStatus: "active", requests: 1},
		{name: "503 is retryable with its Retry-After",
			setup: func(s *admintest.Server) { s.Inject(1, admintest.Fault{Status: 503, RetryAfter: "2"}) },
			keyID: "ak_1", status: "revoked",
			want:       &wantErr{status: 503, retryAfter: 2 * time.Second},
			wantStatus: "active", requests: 1},
		{name: "500 is retryable",
			setup: func(s *admintest.Server) { s.Inject(1, admintest.Fault{Status: 500}) },
			keyID: "ak_1", status: "revoked", want: &wantErr{status: 500, msg: "Internal Server Error"},
			wantStatus: "active", requests: 1},
		{name: "400 is final",
			setup: func(s *admintest.Server) {
				s.Inject(1, admintest.Fault{Status: 400, Body: `{"message":"status is read-only"}`})
			},
			keyID: "ak_1", status: "revoked", want: &wantErr{status: 400, final: true, msg: "status is read-only"},
			wantStatus: "active", requests: 1},
		{name: "a server echoing the token has it redacted",
			setup: func(s *admintest.Server) {
				s.Inject(1, admintest.Fault{Status: 400, Body: `{"detail":"bad header Bearer ` + token + `"}`})
			},
			keyID: "ak_1", status: "revoked", want: &wantErr{status: 400, final: true, msg: "Bearer [redacted]"},
			wantStatus: "active", requests: 1},
		{name: "a long server message is cut to 200 bytes",
			setup: func(s *admintest.Server) { s.Inject(1, admintest.Fault{Status: 422, Body: long}) },
			keyID: "ak_1", status: "revoked", want: &wantErr{status: 422, final: true, msg: "explanation very long explanation..."},
			wantStatus: "active", requests: 1},
		{name: "a malformed answer is final and the change may be in place",
			setup: func(s *admintest.Server) { s.Inject(1, admintest.Fault{Malformed: true}) },
			keyID: "ak_1", status: "revoked", want: &wantErr{status: 200, final: true, msg: "malformed answer"},
			wantStatus: "revoked", requests: 1},
		{name: "a hanging server times out as retryable",
			setup:   func(s *admintest.Server) { s.Inject(1, admintest.Fault{Hang: time.Minute}) },
			timeout: 100 * time.Millisecond, keyID: "ak_1", status: "revoked",
			want:       &wantErr{msg: "no answer within 100ms"},
			wantStatus: "active", requests: 1},
		{name: "a slow server within the timeout succeeds",
			setup:   func(s *admintest.Server) { s.Inject(1, admintest.Fault{Hang: 50 * time.Millisecond}) },
			timeout: 5 * time.Second, keyID: "ak_1", status: "revoked",
			wantStatus: "revoked", requests: 1},
		{name: "an unknown status is refused without a request", keyID: "ak_1", status: "deleted",
			want: &wantErr{final: true, msg: `status "deleted" is not`}, wantStatus: "active"},
		{name: "an empty key id is refused without a request", keyID: "", status: "revoked",
			want: &wantErr{final: true, msg: "key id is empty"}},
		{name: "a dot-dot key id is refused without a request", keyID: "..", status: "revoked",
			want: &wantErr{final: true, msg: "is not a valid id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := admintest.New(t, token)
			s.AddKey("ak_1", "active", "WRITE")
			s.AddKey("ak_2", "revoked", "READ")
			s.AddKey("ak/3", "active", "READ")
			if tt.setup != nil {
				tt.setup(s)
			}
			tok := tt.token
			if tok == "" {
				tok = token
			}
			c, err := adminapi.New(adminapi.Config{BaseURL: s.URL, Token: tok, Timeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			err = c.SetKeyStatus(context.Background(), tt.keyID, tt.status)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("call took %v", d)
			}
			checkErr(t, err, tt.want)
			if tt.wantStatus != "" {
				if k, _ := s.Key(tt.keyID); k.Status != tt.wantStatus {
					t.Errorf("key status on the server = %q, want %q", k.Status, tt.wantStatus)
				}
			}
			reqs := s.Requests()
			if tt.want != nil && tt.want.msg == "no answer within 100ms" {
				// The fake logs a request whose client left only after its
				// handler returns; wait for it.
				deadline := time.Now().Add(2 * time.Second)
				for len(reqs) < tt.requests && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
					reqs = s.Requests()
				}
			}
			if len(reqs) != tt.requests {
				t.Fatalf("server got %d requests, want %d: %+v", len(reqs), tt.requests, reqs)
			}
			for _, r := range reqs {
				if r.Method != http.MethodPatch || r.ContentType != "application/json" {
					t.Errorf("request %s with Content-Type %q, want PATCH with application/json", r.Method, r.ContentType)
				}
				if r.AuthOK != (tok == token) {
					t.Errorf("request AuthOK = %v", r.AuthOK)
				}
				if want := `{"status":"` + tt.status + `"}`; r.Body != want {
					t.Errorf("request body %q, want %q", r.Body, want)
				}
			}
		})
	}
}

func TestSetKeyStatusEscapesTheKeyID(t *testing.T) {
	s := admintest.New(t, token)
	s.AddKey("ak/3 x", "active", "READ")
	c, err := adminapi.New(adminapi.Config{BaseURL: s.URL + "/", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetKeyStatus(context.Background(), "ak/3 x", "revoked"); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Requests()[0].Path, "/v1/organizations/api-keys/ak%2F3%20x"; got != want {
		t.Errorf("path %q, want %q", got, want)
	}
}

func TestSetKeyStatusAnswerChecks(t *testing.T) {
	tests := []struct {
		name   string
		answer string
		want   *wantErr
	}{
		{"an empty 200 is success", "", nil},
		{"an answer without status is success", `{"id":"ak_1"}`, nil},
		{"an answer with another status is final", `{"id":"ak_1","status":"active"}`,
			&wantErr{status: 200, final: true, msg: `answered status "active", want "revoked"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(tt.answer))
			}))
			defer srv.Close()
			c, err := adminapi.New(adminapi.Config{BaseURL: srv.URL, Token: token})
			if err != nil {
				t.Fatal(err)
			}
			checkErr(t, c.SetKeyStatus(context.Background(), "ak_1", "revoked"), tt.want)
		})
	}
}

func TestTransportFailures(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	s := admintest.New(t, token)
	s.AddKey("ak_1", "active", "READ")
	canceled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name string
		url  string
		ctx  context.Context
		msg  string
	}{
		{"a refused connection is retryable", closedURL, context.Background(), "refused"},
		{"a canceled context is retryable", s.URL, canceled, "canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := adminapi.New(adminapi.Config{BaseURL: tt.url, Token: token})
			if err != nil {
				t.Fatal(err)
			}
			checkErr(t, c.SetKeyStatus(tt.ctx, "ak_1", "revoked"), &wantErr{msg: tt.msg})
		})
	}
}

func TestIsolateAndLift(t *testing.T) {
	patch := adminapi.IsolateConfig{
		Path: "/v1/namespaces/{namespace_id}", Body: `{"status":"isolated"}`, LiftBody: `{"status":"active"}`,
	}
	orgScoped := adminapi.IsolateConfig{
		Method: "PATCH", Path: "/v1/organizations/{org_id}/namespaces/{namespace_id}",
		Body: `{"status":"isolated"}`, LiftBody: `{"status":"active"}`,
	}
	action := adminapi.IsolateConfig{
		Method: "POST", Path: "/v1/namespaces/{namespace_id}/isolation",
		Body: `{"reason":"vigil incident","namespace":"{namespace_id}","org":"{org_id}"}`, LiftMethod: "DELETE",
	}
	type step struct {
		lift bool
		ns   responders.Namespace
		want *wantErr
	}
	tests := []struct {
		name      string
		cfg       adminapi.IsolateConfig
		steps     []step
		wantState string // status of ns_1 afterwards
		check     func(t *testing.T, reqs []admintest.Request)
	}{
		{name: "PATCH isolates, again conflicts, lift restores", cfg: patch,
			steps: []step{
				{ns: responders.Namespace{Org: "org_1", ID: "ns_1"}},
				{ns: responders.Namespace{Org: "org_1", ID: "ns_1"},
					want: &wantErr{status: 409, final: true, inState: true, msg: "conflict: namespace already in that state"}},
				{lift: true, ns: responders.Namespace{Org: "org_1", ID: "ns_1"}},
			},
			wantState: "active",
			check: func(t *testing.T, reqs []admintest.Request) {
				if reqs[0].Method != "PATCH" || reqs[0].Path != "/v1/namespaces/ns_1" || reqs[0].Body != `{"status":"isolated"}` {
					t.Errorf("isolate request %+v", reqs[0])
				}
				if reqs[2].Body != `{"status":"active"}` {
					t.Errorf("lift body %q", reqs[2].Body)
				}
			}},
		{name: "an unknown namespace is final", cfg: patch,
			steps: []step{{ns: responders.Namespace{Org: "org_1", ID: "ns_gone"},
				want: &wantErr{status: 404, final: true, msg: "namespace not found: Namespace not found"}}},
			wantState: "active"},
		{name: "an org-scoped path carries the org", cfg: orgScoped,
			steps: []step{
				{ns: responders.Namespace{Org: "org_2", ID: "ns_1"}, want: &wantErr{status: 404, final: true, msg: "namespace not found"}},
				{ns: responders.Namespace{Org: "org_1", ID: "ns_1"}},
			},
			wantState: "isolated"},
		{name: "a namespace without org is refused when the template needs one", cfg: orgScoped,
			steps:     []step{{ns: responders.Namespace{ID: "ns_1"}, want: &wantErr{final: true, msg: "no org id"}}},
			wantState: "active"},
		{name: "POST then DELETE with values escaped in the body", cfg: action,
			steps: []step{
				{ns: responders.Namespace{Org: `org "1"`, ID: "ns_1"}},
				{lift: true, ns: responders.Namespace{Org: `org "1"`, ID: "ns_1"}},
			},
			wantState: "active",
			check: func(t *testing.T, reqs []admintest.Request) {
				var doc map[string]string
				if err := json.Unmarshal([]byte(reqs[0].Body), &doc); err != nil {
					t.Fatalf("isolate body %q: %v", reqs[0].Body, err)
				}
				if doc["org"] != `org "1"` || doc["namespace"] != "ns_1" {
					t.Errorf("isolate body %q", reqs[0].Body)
				}
				if reqs[1].Method != "DELETE" || reqs[1].Body != "" || reqs[1].ContentType != "" {
					t.Errorf("lift request %+v, want a DELETE without body", reqs[1])
				}
			}},
		{name: "an empty namespace id is refused", cfg: patch,
			steps:     []step{{ns: responders.Namespace{Org: "org_1"}, want: &wantErr{final: true, msg: "namespace id is empty"}}},
			wantState: "active"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := admintest.New(t, token)
			s.AddNamespace("org_1", "ns_1", "active")
			cfg := tt.cfg
			c, err := adminapi.New(adminapi.Config{BaseURL: s.URL, Token: token, Isolate: &cfg})
			if err != nil {
				t.Fatal(err)
			}
			iso := c.Isolator()
			if iso == nil {
				t.Fatal("Isolator() = nil with isolation configured")
			}
			for i, st := range tt.steps {
				var err error
				if st.lift {
					err = iso.Lift(context.Background(), st.ns)
				} else {
					err = iso.Isolate(context.Background(), st.ns)
				}
				t.Logf("step %d: %v", i, err)
				checkErr(t, err, st.want)
			}
			if ns, _ := s.Namespace("ns_1"); ns.Status != tt.wantState {
				t.Errorf("ns_1 status %q, want %q", ns.Status, tt.wantState)
			}
			if tt.check != nil {
				tt.check(t, s.Requests())
			}
		})
	}
}

func TestIsolateWithoutConfig(t *testing.T) {
	c, err := adminapi.New(adminapi.Config{BaseURL: "http://127.0.0.1:1", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	if iso := c.Isolator(); iso != nil {
		t.Fatalf("Isolator() = %v, want nil", iso)
	}
	checkErr(t, c.Isolate(context.Background(), responders.Namespace{Org: "o", ID: "n"}),
		&wantErr{final: true, msg: "namespace isolation is not configured"})
}

func TestNeedsOrgWhenATemplateNamesIt(t *testing.T) {
	for _, tt := range []struct {
		name string
		iso  *adminapi.IsolateConfig
		want bool
	}{
		{"isolation is not configured", nil, false},
		{"the path names only the namespace", &adminapi.IsolateConfig{Path: "/v1/namespaces/{namespace_id}",
			Body: `{"status":"isolated"}`, LiftBody: `{"status":"active"}`}, false},
		{"the path names the org", &adminapi.IsolateConfig{Path: "/v1/organizations/{org_id}/namespaces/{namespace_id}",
			Body: `{"status":"isolated"}`, LiftBody: `{"status":"active"}`}, true},
		{"only the lift body names the org", &adminapi.IsolateConfig{Path: "/v1/namespaces/{namespace_id}",
			Body: `{"status":"isolated"}`, LiftBody: `{"status":"active","org":"{org_id}"}`}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := adminapi.New(adminapi.Config{BaseURL: "https://admin.example.com", Token: token, Isolate: tt.iso})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.NeedsOrg(); got != tt.want {
				t.Errorf("NeedsOrg() = %v, want %v", got, tt.want)
			}
		})
	}
}
