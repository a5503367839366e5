package cftest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/responders/cloudflare/cftest"
)

const (
	account = "0123456789abcdef0123456789abcdef"
	token   = "test-token"
)

type envelope struct {
	Success bool `json:"success"`
	Errors  []struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
	Result     json.RawMessage `json:"result"`
	ResultInfo struct {
		Cursors struct {
			After string `json:"after"`
		} `json:"cursors"`
	} `json:"result_info"`
}

// do sends a request with the token and decodes the envelope.
func do(t *testing.T, srv *cftest.Server, method, path, body, tok string) (int, envelope) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+strings.TrimPrefix(path, "/"), strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatalf("%s %s: %v in %s", method, path, err, raw)
	}
	return res.StatusCode, env
}

func newList(t *testing.T, srv *cftest.Server) string {
	t.Helper()
	status, env := do(t, srv, "POST", "/accounts/"+account+"/rules/lists", `{"name":"blocked","kind":"ip"}`, token)
	var l struct{ ID string }
	if status != 200 || json.Unmarshal(env.Result, &l) != nil || l.ID == "" {
		t.Fatalf("create list: %d %+v", status, env)
	}
	return l.ID
}

func TestTheWrongTokenGetsCloudflaresAuthenticationError(t *testing.T) {
	srv := cftest.New(t, token)
	status, env := do(t, srv, "GET", "/accounts/"+account+"/rules/lists", "", "other")
	if status != 401 || env.Success || len(env.Errors) != 1 || env.Errors[0].Code != 10000 {
		t.Errorf("%d %+v, want 401 with error 10000", status, env)
	}
}

func TestAnUnknownRouteIs404(t *testing.T) {
	srv := cftest.New(t, token)
	status, env := do(t, srv, "GET", "/accounts/"+account+"/firewall/rules", "", token)
	if status != 404 || len(env.Errors) != 1 || env.Errors[0].Code != 7000 {
		t.Errorf("%d %+v, want 404 with error 7000", status, env)
	}
}

func TestASecondBulkWriteWhileOneIsPendingIs429(t *testing.T) {
	srv := cftest.New(t, token)
	id := newList(t, srv)
	items := "/accounts/" + account + "/rules/lists/" + id + "/items"
	status, env := do(t, srv, "POST", items, `[{"ip":"192.0.2.1","comment":"a"}]`, token)
	var op struct {
		OperationID string `json:"operation_id"`
	}
	if status != 200 || json.Unmarshal(env.Result, &op) != nil || op.OperationID == "" {
		t.Fatalf("append: %d %+v", status, env)
	}
	if status, _ := do(t, srv, "POST", items, `[{"ip":"192.0.2.2"}]`, token); status != 429 {
		t.Errorf("second append while pending: %d, want 429", status)
	}
	if n := len(srv.Items(account, "blocked")); n != 0 {
		t.Errorf("%d items before the operation completed", n)
	}
	var got []string
	for range 3 {
		_, env := do(t, srv, "GET", "/accounts/"+account+"/rules/lists/bulk_operations/"+op.OperationID, "", token)
		var st struct{ Status string }
		_ = json.Unmarshal(env.Result, &st)
		got = append(got, st.Status)
	}
	if strings.Join(got, ",") != "pending,completed,completed" {
		t.Errorf("statuses %v, want pending then completed", got)
	}
	if n := len(srv.Items(account, "blocked")); n != 1 {
		t.Errorf("%d items after completion, want 1", n)
	}
	if status, _ := do(t, srv, "POST", items, `[{"ip":"192.0.2.2"}]`, token); status != 200 {
		t.Errorf("append after completion: %d", status)
	}
}

func TestListItemsRejectsWhatCloudflareRejects(t *testing.T) {
	srv := cftest.New(t, token)
	id := newList(t, srv)
	for _, ip := range []string{"192.0.2.1/32", "2001:db8::/80", "2001:db8::1/64", "example.com"} {
		status, _ := do(t, srv, "POST", "/accounts/"+account+"/rules/lists/"+id+"/items", `[{"ip":"`+ip+`"}]`, token)
		if status != 400 {
			t.Errorf("%s: %d, want 400", ip, status)
		}
	}
}

func TestListItemsPageWithCursors(t *testing.T) {
	srv := cftest.New(t, token)
	for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"} {
		srv.AddItem(account, "blocked", ip, "")
	}
	id := srv.Lists(account)[0].ID
	var seen []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		path := "/accounts/" + account + "/rules/lists/" + id + "/items?per_page=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		_, env := do(t, srv, "GET", path, "", token)
		var items []struct{ IP string }
		if err := json.Unmarshal(env.Result, &items); err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			seen = append(seen, it.IP)
		}
		if cursor = env.ResultInfo.Cursors.After; cursor == "" {
			break
		}
	}
	if strings.Join(seen, " ") != "192.0.2.1 192.0.2.2 192.0.2.3 192.0.2.4 192.0.2.5" {
		t.Errorf("items %v", seen)
	}
}
