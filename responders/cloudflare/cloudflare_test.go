package cloudflare_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/responders"
	"github.com/vigil-sec/vigil/responders/cloudflare"
	"github.com/vigil-sec/vigil/responders/cloudflare/cftest"
)

const (
	account = "0123456789abcdef0123456789abcdef"
	zone    = "fedcba9876543210fedcba9876543210"
	token   = "cf-test-token-s3cr3t-0123456789"
	list    = cloudflare.DefaultListName

	epLists       = "GET /accounts/{account_id}/rules/lists"
	epCreateList  = "POST /accounts/{account_id}/rules/lists"
	epItems       = "GET /accounts/{account_id}/rules/lists/{list_id}/items"
	epAppend      = "POST /accounts/{account_id}/rules/lists/{list_id}/items"
	epDelete      = "DELETE /accounts/{account_id}/rules/lists/{list_id}/items"
	epBulk        = "GET /accounts/{account_id}/rules/lists/bulk_operations/{operation_id}"
	epEntrypoint  = "GET /zones/{zone_id}/rulesets/phases/{phase}/entrypoint"
	epNewRuleset  = "POST /zones/{zone_id}/rulesets"
	epNewRule     = "POST /zones/{zone_id}/rulesets/{ruleset_id}/rules"
	epAccessRules = "GET /zones/{zone_id}/firewall/access_rules/rules"
	epNewAccess   = "POST /zones/{zone_id}/firewall/access_rules/rules"
	epDelAccess   = "DELETE /zones/{zone_id}/firewall/access_rules/rules/{rule_id}"
)

// newClient returns a client of srv that retries nothing itself, polls
// bulk operations every millisecond and is not slowed by its limiter.
func newClient(t *testing.T, srv *cftest.Server, edit func(*cloudflare.Config)) *cloudflare.Client {
	t.Helper()
	cfg := cloudflare.Config{
		APIToken:         token,
		BaseURL:          srv.URL(),
		AccountID:        account,
		ZoneID:           zone,
		MaxRetries:       -1,
		RequestsPer5Min:  1_000_000,
		RequestTimeout:   5 * time.Second,
		BulkPollInterval: time.Millisecond,
		BulkTimeout:      5 * time.Second,
	}
	if edit != nil {
		edit(&cfg)
	}
	c, err := cloudflare.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

var until = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

func block(addr, incident string) responders.Block {
	return responders.Block{Prefix: responders.BlockPrefix(netip.MustParseAddr(addr)), IncidentID: incident, Until: until}
}

func prefix(addr string) netip.Prefix { return responders.BlockPrefix(netip.MustParseAddr(addr)) }

// itemsByIP maps the fake's list items to their comments.
func itemsByIP(srv *cftest.Server) map[string]string {
	out := map[string]string{}
	for _, it := range srv.Items(account, list) {
		out[it.IP] = it.Comment
	}
	return out
}

func TestEnsure(t *testing.T) {
	ours := cftest.Rule{Action: "block", Expression: "ip.src in $vigil_blocked", Enabled: true}
	skip := cftest.Rule{ID: "11111111111111111111111111111111", Action: "skip", Expression: `http.host eq "status.example.com"`, Enabled: true}
	deny := cftest.Rule{ID: "22222222222222222222222222222222", Action: "block", Expression: "ip.src eq 192.0.2.1", Enabled: true}
	tests := []struct {
		name      string
		zone      string
		seed      func(*cftest.Server)
		wantRules []cftest.Rule // expected entrypoint rules, ids of ours ignored
		wantPosts map[string]int
	}{
		{
			name:      "creates the list and the entrypoint with the rule in a fresh account",
			zone:      zone,
			wantRules: []cftest.Rule{ours},
			wantPosts: map[string]int{epCreateList: 1, epNewRuleset: 1, epNewRule: 0},
		},
		{
			name:      "adds the rule to an existing entrypoint and keeps its rules",
			zone:      zone,
			seed:      func(s *cftest.Server) { s.SetEntrypoint(zone, skip, deny) },
			wantRules: []cftest.Rule{skip, deny, ours},
			wantPosts: map[string]int{epCreateList: 1, epNewRuleset: 0, epNewRule: 1},
		},
		{
			name:      "finds the list and the rule when they exist",
			zone:      zone,
			seed:      func(s *cftest.Server) { s.CreateList(account, list, "ip"); s.SetEntrypoint(zone, skip, ours) },
			wantRules: []cftest.Rule{skip, ours},
			wantPosts: map[string]int{epCreateList: 0, epNewRuleset: 0, epNewRule: 0},
		},
		{
			name:      "manages only the list without a zone",
			zone:      "",
			wantRules: nil,
			wantPosts: map[string]int{epCreateList: 1, epEntrypoint: 0, epNewRuleset: 0, epNewRule: 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := cftest.New(t, token)
			if tt.seed != nil {
				tt.seed(srv)
			}
			// Twice on one client, then on a second client (a restart):
			// nothing is duplicated.
			for range 2 {
				c := newClient(t, srv, func(c *cloudflare.Config) { c.ZoneID = tt.zone })
				for range 2 {
					if err := c.Ensure(ctx(t)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := srv.Lists(account); len(got) != 1 || got[0].Name != list || got[0].Kind != "ip" {
				t.Errorf("lists = %+v, want one IP list %q", got, list)
			}
			got := srv.Rules(zone)
			for i := range got {
				if got[i].ID != skip.ID && got[i].ID != deny.ID {
					got[i].ID = ""
				}
				got[i].Description = ""
			}
			if !reflect.DeepEqual(got, tt.wantRules) {
				t.Errorf("entrypoint rules =\n%+v\nwant\n%+v", got, tt.wantRules)
			}
			for ep, want := range tt.wantPosts {
				if n := srv.Count(ep); n != want {
					t.Errorf("%s: %d requests, want %d", ep, n, want)
				}
			}
		})
	}
}

func TestEnsureRuleUsesTheListName(t *testing.T) {
	srv := cftest.New(t, token)
	c := newClient(t, srv, func(c *cloudflare.Config) { c.ListName = "edge_block" })
	if err := c.Ensure(ctx(t)); err != nil {
		t.Fatal(err)
	}
	rules := srv.Rules(zone)
	if len(rules) != 1 || rules[0].Expression != "ip.src in $edge_block" || rules[0].Action != "block" {
		t.Errorf("rules = %+v", rules)
	}
}

func TestEnsureRefusesAListOfAnotherKind(t *testing.T) {
	srv := cftest.New(t, token)
	srv.CreateList(account, list, "asn")
	err := newClient(t, srv, nil).Ensure(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "responders.cloudflare.list_name") || !responders.IsFinal(err) {
		t.Fatalf("err = %v, want a final error naming responders.cloudflare.list_name", err)
	}
	if n := srv.Count(epCreateList); n != 0 {
		t.Errorf("%d lists created", n)
	}
}

func TestBlockSetsUpLazily(t *testing.T) {
	srv := cftest.New(t, token)
	if err := newClient(t, srv, nil).Block(ctx(t), []responders.Block{block("203.0.113.7", "INC-1")}); err != nil {
		t.Fatal(err)
	}
	if len(srv.Lists(account)) != 1 || len(srv.Rules(zone)) != 1 || len(srv.Items(account, list)) != 1 {
		t.Errorf("lists %v, rules %v, items %v", srv.Lists(account), srv.Rules(zone), srv.Items(account, list))
	}
}

func TestBlockBatchesAppends(t *testing.T) {
	tests := []struct {
		blocks, appends int
	}{
		{1, 1},
		{1000, 1},
		{1001, 2},
		{2500, 3},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d blocks take %d appends", tt.blocks, tt.appends), func(t *testing.T) {
			srv := cftest.New(t, token)
			c := newClient(t, srv, nil)
			var blocks []responders.Block
			for i := range tt.blocks {
				blocks = append(blocks, block(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), "INC-1"))
			}
			if err := c.Block(ctx(t), blocks); err != nil {
				t.Fatal(err)
			}
			if n := srv.Count(epAppend); n != tt.appends {
				t.Errorf("%d appends, want %d", n, tt.appends)
			}
			// Each append is awaited: the fake applies it only once a
			// poll saw it complete.
			if n := srv.Count(epBulk); n < tt.appends {
				t.Errorf("%d bulk status polls for %d appends", n, tt.appends)
			}
			if n := len(srv.Items(account, list)); n != tt.blocks {
				t.Errorf("%d items in the list, want %d", n, tt.blocks)
			}
			for _, r := range srv.Requests() {
				if r.Endpoint != epAppend {
					continue
				}
				var items []json.RawMessage
				if err := json.Unmarshal(r.Body, &items); err != nil || len(items) > 1000 {
					t.Errorf("append of %d items (%v), want at most 1000", len(items), err)
				}
			}
		})
	}
}

func TestBlockWritesAddressesAndComments(t *testing.T) {
	srv := cftest.New(t, token)
	c := newClient(t, srv, nil)
	blocks := []responders.Block{
		block("203.0.113.7", "INC-7"),
		block("2001:db8:1:2:aaaa::1", "INC-7"),
		{Prefix: netip.MustParsePrefix("2001:db8:5::1/128"), IncidentID: "INC-8", Until: until},
		{Prefix: netip.MustParsePrefix("::ffff:198.51.100.9/128"), IncidentID: "INC-8", Until: until},
		block("203.0.113.7", "INC-9"), // the same range twice in a batch: the first wins
	}
	if err := c.Block(ctx(t), blocks); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"203.0.113.7":       "vigil incident=INC-7 expires=2026-12-01T10:00:00Z",
		"2001:db8:1:2::/64": "vigil incident=INC-7 expires=2026-12-01T10:00:00Z",
		"2001:db8:5::/64":   "vigil incident=INC-8 expires=2026-12-01T10:00:00Z",
		"198.51.100.9":      "vigil incident=INC-8 expires=2026-12-01T10:00:00Z",
	}
	if got := itemsByIP(srv); !reflect.DeepEqual(got, want) {
		t.Errorf("items = %v, want %v", got, want)
	}
	// The body is Cloudflare's: a JSON array of {"ip", "comment"}.
	for _, r := range srv.Requests() {
		if r.Endpoint != epAppend {
			continue
		}
		var items []map[string]any
		if err := json.Unmarshal(r.Body, &items); err != nil || len(items) != 4 {
			t.Fatalf("append body %s: %v", r.Body, err)
		}
		if want := map[string]any{"ip": "203.0.113.7", "comment": blocks[0].Comment()}; !reflect.DeepEqual(items[0], want) {
			t.Errorf("first item %v, want %v", items[0], want)
		}
	}

	// Blocking again, from this client or from a new one, writes nothing.
	for _, c := range []*cloudflare.Client{c, newClient(t, srv, nil)} {
		if err := c.Block(ctx(t), blocks[:2]); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Count(epAppend); n != 1 {
		t.Errorf("%d appends, want 1", n)
	}
}

func TestBlockRejectsWideRanges(t *testing.T) {
	for _, p := range []string{"10.0.0.0/24", "2001:db8::/48"} {
		t.Run(p, func(t *testing.T) {
			srv := cftest.New(t, token)
			err := newClient(t, srv, nil).Block(ctx(t), []responders.Block{{Prefix: netip.MustParsePrefix(p), IncidentID: "INC-1", Until: until}})
			if err == nil || !responders.IsFinal(err) {
				t.Fatalf("err = %v, want a final error", err)
			}
			if n := len(srv.Requests()); n != 0 {
				t.Errorf("%d requests", n)
			}
		})
	}
}

func TestBlockRestoresAnItemRemovedByHand(t *testing.T) {
	srv := cftest.New(t, token)
	c := newClient(t, srv, nil)
	blocks := []responders.Block{block("203.0.113.7", "INC-1"), block("203.0.113.8", "INC-1")}
	if err := c.Block(ctx(t), blocks); err != nil {
		t.Fatal(err)
	}
	if !srv.RemoveItem(account, list, "203.0.113.7") {
		t.Fatal("item not found")
	}
	items, err := c.Items(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Prefix != prefix("203.0.113.8") {
		t.Fatalf("items = %v, want only 203.0.113.8", items)
	}
	// Reconciliation blocks again what is missing; Items refreshed the
	// client's view, so the block is written.
	if err := c.Block(ctx(t), blocks); err != nil {
		t.Fatal(err)
	}
	if got := itemsByIP(srv); len(got) != 2 {
		t.Errorf("items = %v, want both", got)
	}
	if n := srv.Count(epAppend); n != 2 {
		t.Errorf("%d appends, want 2", n)
	}
}

func TestUnblock(t *testing.T) {
	srv := cftest.New(t, token)
	c := newClient(t, srv, nil)
	if err := c.Block(ctx(t), []responders.Block{
		block("203.0.113.1", "INC-1"), block("203.0.113.2", "INC-1"), block("2001:db8:1:2::1", "INC-1"),
	}); err != nil {
		t.Fatal(err)
	}
	srv.AddItem(account, list, "198.51.100.1", "office VPN, blocked by hand")

	// 203.0.113.1 and the IPv6 range are Vigil's; 198.51.100.1 is not;
	// 192.0.2.99 is not in the list.
	err := c.Unblock(ctx(t), []netip.Prefix{
		prefix("203.0.113.1"), prefix("2001:db8:1:2:ffff::9"), prefix("198.51.100.1"), prefix("192.0.2.99"),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"203.0.113.2":  "vigil incident=INC-1 expires=2026-12-01T10:00:00Z",
		"198.51.100.1": "office VPN, blocked by hand",
	}
	if got := itemsByIP(srv); !reflect.DeepEqual(got, want) {
		t.Errorf("items = %v, want %v", got, want)
	}
	if n := srv.Count(epDelete); n != 1 {
		t.Errorf("%d deletes, want 1", n)
	}

	// Unblocking what is not there writes nothing.
	if err := c.Unblock(ctx(t), []netip.Prefix{prefix("192.0.2.99"), prefix("203.0.113.1")}); err != nil {
		t.Fatal(err)
	}
	if n := srv.Count(epDelete); n != 1 {
		t.Errorf("%d deletes, want 1", n)
	}
}

func TestItemsListsOnlyVigilsItemsAcrossPages(t *testing.T) {
	srv := cftest.New(t, token)
	srv.SetMaxPerPage(2)
	srv.AddItem(account, list, "198.51.100.1", "office")
	srv.AddItem(account, list, "198.51.100.2", "")
	srv.AddItem(account, list, "198.51.100.3", "vigilant neighbour") // not "vigil "
	c := newClient(t, srv, nil)
	var blocks []responders.Block
	for i := range 5 {
		blocks = append(blocks, block(fmt.Sprintf("203.0.113.%d", i+1), "INC-3"))
	}
	if err := c.Block(ctx(t), blocks); err != nil {
		t.Fatal(err)
	}
	items, err := c.Items(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	var got []netip.Prefix
	for _, it := range items {
		if it.ID == "" || it.Comment != blocks[0].Comment() {
			t.Errorf("item %+v", it)
		}
		got = append(got, it.Prefix)
	}
	var want []netip.Prefix
	for _, b := range blocks {
		want = append(want, b.Prefix)
	}
	if !slices.Equal(got, want) {
		t.Errorf("items = %v, want %v", got, want)
	}
	if n := srv.Count(epItems); n < 4 {
		t.Errorf("%d item pages read, want at least 4 for 8 items 2 a page", n)
	}
}

func TestBlockAwaitsTheBulkOperation(t *testing.T) {
	srv := cftest.New(t, token)
	srv.SetBulkPolls(3)
	c := newClient(t, srv, nil)
	if err := c.Block(ctx(t), []responders.Block{block("203.0.113.7", "INC-1")}); err != nil {
		t.Fatal(err)
	}
	// The fake applies an append only when a poll sees it complete.
	if n := len(srv.Items(account, list)); n != 1 {
		t.Errorf("%d items right after Block, want 1", n)
	}
	if n := srv.Count(epBulk); n != 4 {
		t.Errorf("%d polls, want 4 (3 pending, 1 completed)", n)
	}
}

func TestAPendingOperationIsAwaitedBeforeTheNextWrite(t *testing.T) {
	srv := cftest.New(t, token)
	srv.SetBulkPolls(1 << 30)
	srv.SetBulkTime(0)
	c := newClient(t, srv, func(c *cloudflare.Config) { c.BulkTimeout = 50 * time.Millisecond })
	err := c.Block(ctx(t), []responders.Block{block("203.0.113.7", "INC-1")})
	if err == nil || responders.IsFinal(err) || !strings.Contains(err.Error(), "still pending") {
		t.Fatalf("err = %v, want a retryable error saying the operation is still pending", err)
	}

	// Cloudflare finishes the operation later. Writing before seeing that
	// would be refused with 429; the client polls first.
	srv.SetBulkPolls(0)
	srv.ReleaseBulkOperations()
	if err := c.Block(ctx(t), []responders.Block{block("203.0.113.7", "INC-1"), block("203.0.113.8", "INC-2")}); err != nil {
		t.Fatal(err)
	}
	if got := itemsByIP(srv); len(got) != 2 {
		t.Errorf("items = %v, want both", got)
	}
	if n := srv.Count(epAppend); n != 2 {
		t.Errorf("%d appends, want 2 (203.0.113.7 once, 203.0.113.8 once)", n)
	}
}

func TestAFailedBulkOperationIsAFinalError(t *testing.T) {
	srv := cftest.New(t, token)
	srv.FailNextBulk("the list has reached its item limit")
	c := newClient(t, srv, nil)
	err := c.Block(ctx(t), []responders.Block{block("203.0.113.7", "INC-1")})
	if err == nil || !responders.IsFinal(err) || !strings.Contains(err.Error(), "the list has reached its item limit") {
		t.Fatalf("err = %v, want a final error with Cloudflare's text", err)
	}
	if err := c.Block(ctx(t), []responders.Block{block("203.0.113.7", "INC-1")}); err != nil {
		t.Fatalf("the next block: %v", err)
	}
	if n := len(srv.Items(account, list)); n != 1 {
		t.Errorf("%d items, want 1", n)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		fault      func(*cftest.Server)
		status     int
		final      bool
		retryAfter time.Duration
	}{
		{
			name:       "429 is retryable after the time Cloudflare asks for",
			fault:      func(s *cftest.Server) { s.RateLimitNext(1) },
			status:     429,
			retryAfter: time.Second,
		},
		{
			name:   "500 is retryable",
			fault:  func(s *cftest.Server) { s.FailNext(1, 500) },
			status: 500,
		},
		{
			name: "503 is retryable after the time Cloudflare asks for",
			fault: func(s *cftest.Server) {
				s.Inject(1, cftest.Fault{Status: 503, RetryAfter: "7"})
			},
			status:     503,
			retryAfter: 7 * time.Second,
		},
		{
			name: "403 is final",
			fault: func(s *cftest.Server) {
				s.Inject(1, cftest.Fault{Status: 403, Code: 10000, Message: "Authentication error"})
			},
			status: 403,
			final:  true,
		},
		{
			name:   "a malformed answer is a final error, not a panic",
			fault:  func(s *cftest.Server) { s.MalformedNext(1) },
			status: 200,
			final:  true,
		},
		{
			name:   "a hung request times out and is retryable",
			fault:  func(s *cftest.Server) { s.HangNext(1, 10*time.Second) },
			status: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := cftest.New(t, token)
			tt.fault(srv)
			c := newClient(t, srv, func(c *cloudflare.Config) { c.RequestTimeout = time.Second })
			start := time.Now()
			err := c.Ensure(ctx(t))
			var ce *responders.CallError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v (%T), want a *responders.CallError", err, err)
			}
			if time.Since(start) > 5*time.Second {
				t.Errorf("took %s", time.Since(start))
			}
			if ce.System != "cloudflare" || ce.Op != epLists || ce.Status != tt.status || ce.Final != tt.final || ce.RetryAfter != tt.retryAfter {
				t.Errorf("error %+v, want op %q status %d final %v retry after %s", *ce, epLists, tt.status, tt.final, tt.retryAfter)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error text holds the token: %v", err)
			}
			// The fault is spent: the next call works.
			if err := c.Ensure(ctx(t)); err != nil {
				t.Errorf("after the fault: %v", err)
			}
		})
	}
}

func TestWrongTokenIsFinalAndNotInTheError(t *testing.T) {
	srv := cftest.New(t, token)
	const wrong = "wrong-token-Zq81kP0v"
	c := newClient(t, srv, func(c *cloudflare.Config) { c.APIToken = wrong })
	err := c.Ensure(ctx(t))
	if responders.StatusOf(err) != 401 || !responders.IsFinal(err) {
		t.Fatalf("err = %v, want a final 401", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error text holds the token: %v", err)
	}
}

func TestSDKRetriesAreBoundedByMaxRetries(t *testing.T) {
	tests := []struct {
		name       string
		maxRetries int
		failures   int
		wantErr    bool
		requests   int
	}{
		{"no retries: one attempt", -1, 1, true, 1},
		{"one retry recovers from one failure", 1, 1, false, 2},
		{"one retry gives up after two failures", 1, 5, true, 2},
		{"the default of two retries recovers from two failures", 0, 2, false, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := cftest.New(t, token)
			// Retry-After: 0 lets the SDK retry at once.
			srv.Inject(tt.failures, cftest.Fault{Endpoint: epLists, Status: 503, RetryAfter: "0"})
			c := newClient(t, srv, func(c *cloudflare.Config) { c.MaxRetries = tt.maxRetries })
			err := c.Ensure(ctx(t))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if n := srv.Count(epLists); n != tt.requests {
				t.Errorf("%d requests, want %d", n, tt.requests)
			}
		})
	}
}

func TestAccessRules(t *testing.T) {
	srv := cftest.New(t, token)
	srv.SetMaxPerPage(1) // every read pages
	office := srv.AddAccessRule(zone, cftest.AccessRule{Mode: "whitelist", Target: "ip", Value: "192.0.2.10", Notes: "office"})
	c := newClient(t, srv, func(c *cloudflare.Config) { c.Mode = cloudflare.ModeAccessRules; c.AccountID = "" })
	if err := c.Ensure(ctx(t)); err != nil {
		t.Fatal(err)
	}
	v4, v6 := block("203.0.113.7", "INC-5"), block("2001:db8:1:2::77", "INC-6")
	if err := c.Block(ctx(t), []responders.Block{v4, v6}); err != nil {
		t.Fatal(err)
	}
	want := []cftest.AccessRule{
		{ID: office, Mode: "whitelist", Target: "ip", Value: "192.0.2.10", Notes: "office"},
		{Mode: "block", Target: "ip", Value: "203.0.113.7", Notes: v4.Comment()},
		{Mode: "block", Target: "ip_range", Value: "2001:db8:1:2::/64", Notes: v6.Comment()},
	}
	got := srv.AccessRules(zone)
	for i := 1; i < len(got); i++ {
		got[i].ID = ""
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("access rules =\n%+v\nwant\n%+v", got, want)
	}

	// Blocking again writes nothing, from this client or a new one.
	for _, c := range []*cloudflare.Client{c, newClient(t, srv, func(c *cloudflare.Config) { c.Mode = cloudflare.ModeAccessRules })} {
		if err := c.Block(ctx(t), []responders.Block{v4, v6}); err != nil {
			t.Fatal(err)
		}
	}
	if n := srv.Count(epNewAccess); n != 2 {
		t.Errorf("%d rules created, want 2", n)
	}

	items, err := c.Items(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Prefix != v4.Prefix || items[1].Prefix != v6.Prefix ||
		items[0].Comment != v4.Comment() || items[0].ID == "" {
		t.Errorf("items = %+v", items)
	}

	if err := c.Unblock(ctx(t), []netip.Prefix{v4.Prefix, prefix("192.0.2.10"), prefix("198.51.100.1")}); err != nil {
		t.Fatal(err)
	}
	if n := srv.Count(epDelAccess); n != 1 {
		t.Errorf("%d rules deleted, want 1", n)
	}
	items, err = c.Items(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Prefix != v6.Prefix {
		t.Errorf("items after unblock = %+v, want only %v", items, v6.Prefix)
	}
	if n := len(srv.AccessRules(zone)); n != 2 {
		t.Errorf("%d access rules left, want the office rule and the IPv6 block", n)
	}
	if n := srv.Count(epLists) + srv.Count(epEntrypoint); n != 0 {
		t.Errorf("%d list or ruleset requests in access_rules mode", n)
	}
}

func TestLimiterSpreadsABurst(t *testing.T) {
	srv := cftest.New(t, token)
	// 1500 per 5 minutes, one at a time: a request every 200 ms.
	c := newClient(t, srv, func(c *cloudflare.Config) {
		c.Mode = cloudflare.ModeAccessRules
		c.RequestsPer5Min = 1500
		c.RequestBurst = 1
	})
	const calls = 6 // one request each
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			if _, err := c.Items(ctx(t)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	reqs := srv.Requests()
	if len(reqs) != calls {
		t.Fatalf("%d requests, want %d", len(reqs), calls)
	}
	// Tokens come every 200 ms and a request cannot arrive before its
	// token, so the burst spans at least about (calls-1) × 200 ms.
	span := reqs[len(reqs)-1].Time.Sub(reqs[0].Time)
	if min := time.Duration(calls-1) * 200 * time.Millisecond * 3 / 4; span < min {
		t.Errorf("%d requests within %s, want at least %s", calls, span, min)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	valid := cloudflare.Config{APIToken: token, AccountID: account, ZoneID: zone}
	tests := []struct {
		name string
		edit func(*cloudflare.Config)
		keys []string // each must appear in the error; none means valid
	}{
		{"a list-mode config with account and zone is valid", func(*cloudflare.Config) {}, nil},
		{"a list-mode config without a zone is valid", func(c *cloudflare.Config) { c.ZoneID = "" }, nil},
		{"an access_rules config without an account is valid", func(c *cloudflare.Config) { c.Mode = cloudflare.ModeAccessRules; c.AccountID = "" }, nil},
		{"the token is required", func(c *cloudflare.Config) { c.APIToken = "" }, []string{"responders.cloudflare.api_token"}},
		{"a token with a newline is refused", func(c *cloudflare.Config) { c.APIToken = token + "\n" }, []string{"responders.cloudflare.api_token"}},
		{"list mode needs the account", func(c *cloudflare.Config) { c.AccountID = "" }, []string{"responders.cloudflare.account_id"}},
		{"access_rules mode needs the zone", func(c *cloudflare.Config) { c.Mode = cloudflare.ModeAccessRules; c.ZoneID = "" }, []string{"responders.cloudflare.zone_id"}},
		{"an unknown mode is refused", func(c *cloudflare.Config) { c.Mode = "firewall_rules" }, []string{"responders.cloudflare.mode"}},
		{"a list name with capitals is refused", func(c *cloudflare.Config) { c.ListName = "Vigil-Blocked" }, []string{"responders.cloudflare.list_name"}},
		{"an account name is not an account id", func(c *cloudflare.Config) { c.AccountID = "example-corp" }, []string{"responders.cloudflare.account_id"}},
		{"a domain is not a zone id", func(c *cloudflare.Config) { c.ZoneID = "example.com" }, []string{"responders.cloudflare.zone_id"}},
		{"all problems are reported at once", func(c *cloudflare.Config) { c.APIToken = ""; c.AccountID = ""; c.ListName = "x-y" },
			[]string{"responders.cloudflare.api_token", "responders.cloudflare.account_id", "responders.cloudflare.list_name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.edit(&cfg)
			_, err := cloudflare.New(cfg)
			if len(tt.keys) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, k := range tt.keys {
				if !strings.Contains(err.Error(), k+":") {
					t.Errorf("error %q does not name %s", err, k)
				}
			}
			if cfg.APIToken != "" && strings.Contains(err.Error(), strings.TrimSpace(cfg.APIToken)) {
				t.Errorf("error holds the token: %v", err)
			}
		})
	}
}

// No type of the Cloudflare SDK may appear in the package's exported API.
func TestExportedAPIHidesTheSDK(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var check func(where string, typ reflect.Type)
	check = func(where string, typ reflect.Type) {
		if seen[typ] {
			return
		}
		seen[typ] = true
		if strings.HasPrefix(typ.PkgPath(), "github.com/cloudflare/") {
			t.Errorf("%s exposes %s", where, typ)
		}
		switch typ.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Chan:
			check(where, typ.Elem())
		case reflect.Map:
			check(where, typ.Key())
			check(where, typ.Elem())
		case reflect.Func:
			for i := range typ.NumIn() {
				check(where, typ.In(i))
			}
			for i := range typ.NumOut() {
				check(where, typ.Out(i))
			}
		case reflect.Struct:
			for i := range typ.NumField() {
				if f := typ.Field(i); f.IsExported() {
					check(where+"."+f.Name, f.Type)
				}
			}
		}
		for i := range typ.NumMethod() {
			m := typ.Method(i)
			check(where+"."+m.Name, m.Type)
		}
	}
	check("New", reflect.TypeOf(cloudflare.New))
	check("Client", reflect.TypeFor[*cloudflare.Client]())
	check("Config", reflect.TypeFor[cloudflare.Config]())
}

func TestConcurrentCallsAreSerialized(t *testing.T) {
	srv := cftest.New(t, token)
	srv.SetBulkPolls(2)
	c := newClient(t, srv, nil)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 5 {
				b := block(fmt.Sprintf("203.0.%d.%d", g, i), "INC-1")
				if err := c.Block(ctx(t), []responders.Block{b}); err != nil {
					t.Error(err)
				}
				if _, err := c.Items(ctx(t)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	// A write while another was pending would have failed with 429.
	if n := len(srv.Items(account, list)); n != 20 {
		t.Errorf("%d items, want 20", n)
	}
}
