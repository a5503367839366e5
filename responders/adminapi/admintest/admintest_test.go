package admintest_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/responders/adminapi/admintest"
)

func TestFakeAnswersLikeTheAdminAPI(t *testing.T) {
	const token = "t0ken"
	tests := []struct {
		name        string
		method      string
		path        string
		body        string
		contentType string
		token       string
		wantStatus  int
		wantBody    string // substring
	}{
		{"a wrong token is 401", "PATCH", "/v1/organizations/api-keys/ak_1", `{"status":"revoked"}`, "application/json", "nope", 401, "Invalid or missing bearer token"},
		{"reading a key shows its status and permission", "GET", "/v1/organizations/api-keys/ak_1", "", "", token, 200, `"permission":"ADMIN"`},
		{"a PATCH without JSON content type is 415", "PATCH", "/v1/organizations/api-keys/ak_1", `{"status":"revoked"}`, "text/plain", token, 415, "Content-Type"},
		{"a body that is not JSON is 400", "PATCH", "/v1/organizations/api-keys/ak_1", `status=revoked`, "application/json", token, 400, "JSON parse error"},
		{"an unknown key status is 400", "PATCH", "/v1/organizations/api-keys/ak_1", `{"status":"deleted"}`, "application/json", token, 400, "status must be one of revoked, active"},
		{"revoking answers the key", "PATCH", "/v1/organizations/api-keys/ak_1", `{"status":"revoked"}`, "application/json; charset=utf-8", token, 200, `"status":"revoked"`},
		{"a DELETE on a key is 405", "DELETE", "/v1/organizations/api-keys/ak_1", "", "", token, 405, "Method Not Allowed"},
		{"a namespace of another org is 404", "PATCH", "/v1/organizations/org_2/namespaces/ns_1", `{"status":"isolated"}`, "application/json", token, 404, "Namespace not found"},
		{"isolating by POST answers the namespace", "POST", "/v1/namespaces/ns_1/isolation", "", "", token, 200, `"status":"isolated"`},
		{"an unknown path is 404", "GET", "/v2/things", "", "", token, 404, "Not Found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := admintest.New(t, token)
			s.AddKey("ak_1", "active", "ADMIN")
			s.AddNamespace("org_1", "ns_1", "active")
			req, err := http.NewRequest(tt.method, s.URL+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+tt.token)
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("got %d %s, want %d with %q", resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			reqs := s.Requests()
			if len(reqs) != 1 || reqs[0].AuthOK != (tt.token == token) || reqs[0].Status != tt.wantStatus || reqs[0].Body != tt.body {
				t.Errorf("request log %+v", reqs)
			}
		})
	}
}
