// Package cftest is an in-memory fake of the parts of Cloudflare's v4 API
// that responders/cloudflare calls, for tests. It serves them over HTTP
// under /client/v4/ with Cloudflare's JSON envelope
// ({"success","errors","messages","result","result_info"}) and checks the
// bearer token:
//
//   - account IP lists, their items (cursor pagination) and asynchronous
//     bulk operations: an append or delete returns an operation id and
//     takes effect only when the operation completes, which it does on the
//     first status poll after SetBulkPolls "pending" answers (one by
//     default); another write to the account's lists while one is pending
//     is refused with 429, as Cloudflare does;
//   - zone rulesets: the phase entrypoint (404 when the zone has none),
//     creating a ruleset, adding a rule to one;
//   - zone IP Access Rules: list (page pagination, mode/notes/target/value
//     filters), create, delete.
//
// Tests inject faults (Inject, RateLimitNext, FailNext, HangNext,
// MalformedNext), read what was requested (Requests, Count) and read or
// change the state behind the API (Lists, Items, AddItem, RemoveItem,
// Rules, SetEntrypoint, AccessRules, AddAccessRule).
//
// Error codes other than 10000 (authentication), 971 (rate limited) and
// 7000 (no route) approximate Cloudflare's; tests should rely on the HTTP
// status, not on the code.
package cftest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Server is the fake API. Its methods are safe for concurrent use.
type Server struct {
	token  string
	srv    *httptest.Server
	routes []route

	mu          sync.Mutex
	seq         int
	lists       map[string]*list    // by list id
	ops         map[string]*bulkOp  // by operation id
	pending     map[string]*bulkOp  // by account id: the unfinished operation
	rulesets    map[string]*ruleset // by ruleset id
	entrypoints map[string]string   // zone id + "/" + phase → ruleset id
	access      map[string][]AccessRule
	faults      []*fault
	requests    []Request
	bulkPolls   int
	bulkTime    time.Duration
	failBulk    string
	maxPerPage  int
}

// List is an account's custom list.
type List struct {
	ID, AccountID, Name, Kind, Description string
}

// Item is an item of an IP list, its IP as stored (address or CIDR).
type Item struct {
	ID, IP, Comment string
}

// Rule is a rule of a ruleset.
type Rule struct {
	ID, Action, Expression, Description, Ref string
	Enabled                                  bool
}

// AccessRule is a zone IP Access Rule.
type AccessRule struct {
	ID, Mode, Target, Value, Notes string
}

// Request is one request the server received.
type Request struct {
	Time     time.Time
	Method   string
	Endpoint string // the route template, e.g. "POST /accounts/{account_id}/rules/lists/{list_id}/items"
	Path     string
	Body     []byte // the request body as sent
}

// Fault is what an injected failure does to a request.
type Fault struct {
	// Endpoint limits the fault to one route template (as in Request);
	// empty matches every request.
	Endpoint string
	// Delay holds the answer back this long, or until the client gives
	// up; then the fault's answer (or the normal one) is sent.
	Delay time.Duration
	// Status answers with this HTTP status and a Cloudflare error body
	// holding Code (default 10000+Status) and Message (default the status
	// text), with a Retry-After header when RetryAfter is set.
	Status     int
	Code       int
	Message    string
	RetryAfter string
	// Malformed answers 200 with a truncated JSON body.
	Malformed bool
}

type fault struct {
	Fault
	left int
}

type list struct {
	List
	items    []*Item
	created  time.Time
	modified time.Time
}

type bulkOp struct {
	id, account string
	pollsLeft   int
	status      string // pending, completed or failed
	failure     string
	apply       func() // the write, run when the operation completes
	completed   time.Time
	due         time.Time // Cloudflare finishes it by then, polled or not
}

type ruleset struct {
	id, zone, name, kind, phase, description string
	version                                  int
	rules                                    []Rule
	updated                                  time.Time
}

// New starts a server that accepts token, stopped when the test ends.
func New(tb testing.TB, token string) *Server {
	tb.Helper()
	s := &Server{
		token:       token,
		routes:      routeTable(),
		lists:       map[string]*list{},
		ops:         map[string]*bulkOp{},
		pending:     map[string]*bulkOp{},
		rulesets:    map[string]*ruleset{},
		entrypoints: map[string]string{},
		access:      map[string][]AccessRule{},
		bulkPolls:   1,
		bulkTime:    time.Second,
		maxPerPage:  500,
	}
	s.srv = httptest.NewServer(s)
	tb.Cleanup(s.srv.Close)
	return s
}

// URL is the API's base URL, like https://api.cloudflare.com/client/v4/.
func (s *Server) URL() string { return s.srv.URL + "/client/v4/" }

// Inject makes the next n requests matching f.Endpoint fail as f says.
// Faults apply in the order they were injected.
func (s *Server) Inject(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &fault{Fault: f, left: n})
}

// RateLimitNext answers the next n requests with 429 and Retry-After: 1.
func (s *Server) RateLimitNext(n int) {
	s.Inject(n, Fault{Status: http.StatusTooManyRequests, RetryAfter: "1", Code: 971,
		Message: "Please wait and consider throttling your request speed"})
}

// FailNext answers the next n requests with status.
func (s *Server) FailNext(n, status int) { s.Inject(n, Fault{Status: status}) }

// HangNext holds the next n requests for d (or until the client gives up).
func (s *Server) HangNext(n int, d time.Duration) { s.Inject(n, Fault{Delay: d}) }

// MalformedNext answers the next n requests with broken JSON.
func (s *Server) MalformedNext(n int) { s.Inject(n, Fault{Malformed: true}) }

// SetBulkPolls sets how many status polls of a new bulk operation answer
// "pending" before it completes (default 1). A large number keeps
// operations pending until ReleaseBulkOperations or
// CompleteBulkOperations.
func (s *Server) SetBulkPolls(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bulkPolls = n
}

// SetBulkTime sets how long a bulk operation takes when nobody polls it
// (default 1s; 0: only polls complete it): Cloudflare finishes the work
// whether or not the client that started it is still there.
func (s *Server) SetBulkTime(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bulkTime = d
}

// FailNextBulk makes the next bulk operation end "failed" with msg,
// changing nothing.
func (s *Server) FailNextBulk(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failBulk = msg
}

// CompleteBulkOperations finishes every pending bulk operation now.
func (s *Server) CompleteBulkOperations() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range s.pending {
		s.finish(op)
	}
}

// ReleaseBulkOperations lets every pending bulk operation complete at its
// next status poll, as Cloudflare finishing the work would.
func (s *Server) ReleaseBulkOperations() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, op := range s.pending {
		op.pollsLeft = 0
	}
}

// SetMaxPerPage caps the page size of list items and access rules
// (default 500), to exercise pagination with few items.
func (s *Server) SetMaxPerPage(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxPerPage = n
}

// Requests returns the requests received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Count returns how many requests went to endpoint, a route template such
// as "POST /accounts/{account_id}/rules/lists/{list_id}/items".
func (s *Server) Count(endpoint string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if r.Endpoint == endpoint {
			n++
		}
	}
	return n
}

// Lists returns the lists of an account.
func (s *Server) Lists(account string) []List {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []List
	for _, l := range s.sortedLists(account) {
		out = append(out, l.List)
	}
	return out
}

// CreateList adds a list to an account and returns its id.
func (s *Server) CreateList(account, name, kind string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newList(account, name, kind, "").ID
}

// Items returns the items of an account's list, in order.
func (s *Server) Items(account, listName string) []Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.listByName(account, listName)
	if l == nil {
		return nil
	}
	out := make([]Item, len(l.items))
	for i, it := range l.items {
		out[i] = *it
	}
	return out
}

// AddItem adds an item to an account's list, creating an IP list of that
// name if needed, as someone editing the list by hand would.
func (s *Server) AddItem(account, listName, ip, comment string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.listByName(account, listName)
	if l == nil {
		l = s.newList(account, listName, "ip", "")
	}
	s.upsertItem(l, ip, comment)
}

// RemoveItem deletes the item with this IP from an account's list, as
// someone editing the list by hand would, and reports whether it was there.
func (s *Server) RemoveItem(account, listName, ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.listByName(account, listName)
	if l == nil {
		return false
	}
	for i, it := range l.items {
		if it.IP == ip {
			l.items = append(l.items[:i], l.items[i+1:]...)
			return true
		}
	}
	return false
}

// Rules returns the rules of a zone's http_request_firewall_custom
// entrypoint, nil when the zone has none.
func (s *Server) Rules(zone string) []Rule {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := s.rulesets[s.entrypoints[zone+"/"+customPhase]]
	if rs == nil {
		return nil
	}
	return append([]Rule(nil), rs.rules...)
}

// SetEntrypoint creates the zone's http_request_firewall_custom
// entrypoint with these rules (ids are assigned when empty) and returns
// its id.
func (s *Server) SetEntrypoint(zone string, rules ...Rule) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rs := &ruleset{id: s.newID(), zone: zone, name: "default", kind: "zone", phase: customPhase, version: 1, updated: time.Now()}
	for _, r := range rules {
		if r.ID == "" {
			r.ID = s.newID()
		}
		rs.rules = append(rs.rules, r)
	}
	s.rulesets[rs.id] = rs
	s.entrypoints[zone+"/"+customPhase] = rs.id
	return rs.id
}

// AccessRules returns a zone's IP Access Rules, in order of creation.
func (s *Server) AccessRules(zone string) []AccessRule {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]AccessRule(nil), s.access[zone]...)
}

// AddAccessRule adds an IP Access Rule to a zone and returns its id.
func (s *Server) AddAccessRule(zone string, r AccessRule) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.ID == "" {
		r.ID = s.newID()
	}
	s.access[zone] = append(s.access[zone], r)
	return r.ID
}

const customPhase = "http_request_firewall_custom"

// ServeHTTP answers one API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/client/v4")
	rt, params := s.match(r.Method, path)
	endpoint := r.Method + " " + path
	if rt != nil {
		endpoint = rt.method + " " + rt.path
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return // the client went away
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	s.mu.Lock()
	s.requests = append(s.requests, Request{Time: time.Now(), Method: r.Method, Endpoint: endpoint, Path: r.URL.Path, Body: body})
	f := s.takeFault(endpoint)
	s.mu.Unlock()

	if r.Header.Get("Authorization") != "Bearer "+s.token {
		writeError(w, http.StatusUnauthorized, 10000, "Authentication error")
		return
	}
	if f != nil {
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		switch {
		case f.Malformed:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"success":true,"errors":[],"messages":[],"result":{"id":`)
			return
		case f.Status != 0:
			code, msg := f.Code, f.Message
			if code == 0 {
				code = 10000 + f.Status
			}
			if msg == "" {
				msg = http.StatusText(f.Status)
			}
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			writeError(w, f.Status, code, msg)
			return
		}
	}
	if !ok || rt == nil {
		writeError(w, http.StatusNotFound, 7000, "No route for that URI")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rt.handle(s, w, r, params)
}

func (s *Server) takeFault(endpoint string) *Fault {
	for i, f := range s.faults {
		if f.Endpoint != "" && f.Endpoint != endpoint {
			continue
		}
		f.left--
		if f.left <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		return &f.Fault
	}
	return nil
}

// route is one endpoint; {name} segments match any value.
type route struct {
	method, path string
	handle       func(s *Server, w http.ResponseWriter, r *http.Request, p map[string]string)
}

// routeTable lists the endpoints, tried in order, so fixed segments come
// before parameters.
func routeTable() []route {
	return []route{
		{"GET", "/accounts/{account_id}/rules/lists", (*Server).getLists},
		{"POST", "/accounts/{account_id}/rules/lists", (*Server).createList},
		{"GET", "/accounts/{account_id}/rules/lists/bulk_operations/{operation_id}", (*Server).getBulkOp},
		{"GET", "/accounts/{account_id}/rules/lists/{list_id}", (*Server).getList},
		{"GET", "/accounts/{account_id}/rules/lists/{list_id}/items", (*Server).getItems},
		{"POST", "/accounts/{account_id}/rules/lists/{list_id}/items", (*Server).appendItems},
		{"DELETE", "/accounts/{account_id}/rules/lists/{list_id}/items", (*Server).deleteItems},
		{"GET", "/zones/{zone_id}/rulesets/phases/{phase}/entrypoint", (*Server).getEntrypoint},
		{"POST", "/zones/{zone_id}/rulesets", (*Server).createRuleset},
		{"GET", "/zones/{zone_id}/rulesets/{ruleset_id}", (*Server).getRuleset},
		{"POST", "/zones/{zone_id}/rulesets/{ruleset_id}/rules", (*Server).createRule},
		{"GET", "/zones/{zone_id}/firewall/access_rules/rules", (*Server).getAccessRules},
		{"POST", "/zones/{zone_id}/firewall/access_rules/rules", (*Server).createAccessRule},
		{"DELETE", "/zones/{zone_id}/firewall/access_rules/rules/{rule_id}", (*Server).deleteAccessRule},
	}
}

func (s *Server) match(method, path string) (*route, map[string]string) {
	got := strings.Split(strings.Trim(path, "/"), "/")
	for i := range s.routes {
		rt := &s.routes[i]
		if rt.method != method {
			continue
		}
		want := strings.Split(strings.Trim(rt.path, "/"), "/")
		if len(want) != len(got) {
			continue
		}
		params := map[string]string{}
		ok := true
		for j, seg := range want {
			if name, isParam := strings.CutPrefix(seg, "{"); isParam {
				params[strings.TrimSuffix(name, "}")] = got[j]
			} else if seg != got[j] {
				ok = false
				break
			}
		}
		if ok {
			return rt, params
		}
	}
	return nil, nil
}

// --- lists ---

type listJSON struct {
	ID                    string `json:"id"`
	Name                  string `json:"name"`
	Kind                  string `json:"kind"`
	Description           string `json:"description"`
	NumItems              int    `json:"num_items"`
	NumReferencingFilters int    `json:"num_referencing_filters"`
	CreatedOn             string `json:"created_on"`
	ModifiedOn            string `json:"modified_on"`
}

func (l *list) json() listJSON {
	return listJSON{ID: l.ID, Name: l.Name, Kind: l.Kind, Description: l.Description, NumItems: len(l.items),
		CreatedOn: stamp(l.created), ModifiedOn: stamp(l.modified)}
}

func (s *Server) getLists(w http.ResponseWriter, _ *http.Request, p map[string]string) {
	out := []listJSON{}
	for _, l := range s.sortedLists(p["account_id"]) {
		out = append(out, l.json())
	}
	writeResult(w, http.StatusOK, out, nil)
}

func (s *Server) createList(w http.ResponseWriter, r *http.Request, p map[string]string) {
	var body struct{ Name, Kind, Description string }
	if !decode(w, r, &body) {
		return
	}
	switch {
	case !validListName(body.Name):
		writeError(w, http.StatusBadRequest, 10018, "name: only lowercase letters, digits and underscores, at most 50")
	case body.Kind != "ip" && body.Kind != "asn" && body.Kind != "hostname" && body.Kind != "redirect":
		writeError(w, http.StatusBadRequest, 10019, "kind: must be one of ip, asn, hostname, redirect")
	case s.listByName(p["account_id"], body.Name) != nil:
		writeError(w, http.StatusConflict, 10013, "a list with this name already exists")
	default:
		writeResult(w, http.StatusOK, s.newList(p["account_id"], body.Name, body.Kind, body.Description).json(), nil)
	}
}

func (s *Server) getList(w http.ResponseWriter, _ *http.Request, p map[string]string) {
	l := s.list(p)
	if l == nil {
		writeError(w, http.StatusNotFound, 10000+404, "list not found")
		return
	}
	writeResult(w, http.StatusOK, l.json(), nil)
}

type itemJSON struct {
	ID         string `json:"id"`
	IP         string `json:"ip"`
	Comment    string `json:"comment,omitempty"`
	CreatedOn  string `json:"created_on"`
	ModifiedOn string `json:"modified_on"`
}

func (s *Server) getItems(w http.ResponseWriter, r *http.Request, p map[string]string) {
	l := s.list(p)
	if l == nil {
		writeError(w, http.StatusNotFound, 10000+404, "list not found")
		return
	}
	q := r.URL.Query()
	var items []*Item
	for _, it := range l.items {
		if strings.HasPrefix(it.IP, q.Get("search")) {
			items = append(items, it)
		}
	}
	start := 0
	if c := q.Get("cursor"); c != "" {
		n, err := decodeCursor(c)
		if err != nil || n > len(items) {
			writeError(w, http.StatusBadRequest, 10034, "cursor: invalid")
			return
		}
		start = n
	}
	end := min(start+s.perPage(q.Get("per_page"), 25), len(items))
	out := []itemJSON{}
	for _, it := range items[start:end] {
		out = append(out, itemJSON{ID: it.ID, IP: it.IP, Comment: it.Comment, CreatedOn: stamp(l.created), ModifiedOn: stamp(l.modified)})
	}
	cursors := map[string]string{}
	if end < len(items) {
		cursors["after"] = encodeCursor(end)
	}
	if start > 0 {
		cursors["before"] = encodeCursor(start)
	}
	writeResult(w, http.StatusOK, out, map[string]any{"cursors": cursors})
}

func (s *Server) appendItems(w http.ResponseWriter, r *http.Request, p map[string]string) {
	l := s.list(p)
	if l == nil {
		writeError(w, http.StatusNotFound, 10000+404, "list not found")
		return
	}
	var body []struct{ IP, Comment string }
	if !decode(w, r, &body) || !s.writable(w, p["account_id"]) {
		return
	}
	for i, it := range body {
		if err := validListIP(it.IP); err != nil {
			writeError(w, http.StatusBadRequest, 10021, fmt.Sprintf("item %d: ip %q: %v", i, it.IP, err))
			return
		}
	}
	s.startBulk(w, p["account_id"], func() {
		for _, it := range body {
			s.upsertItem(l, it.IP, it.Comment)
		}
	})
}

func (s *Server) deleteItems(w http.ResponseWriter, r *http.Request, p map[string]string) {
	l := s.list(p)
	if l == nil {
		writeError(w, http.StatusNotFound, 10000+404, "list not found")
		return
	}
	var body struct {
		Items []struct{ ID string }
	}
	if !decode(w, r, &body) || !s.writable(w, p["account_id"]) {
		return
	}
	s.startBulk(w, p["account_id"], func() {
		drop := map[string]bool{}
		for _, it := range body.Items {
			drop[it.ID] = true
		}
		kept := l.items[:0]
		for _, it := range l.items {
			if !drop[it.ID] {
				kept = append(kept, it)
			}
		}
		l.items = kept
	})
}

// writable refuses a list write while the account has a bulk operation
// pending, as Cloudflare does.
func (s *Server) writable(w http.ResponseWriter, account string) bool {
	if op := s.pending[account]; op != nil && s.bulkTime > 0 && !time.Now().Before(op.due) {
		s.finish(op) // nobody polled it (its client died); Cloudflare finished anyway
	}
	if s.pending[account] == nil {
		return true
	}
	writeError(w, http.StatusTooManyRequests, 10046, "a bulk operation is already in progress for this account; wait until it completes before the next write")
	return false
}

func (s *Server) startBulk(w http.ResponseWriter, account string, apply func()) {
	op := &bulkOp{id: s.newID(), account: account, pollsLeft: s.bulkPolls, status: "pending", apply: apply,
		due: time.Now().Add(s.bulkTime)}
	if s.failBulk != "" {
		op.failure, op.apply, s.failBulk = s.failBulk, nil, ""
	}
	s.ops[op.id] = op
	s.pending[account] = op
	writeResult(w, http.StatusOK, map[string]string{"operation_id": op.id}, nil)
}

func (s *Server) getBulkOp(w http.ResponseWriter, _ *http.Request, p map[string]string) {
	op := s.ops[p["operation_id"]]
	if op == nil || op.account != p["account_id"] {
		writeError(w, http.StatusNotFound, 10000+404, "operation not found")
		return
	}
	if op.status == "pending" {
		if op.pollsLeft > 0 {
			op.pollsLeft--
		} else {
			s.finish(op)
		}
	}
	res := map[string]string{"id": op.id, "status": op.status}
	if op.status != "pending" {
		res["completed"] = stamp(op.completed)
	}
	if op.status == "failed" {
		res["error"] = op.failure
	}
	writeResult(w, http.StatusOK, res, nil)
}

func (s *Server) finish(op *bulkOp) {
	if op.status != "pending" {
		return
	}
	op.status, op.completed = "completed", time.Now()
	if op.failure != "" {
		op.status = "failed"
	} else if op.apply != nil {
		op.apply()
	}
	if s.pending[op.account] == op {
		delete(s.pending, op.account)
	}
}

// --- rulesets ---

type ruleJSON struct {
	ID          string `json:"id"`
	Version     string `json:"version"`
	Action      string `json:"action"`
	Expression  string `json:"expression"`
	Description string `json:"description,omitempty"`
	Enabled     bool   `json:"enabled"`
	Ref         string `json:"ref,omitempty"`
	LastUpdated string `json:"last_updated"`
}

type rulesetJSON struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Kind        string     `json:"kind"`
	Phase       string     `json:"phase"`
	Description string     `json:"description,omitempty"`
	Version     string     `json:"version"`
	LastUpdated string     `json:"last_updated"`
	Rules       []ruleJSON `json:"rules"`
}

func (rs *ruleset) json() rulesetJSON {
	out := rulesetJSON{ID: rs.id, Name: rs.name, Kind: rs.kind, Phase: rs.phase, Description: rs.description,
		Version: strconv.Itoa(rs.version), LastUpdated: stamp(rs.updated), Rules: []ruleJSON{}}
	for _, r := range rs.rules {
		out.Rules = append(out.Rules, ruleJSON{ID: r.ID, Version: "1", Action: r.Action, Expression: r.Expression,
			Description: r.Description, Enabled: r.Enabled, Ref: r.Ref, LastUpdated: stamp(rs.updated)})
	}
	return out
}

// ruleBody is a rule as clients send it.
type ruleBody struct {
	Action, Expression, Description, Ref string
	Enabled                              *bool
	Position                             *struct {
		Index         int
		Before, After string
	}
}

func (b ruleBody) rule(id string) (Rule, error) {
	if b.Action == "" || b.Expression == "" {
		return Rule{}, fmt.Errorf("a rule needs an action and an expression")
	}
	enabled := b.Enabled == nil || *b.Enabled
	return Rule{ID: id, Action: b.Action, Expression: b.Expression, Description: b.Description, Ref: b.Ref, Enabled: enabled}, nil
}

func (s *Server) getEntrypoint(w http.ResponseWriter, _ *http.Request, p map[string]string) {
	rs := s.rulesets[s.entrypoints[p["zone_id"]+"/"+p["phase"]]]
	if rs == nil {
		writeError(w, http.StatusNotFound, 10003, "could not find entrypoint ruleset in the "+p["phase"]+" phase")
		return
	}
	writeResult(w, http.StatusOK, rs.json(), nil)
}

func (s *Server) createRuleset(w http.ResponseWriter, r *http.Request, p map[string]string) {
	var body struct {
		Name, Kind, Phase, Description string
		Rules                          []ruleBody
	}
	if !decode(w, r, &body) {
		return
	}
	zone := p["zone_id"]
	if body.Name == "" || body.Kind == "" || body.Phase == "" {
		writeError(w, http.StatusBadRequest, 20021, "a ruleset needs a name, a kind and a phase")
		return
	}
	if body.Kind == "zone" && s.entrypoints[zone+"/"+body.Phase] != "" {
		writeError(w, http.StatusBadRequest, 20217, "a zone ruleset already exists for the "+body.Phase+" phase")
		return
	}
	rs := &ruleset{id: s.newID(), zone: zone, name: body.Name, kind: body.Kind, phase: body.Phase,
		description: body.Description, version: 1, updated: time.Now()}
	for i, b := range body.Rules {
		rule, err := b.rule(s.newID())
		if err != nil {
			writeError(w, http.StatusBadRequest, 20021, fmt.Sprintf("rules[%d]: %v", i, err))
			return
		}
		rs.rules = append(rs.rules, rule)
	}
	s.rulesets[rs.id] = rs
	if body.Kind == "zone" {
		s.entrypoints[zone+"/"+body.Phase] = rs.id
	}
	writeResult(w, http.StatusOK, rs.json(), nil)
}

func (s *Server) getRuleset(w http.ResponseWriter, _ *http.Request, p map[string]string) {
	rs := s.rulesets[p["ruleset_id"]]
	if rs == nil || rs.zone != p["zone_id"] {
		writeError(w, http.StatusNotFound, 10003, "could not find ruleset")
		return
	}
	writeResult(w, http.StatusOK, rs.json(), nil)
}

func (s *Server) createRule(w http.ResponseWriter, r *http.Request, p map[string]string) {
	rs := s.rulesets[p["ruleset_id"]]
	if rs == nil || rs.zone != p["zone_id"] {
		writeError(w, http.StatusNotFound, 10003, "could not find ruleset")
		return
	}
	var body ruleBody
	if !decode(w, r, &body) {
		return
	}
	rule, err := body.rule(s.newID())
	if err != nil {
		writeError(w, http.StatusBadRequest, 20021, err.Error())
		return
	}
	at := len(rs.rules)
	if pos := body.Position; pos != nil {
		for i, x := range rs.rules {
			switch {
			case pos.Before != "" && x.ID == pos.Before:
				at = i
			case pos.After != "" && x.ID == pos.After:
				at = i + 1
			}
		}
		if pos.Index > 0 {
			at = min(pos.Index-1, len(rs.rules))
		}
	}
	rs.rules = append(rs.rules[:at], append([]Rule{rule}, rs.rules[at:]...)...)
	rs.version++
	rs.updated = time.Now()
	writeResult(w, http.StatusOK, rs.json(), nil)
}

// --- access rules ---

type accessRuleJSON struct {
	ID            string            `json:"id"`
	Mode          string            `json:"mode"`
	AllowedModes  []string          `json:"allowed_modes"`
	Configuration map[string]string `json:"configuration"`
	Notes         string            `json:"notes"`
	Scope         map[string]string `json:"scope"`
	CreatedOn     string            `json:"created_on"`
	ModifiedOn    string            `json:"modified_on"`
}

var accessModes = []string{"block", "challenge", "whitelist", "js_challenge", "managed_challenge"}

func accessJSON(zone string, r AccessRule) accessRuleJSON {
	now := stamp(time.Now())
	return accessRuleJSON{ID: r.ID, Mode: r.Mode, AllowedModes: accessModes,
		Configuration: map[string]string{"target": r.Target, "value": r.Value}, Notes: r.Notes,
		Scope: map[string]string{"id": zone, "type": "zone"}, CreatedOn: now, ModifiedOn: now}
}

func (s *Server) getAccessRules(w http.ResponseWriter, r *http.Request, p map[string]string) {
	q := r.URL.Query()
	var match []AccessRule
	for _, a := range s.access[p["zone_id"]] {
		if (q.Get("mode") == "" || a.Mode == q.Get("mode")) &&
			strings.Contains(strings.ToLower(a.Notes), strings.ToLower(q.Get("notes"))) &&
			(q.Get("configuration.target") == "" || a.Target == q.Get("configuration.target")) &&
			(q.Get("configuration.value") == "" || a.Value == q.Get("configuration.value")) {
			match = append(match, a)
		}
	}
	page := max(1, atoi(q.Get("page")))
	perPage := s.perPage(q.Get("per_page"), 20)
	start := min((page-1)*perPage, len(match))
	end := min(start+perPage, len(match))
	out := []accessRuleJSON{}
	for _, a := range match[start:end] {
		out = append(out, accessJSON(p["zone_id"], a))
	}
	writeResult(w, http.StatusOK, out, map[string]int{"page": page, "per_page": perPage, "count": len(out),
		"total_count": len(match), "total_pages": (len(match) + perPage - 1) / perPage})
}

func (s *Server) createAccessRule(w http.ResponseWriter, r *http.Request, p map[string]string) {
	var body struct {
		Mode          string
		Notes         string
		Configuration struct{ Target, Value string }
	}
	if !decode(w, r, &body) {
		return
	}
	zone := p["zone_id"]
	c := body.Configuration
	if !slices.Contains(accessModes, body.Mode) {
		writeError(w, http.StatusBadRequest, 10007, "mode: must be one of "+strings.Join(accessModes, ", "))
		return
	}
	if err := validAccessTarget(c.Target, c.Value); err != nil {
		writeError(w, http.StatusBadRequest, 10008, "configuration: "+err.Error())
		return
	}
	for _, a := range s.access[zone] {
		if a.Target == c.Target && a.Value == c.Value {
			writeError(w, http.StatusBadRequest, 10009, "firewallaccessrules.api.duplicate_of_existing")
			return
		}
	}
	a := AccessRule{ID: s.newID(), Mode: body.Mode, Target: c.Target, Value: c.Value, Notes: body.Notes}
	s.access[zone] = append(s.access[zone], a)
	writeResult(w, http.StatusOK, accessJSON(zone, a), nil)
}

func (s *Server) deleteAccessRule(w http.ResponseWriter, _ *http.Request, p map[string]string) {
	zone := p["zone_id"]
	for i, a := range s.access[zone] {
		if a.ID == p["rule_id"] {
			s.access[zone] = append(s.access[zone][:i], s.access[zone][i+1:]...)
			writeResult(w, http.StatusOK, map[string]string{"id": a.ID}, nil)
			return
		}
	}
	writeError(w, http.StatusNotFound, 10001, "firewallaccessrules.api.not_found")
}

// --- helpers ---

func (s *Server) newID() string {
	s.seq++
	return fmt.Sprintf("%032x", s.seq)
}

func (s *Server) newList(account, name, kind, description string) *list {
	now := time.Now()
	l := &list{List: List{ID: s.newID(), AccountID: account, Name: name, Kind: kind, Description: description},
		created: now, modified: now}
	s.lists[l.ID] = l
	return l
}

func (s *Server) list(p map[string]string) *list {
	l := s.lists[p["list_id"]]
	if l == nil || l.AccountID != p["account_id"] {
		return nil
	}
	return l
}

func (s *Server) listByName(account, name string) *list {
	for _, l := range s.lists {
		if l.AccountID == account && l.Name == name {
			return l
		}
	}
	return nil
}

// sortedLists returns an account's lists in order of creation (ids grow).
func (s *Server) sortedLists(account string) []*list {
	var out []*list
	for _, l := range s.lists {
		if l.AccountID == account {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b *list) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// upsertItem adds an item, or updates the comment of the item with the
// same IP: Cloudflare merges appended items with existing ones.
func (s *Server) upsertItem(l *list, ip, comment string) {
	l.modified = time.Now()
	for _, it := range l.items {
		if it.IP == ip {
			it.Comment = comment
			return
		}
	}
	l.items = append(l.items, &Item{ID: s.newID(), IP: ip, Comment: comment})
}

func (s *Server) perPage(v string, def int) int {
	n := atoi(v)
	if n <= 0 {
		n = def
	}
	return min(n, s.maxPerPage)
}

// validListIP applies Cloudflare's rules for IP list items: an address,
// or a CIDR of /8 to /31 for IPv4 and /12 to /64 for IPv6 (a single IPv4
// address is written without /32).
func validListIP(v string) error {
	if !strings.Contains(v, "/") {
		_, err := netip.ParseAddr(v)
		return err
	}
	p, err := netip.ParsePrefix(v)
	switch {
	case err != nil:
		return err
	case p.Addr().Is4() && (p.Bits() < 8 || p.Bits() > 31):
		return fmt.Errorf("IPv4 CIDR prefix must be /8 to /31")
	case p.Addr().Is6() && (p.Bits() < 12 || p.Bits() > 64):
		return fmt.Errorf("IPv6 CIDR prefix must be /12 to /64")
	case p.Masked() != p:
		return fmt.Errorf("host bits set")
	}
	return nil
}

// validAccessTarget applies Cloudflare's rules for IP Access Rule targets.
func validAccessTarget(target, value string) error {
	switch target {
	case "ip":
		if a, err := netip.ParseAddr(value); err != nil || !a.Is4() {
			return fmt.Errorf("target ip takes a single IPv4 address")
		}
	case "ip6":
		if a, err := netip.ParseAddr(value); err != nil || !a.Is6() {
			return fmt.Errorf("target ip6 takes a single IPv6 address")
		}
	case "ip_range":
		p, err := netip.ParsePrefix(value)
		if err != nil || p.Masked() != p {
			return fmt.Errorf("target ip_range takes a CIDR range")
		}
		if p.Addr().Is4() && p.Bits() != 16 && p.Bits() != 24 || p.Addr().Is6() && p.Bits() != 32 && p.Bits() != 48 && p.Bits() != 64 {
			return fmt.Errorf("ip_range prefix must be /16 or /24 (IPv4), /32, /48 or /64 (IPv6)")
		}
	case "asn", "country":
		if value == "" {
			return fmt.Errorf("value is empty")
		}
	default:
		return fmt.Errorf("target must be ip, ip6, ip_range, asn or country")
	}
	return nil
}

func validListName(s string) bool {
	if s == "" || len(s) > 50 {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

func encodeCursor(n int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(n)))
}

func decodeCursor(c string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(string(b), "offset:")
	if !ok {
		return 0, fmt.Errorf("bad cursor")
	}
	return strconv.Atoi(s)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// decode reads a JSON request body, answering 400 when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, 10026, "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

type envelope struct {
	Success    bool      `json:"success"`
	Errors     []message `json:"errors"`
	Messages   []message `json:"messages"`
	Result     any       `json:"result"`
	ResultInfo any       `json:"result_info,omitempty"`
}

type message struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeResult(w http.ResponseWriter, status int, result, info any) {
	write(w, status, envelope{Success: true, Errors: []message{}, Messages: []message{}, Result: result, ResultInfo: info})
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	write(w, status, envelope{Errors: []message{{Code: code, Message: msg}}, Messages: []message{}})
}

func write(w http.ResponseWriter, status int, e envelope) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(e)
}
