package sentrytest_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/responders/sentry/sentrytest"
)

func TestFakeDecodesWhatSentryAccepts(t *testing.T) {
	const event = `{"event_id":"e1","message":"hi"}`
	gz := func(s string) []byte {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = io.WriteString(w, s)
		_ = w.Close()
		return b.Bytes()
	}
	tests := []struct {
		name       string
		path       string // {key} is replaced by the public key
		body       []byte
		gzip       bool
		auth       bool
		wantStatus int
		wantEvents int
	}{
		{"an envelope with item lengths", "/api/42/envelope/",
			[]byte("{\"event_id\":\"e1\"}\n{\"type\":\"event\",\"length\":" + strconv.Itoa(len(event)) + "}\n" + event + "\n"), false, true, 200, 1},
		{"an envelope without item lengths", "/api/42/envelope/",
			[]byte("{}\n{\"type\":\"event\"}\n" + event + "\n{\"type\":\"attachment\"}\nabc"), false, true, 200, 1},
		{"a gzipped envelope", "/api/42/envelope/", gz("{}\n{\"type\":\"event\"}\n" + event), true, true, 200, 1},
		{"a legacy store request authenticated in the query", "/api/42/store/?sentry_key={key}", []byte(event), false, false, 200, 1},
		{"a payload shorter than its length is 400", "/api/42/envelope/",
			[]byte("{}\n{\"type\":\"event\",\"length\":999}\n" + event), false, true, 400, 0},
		{"an envelope without items is 400", "/api/42/envelope/", []byte("{}\n"), false, true, 400, 0},
		{"no key is 401", "/api/42/envelope/", []byte("{}\n{\"type\":\"event\"}\n" + event), false, false, 401, 0},
		{"another project is 404", "/api/7/envelope/", []byte("{}\n{\"type\":\"event\"}\n" + event), false, true, 404, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := sentrytest.New(t)
			base := strings.TrimSuffix(strings.Replace(s.DSN(), s.PublicKey()+"@", "", 1), "/"+sentrytest.ProjectID)
			req, err := http.NewRequest("POST", base+strings.ReplaceAll(tt.path, "{key}", s.PublicKey()), bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.auth {
				req.Header.Set("X-Sentry-Auth", "Sentry sentry_version=7, sentry_client=test/1, sentry_key="+s.PublicKey())
			}
			if tt.gzip {
				req.Header.Set("Content-Encoding", "gzip")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if got := s.Events(); len(got) != tt.wantEvents || (tt.wantEvents > 0 && got[0]["message"] != "hi") {
				t.Errorf("events %v, want %d", got, tt.wantEvents)
			}
		})
	}
}
