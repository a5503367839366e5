package expression

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/expr-lang/expr"
	"github.com/vigil-sec/vigil/event"
)

// requestEvents and auditEvents cover present and absent optional fields,
// IPv4, IPv6, IPv4-mapped and zoned addresses, unparsable ones, unicode
// (including letters whose case mapping changes their UTF-8 length), invalid
// UTF-8, and extreme numbers.
var requestEvents = []event.Event{
	{
		Source: event.Requests, TS: 1795370400120e6, ID: "req_0001", OrgID: "org_42",
		APIKeyID: "key_7f3a", KeyPermission: "WRITE", IP: "203.0.113.7", Country: "US",
		Method: "GET", Route: "/v1/namespaces/{namespace_id}/documents", Path: "/v1/namespaces/ns_9/documents",
		Operation: "data", Namespace: "ns_9", DataClassification: "CONFIDENTIAL",
		Status: 200, BytesIn: 0, BytesOut: 20480, LatencyMs: 12.5, UserAgent: "client-python/1.4.0",
	},
	{
		Source: event.Requests, TS: 1795370401000e6, ID: "req_0003", OrgID: "org_7", IP: "198.51.100.23",
		Method: "GET", Route: "/v1/organizations/api-keys", Operation: "metadata",
		Status: 401, BytesOut: 64, LatencyMs: 0.9, UserAgent: "curl/8.5.0",
	},
	{
		Source: event.Requests, ID: "req_0004", OrgID: "org_7", IP: "10.1.2.3", Method: "POST",
		Route: "/v1/organizations/{org_id}/upload", Operation: "data", Status: 403,
		BytesIn: 12_000_000, LatencyMs: 1000, UserAgent: "Mozilla/5.0 (X11) SQLMap",
		KeyPermission: "ADMIN", DataClassification: "PHI", Namespace: "ns_phi_1",
	},
	{
		Source: event.Requests, ID: "req_0005", OrgID: "org_é", IP: "2001:db8::42", Method: "DELETE",
		Route: "/v1/namespaces/é/ünïcödé", Operation: "upload", Status: 500, BytesIn: 7, BytesOut: -3,
		LatencyMs: math.Inf(1), UserAgent: "İstanbul ẞtraße KELVIN\u212a ǅ", Country: "TR",
	},
	{
		Source: event.Requests, ID: "req_0006", IP: "::ffff:10.9.8.7", Status: 503, Route: "/v1/search",
		Operation: "search", LatencyMs: math.NaN(), UserAgent: "bad\xffutf8\xc3", BytesIn: math.MaxInt64,
		BytesOut: math.MinInt64, Method: "PATCH",
	},
	{
		Source: event.Requests, ID: "req_0007", IP: "fe80::1%eth0", Status: 404, Route: "/",
		Operation: "compute", LatencyMs: math.Copysign(0, -1), UserAgent: "\uFFFD", Method: "get",
	},
	{Source: event.Requests, IP: "not-an-ip", Route: "", Status: 0},
	{Source: event.Requests}, // every optional field absent
	{
		Source: event.Requests, ID: "req_0009", IP: "::ffff:192.168.0.1", Status: 401, Operation: "data",
		Route: "/v1/organizations", LatencyMs: 49.999, BytesIn: 10e6, UserAgent: "CURL/7", Path: " padded ",
	},
	{Source: event.Requests, IP: "2001:db8:0:0:0:0:0:1%", Status: 299, Route: "/V1/ORGANIZATIONS/X"},
	{Source: event.Requests, IP: "::", Status: 1, Route: "/v1/organizations/"},
	{Source: event.Requests, IP: "255.255.255.255", Status: 599, LatencyMs: 1e300},
}

var auditEvents = []event.Event{
	{
		Source: event.Audit, TS: 1795370405000e6, ID: "evt_0001", OrgID: "org_42", ActorID: "user_12",
		ActorType: "user", IP: "203.0.113.7", Action: "api_key.create", ResourceType: "api_key",
		ResourceID: "key_9c2d", Outcome: "success",
		Changes: []byte(`{"permission":[null,"ADMIN"],"namespaces":[null,["*"]],"role":"admin","count":3}`),
	},
	{
		Source: event.Audit, ID: "evt_0002", OrgID: "org_42", ActorID: "key_9c2d", ActorType: "api_key",
		APIKeyID: "key_9c2d", KeyPermission: "ADMIN", IP: "192.0.2.200", Action: "namespace.delete",
		ResourceType: "namespace", ResourceID: "ns_9", Namespace: "ns_9", DataClassification: "CONFIDENTIAL",
		Outcome: "success",
	},
	{
		Source: event.Audit, ID: "evt_0003", OrgID: "org_7", ActorID: "key_0b11", ActorType: "api_key",
		KeyPermission: "READ", IP: "2001:db8::42", Action: "document.delete", ResourceType: "document",
		Namespace: "ns_phi_1", DataClassification: "PHI", Outcome: "denied", Changes: []byte(`{"role":"viewer"}`),
	},
	{Source: event.Audit, ActorType: "system", Action: "auth.login", Outcome: "failure", Changes: []byte(`not json`)},
	{Source: event.Audit, Action: "Member.Role_Change", Outcome: "FAILURE", IP: "::ffff:10.0.0.1"},
	{Source: event.Audit},
}

func eventsOf(s event.Source) []event.Event {
	if s == event.Audit {
		return auditEvents
	}
	return requestEvents
}

// reference is expr's own answer: the VM on the environment of e, a run-time
// error counting as false.
func reference(t testing.TB, p *Predicate, e *event.Event) bool {
	t.Helper()
	out, err := expr.Run(p.program, envFor(e, p.source, true))
	if err != nil {
		return false
	}
	b, ok := out.(bool)
	if !ok && out != nil {
		t.Fatalf("expr returned %T %v", out, out)
	}
	return b
}

type exprCase struct {
	src    string
	source event.Source
	fast   bool // expected to compile to closures
}

func req(src string) exprCase   { return exprCase{src, event.Requests, true} }
func aud(src string) exprCase   { return exprCase{src, event.Audit, true} }
func reqVM(src string) exprCase { return exprCase{src, event.Requests, false} }
func audVM(src string) exprCase { return exprCase{src, event.Audit, false} }

var differentialCases = []exprCase{
	// The examples of docs/rules.md.
	req(`status >= 500`),
	req(`operation == "upload" && bytes_in > 10e6`),
	req(`route startsWith "/v1/organizations"`),
	aud(`action in ["api_key.create", "api_key.update"]`),
	req(`data_classification == "PHI"`),
	aud(`data_classification == "PHI"`),
	req(`cidr(ip, "10.0.0.0/8")`),
	req(`status in [401, 403]`),
	aud(`key_permission == "ADMIN"`),
	aud(`action == "api_key.create"`),
	aud(`action endsWith ".delete"`),

	// Identifiers of every type, missing optional fields as zero values.
	req(`api_key_id == ""`),
	req(`bytes_in == 0 && bytes_out == 0`),
	req(`latency_ms == 0`),
	req(`country != ""`),
	req(`ts > 1795370400000`),
	aud(`ts == 0`),
	aud(`status == "success"`),
	aud(`status != "success" and actor_type == "api_key"`),
	aud(`resource_id == "" || namespace == ""`),
	req(`$env.status == 401`),
	req(`$env["route"] startsWith "/v1"`),
	req(`$env?.status == 401`),

	// Literals and unary operators.
	req(`true`),
	req(`false || status == 200`),
	req(`!(status == 200)`),
	req(`not (status == 200)`),
	req(`not not true`),
	req(`-status < -400`),
	req(`+status == 401`),
	req(`-latency_ms < -1`),
	req(`(status + 0) == nil`), // a bare field compared with nil is a load error
	req(`(status + 0) != nil`),
	req(`nil == nil`),
	req(`nil != latency_ms * 1`),

	// Comparisons: int/int, int/float, float/float, strings, bools.
	req(`status == 401.0`),
	req(`status < 401.5`),
	req(`401 == status`),
	req(`500 <= status`),
	req(`1 < 2 && status > 0`),
	req(`latency_ms > 1`),
	req(`latency_ms >= 12.5`),
	req(`latency_ms != latency_ms`), // NaN
	req(`latency_ms == latency_ms`),
	req(`latency_ms <= status`),
	req(`bytes_in > bytes_out`),
	req(`route < "/v1/o"`),
	req(`route >= method`),
	req(`route > "" && route <= "/v1/organizations/api-keys"`),
	req(`(status == 401) == (operation == "metadata")`),
	req(`(status == 401) != true`),
	req(`0 < status < 500`),
	req(`200 <= status <= 299`),

	// Arithmetic, with expr's int/float rules and its division.
	req(`status + 1 == 402`),
	req(`status - 1.5 == 399.5`),
	req(`status * 2 > 1000`),
	req(`bytes_in / bytes_out > 1`),       // /0 is +Inf or NaN
	req(`bytes_out / 0 == bytes_out / 0`), // NaN for 0/0
	req(`status / 2 == 200.5`),
	req(`status % 100 == 1`),
	req(`status % 7 == 0 || status % 2 == 1`),
	req(`bytes_in % bytes_out == 0`), // run-time error when bytes_out is 0
	req(`status == 1 || bytes_in % 0 == 0`),
	req(`status != 1 && bytes_in % 0 == 0`),
	req(`status ** 2 > 160000`),
	req(`2 ^ 10 == 1024`),
	req(`bytes_in + bytes_in < 0`), // wraps around like Go's int
	req(`latency_ms * 1000 > 12000`),
	req(`-bytes_out > 0`),

	// in / not in.
	req(`status not in [200, 201, 204]`),
	req(`status in [401, 403.0]`),
	req(`status in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 401, 500]`),
	req(`status in []`),
	req(`status in [401, "x", nil, true]`),
	req(`latency_ms in [12.5, 1000, 0]`),
	req(`latency_ms in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12.5, 1000]`),
	req(`operation in ["data", "upload"]`),
	req(`operation not in ["data", "upload", "search", "metadata", "compute", "a", "b", "c", "d", "e"]`),
	req(`method in ["GET", "PUT", -1]`),
	req(`nil in [nil]`),
	req(`nil in [1, "a"]`),
	req(`(status == 401) in [true]`),
	req(`(status == 401) not in [true, 1]`),
	req(`status in [400 + 1, -(-403)]`),
	req(`route in ["/" + "v1" + "/search", "/"]`),
	req(`status in 400..499`),
	req(`status not in 500..599`),
	req(`status in 10..1`),

	// String operators.
	req(`route contains "organizations"`),
	req(`route not contains "é"`),
	req(`user_agent contains ""`),
	req(`route startsWith ""`),
	req(`route endsWith "documents"`),
	req(`route not endsWith "s"`),
	req(`route startsWith method`),
	req(`path contains namespace`),
	req(`user_agent matches "^curl/"`),
	req(`user_agent matches "(?i)sqlmap"`),
	req(`route not matches "^/v1/(namespaces|organizations)/"`),
	req(`route matches "ü"`),
	req(`route matches "/" + "v1"`),
	aud(`action matches "\\.delete$"`),

	// ?? and the ternary.
	req(`(status ?? 0) == 401`),
	req(`(nil ?? status) == 401`),
	req(`(nil ?? "x") == "x"`),
	req(`(route ?? "x") == "/"`),
	req(`(status > 400 ? "bad" : "good") == "bad"`),
	req(`status > 400 ? operation == "data" : route startsWith "/v1"`),
	req(`(status > 400 ? latency_ms : 1.5) > 1`),
	req(`(status > 400 ? status : 0) in [401, 403]`),
	req(`status == 401 ? true : false`),

	// Builtins on strings.
	req(`len(route) > 10`),
	req(`len(org_id) == 5`), // runes, not bytes: "org_é"
	req(`len(lower(user_agent)) == len(user_agent)`),
	req(`lower(user_agent) contains "sqlmap"`),
	req(`lower(user_agent) startsWith "curl/"`),
	req(`upper(user_agent) endsWith "SQLMAP"`),
	req(`lower(method) == "get"`),
	req(`lower(method) in ["get", "post"]`),
	req(`upper(method) not in ["GET", "POST", "PUT"]`),
	req(`lower(user_agent) == user_agent`),
	req(`upper(user_agent) == upper(lower(user_agent))`),
	req(`lower(upper(user_agent)) contains "i̇stanbul"`),
	req(`upper(user_agent) contains "STRASSE"`),
	req(`lower(user_agent) contains "\u212a" || lower(user_agent) contains "k"`),
	req(`lower(user_agent) contains "\ufffd"`),
	req(`upper(user_agent) endsWith "\ufffd"`),
	req(`lower(user_agent) < route`),
	req(`lower(route) >= upper(route)`),
	req(`route startsWith lower("/V1/")`),
	req(`lower(route) startsWith "/v1/organizations"`),
	req(`trim(path) == "padded"`),
	req(`trim(route, "/") == "v1/search"`),
	req(`trimPrefix(route, "/v1") == "/search"`),
	req(`trimSuffix(route, "search") == "/v1/"`),
	req(`trimPrefix(" " + "x") == "x"`),
	req(`lower(trim(path)) == "padded"`),

	// cidr: families, prefix edges, mapped and zoned addresses, bad input.
	req(`cidr(ip, "0.0.0.0/0")`),
	req(`cidr(ip, "::/0")`),
	req(`cidr(ip, "203.0.113.7/32")`),
	req(`cidr(ip, "2001:db8::42/128")`),
	req(`cidr(ip, "2001:db8::/32")`),
	req(`cidr(ip, "10.1.2.3/8")`), // host bits ignored
	req(`cidr(ip, "::ffff:10.0.0.0/104")`),
	req(`cidr(ip, "::ffff:0:0/96")`),
	req(`cidr(ip, "fe80::/10")`),
	req(`cidr(ip, "192.168.0.0/16") || cidr(ip, "172.16.0.0/12")`),
	req(`not cidr(ip, "10.0.0.0/8")`),
	req(`cidr(route, "10.0.0.0/8")`),
	req(`cidr("10.0.0.1", "10.0.0.0/8")`),
	req(`ip | cidr("10.0.0.0/8")`),
	req(`cidr(trim(ip), "10.0.0.0/8")`),
	aud(`cidr(ip, "192.0.2.0/24")`),
	aud(`cidr(ip, "10.0.0.0/8")`),

	// Audit-specific.
	aud(`actor_type == "api_key" && key_permission in ["ADMIN", "DELETE"]`),
	aud(`lower(action) == "member.role_change"`),
	aud(`status in ["failure", "denied"]`),
	aud(`lower(status) == "failure"`),

	// These run on the VM, with the same answers.
	audVM(`changes.role == "admin"`),
	audVM(`changes?.role == "viewer"`),
	audVM(`changes.count > 2`),
	audVM(`"role" in changes`),
	audVM(`changes == nil`),
	audVM(`changes.role`), // run-time error unless a bool
	reqVM(`(status > 400 ? 1 : 2.5) > 1`),
	reqVM(`status in [401, status]`),
	reqVM(`route + "x" == "/x"`),
	reqVM(`route matches path`),
	reqVM(`lower(route) matches "a"`),
	reqVM(`let s = status; s > 400`),
	reqVM(`any([401, 403], # == status)`),
	reqVM(`abs(status) == 401`),
	reqVM(`status in 1..1000000`), // exceeds expr's memory budget: a run-time error
	reqVM(`string(status) == "401"`),
	reqVM(`(status > 400 ? nil : 1) == nil`),
	reqVM(`$env.status in 400..bytes_in`),
}

func TestMatchAgreesWithExpr(t *testing.T) {
	for _, tc := range differentialCases {
		p, err := Compile(tc.src, tc.source)
		if err != nil {
			t.Errorf("Compile(%q, %v): %v", tc.src, tc.source, err)
			continue
		}
		if p.Compiled() != tc.fast {
			t.Errorf("Compile(%q, %v).Compiled() = %v, want %v", tc.src, tc.source, p.Compiled(), tc.fast)
		}
		for i := range eventsOf(tc.source) {
			e := &eventsOf(tc.source)[i]
			if got, want := p.Match(e), reference(t, p, e); got != want {
				t.Errorf("%q on %v event %d (%s): Match = %v, expr says %v", tc.src, tc.source, i, e.ID, got, want)
			}
		}
	}
}

func TestCompiledExpressionsAreNotAllConstant(t *testing.T) {
	// Guards the differential table against a broken test: each source must
	// see both answers somewhere.
	seen := map[event.Source][2]bool{}
	for _, tc := range differentialCases {
		p, err := Compile(tc.src, tc.source)
		if err != nil {
			continue
		}
		s := seen[tc.source]
		for i := range eventsOf(tc.source) {
			if p.Match(&eventsOf(tc.source)[i]) {
				s[1] = true
			} else {
				s[0] = true
			}
		}
		seen[tc.source] = s
	}
	for src, s := range seen {
		if !s[0] || !s[1] {
			t.Errorf("%v: answers seen (false, true) = %v", src, s)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		source event.Source
		want   Error
	}{
		{"unknown field with a suggestion", `stauts == 401`, event.Requests,
			Error{1, 1, "unknown field stauts for source requests (did you mean status?)"}},
		{"field of the other source", `action == "x"`, event.Requests,
			Error{1, 1, "unknown field action for source requests"}},
		{"unknown function", `status == 1 || foo(ip)`, event.Requests,
			Error{1, 16, "unknown function foo"}},
		{"string compared with int field", `status == "x"`, event.Requests,
			Error{1, 8, "invalid operation: == (mismatched types int and string)"}},
		{"audit status is a string", `status >= 500`, event.Audit,
			Error{1, 8, "invalid operation: >= (mismatched types string and int)"}},
		{"in with elements of the wrong type", `status in ["401"]`, event.Requests,
			Error{1, 8, "cannot use int as type string in array"}},
		{"not binds tighter than ==", `not status == 200`, event.Requests,
			Error{1, 1, "invalid operation: not (mismatched type int)"}},
		{"syntax error at the end (expr points at the last character)", `status >=`, event.Requests,
			Error{1, 9, "unexpected token EOF"}},
		{"unclosed bracket (at the last character)", `status in [401, 403`, event.Requests,
			Error{1, 19, "unexpected token EOF"}},
		{"non-boolean result", `bytes_in + 1`, event.Requests,
			Error{1, 1, "expression must be boolean, not int"}},
		{"non-boolean result after blanks", "  \n route", event.Requests,
			Error{2, 2, "expression must be boolean, not string"}},
		{"nil result", `nil`, event.Requests,
			Error{1, 1, "expression must be boolean"}},
		{"bad regexp", `route matches "("`, event.Requests,
			Error{1, 7, "error parsing regexp: missing closing ): `(`"}},
		{"bad cidr literal", `cidr(ip, "10.0.0.0/33")`, event.Requests,
			Error{1, 10, `cidr: "10.0.0.0/33" is not a CIDR prefix like "10.0.0.0/8" or "2001:db8::/32"`}},
		{"cidr without prefix length", `cidr(ip, "10.0.0.1")`, event.Requests,
			Error{1, 10, `cidr: "10.0.0.1" is not a CIDR prefix like "10.0.0.0/8" or "2001:db8::/32"`}},
		{"non-literal cidr prefix", `cidr(ip, route)`, event.Requests,
			Error{1, 10, `cidr: the prefix must be a string literal, like cidr(ip, "10.0.0.0/8")`}},
		{"constant but not literal cidr prefix", `status > 1 && cidr(ip, "10.0.0.0" + "/8")`, event.Requests,
			Error{1, 24, `cidr: the prefix must be a string literal, like cidr(ip, "10.0.0.0/8")`}},
		{"cidr on an int", `cidr(status, "10.0.0.0/8")`, event.Requests,
			Error{1, 6, "cannot use int as argument (type string) to call cidr "}},
		{"error on line 2", "status == 401 &&\n  operation == 3", event.Requests,
			Error{2, 13, "invalid operation: == (mismatched types string and int)"}},
		{"unknown field on line 3 after unicode", "route == \"é\" ||\n\n  ünknown == 1", event.Requests,
			Error{3, 3, "unknown field ünknown for source requests"}},
		{"columns count runes", `route == "ééé" && status == "x"`, event.Requests,
			Error{1, 26, "invalid operation: == (mismatched types int and string)"}},
		{"empty", "  ", event.Requests, Error{1, 1, "empty expression"}},
		{"unknown source", `status == 1`, event.Source(9), Error{1, 1, "unknown event source unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Compile(tt.src, tt.source)
			if err == nil {
				t.Fatalf("Compile(%q) = %v, want an error", tt.src, p)
			}
			var got *Error
			if !errors.As(err, &got) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			if *got != tt.want {
				t.Errorf("Compile(%q):\n got %d:%d %q\nwant %d:%d %q", tt.src,
					got.Line, got.Column, got.Message, tt.want.Line, tt.want.Column, tt.want.Message)
			}
			if got.Error() != tt.want.Message {
				t.Errorf("Error() = %q, want the message alone", got.Error())
			}
		})
	}
}

func TestFields(t *testing.T) {
	tests := []struct {
		src    string
		source event.Source
		want   []string
	}{
		{`status in [401, 403] && operation == "data"`, event.Requests, []string{"operation", "status"}},
		{`cidr(ip, "10.0.0.0/8") || cidr(ip, "::1/128")`, event.Requests, []string{"ip"}},
		{`$env.route startsWith "/v1" && $env["ts"] > 0`, event.Requests, []string{"route", "ts"}},
		{`let s = route; s == "" || status == 1`, event.Requests, []string{"route", "status"}},
		{`changes.role == "admin" && status == "success"`, event.Audit, []string{"changes", "status"}},
		{`true`, event.Requests, nil},
	}
	for _, tt := range tests {
		p, err := Compile(tt.src, tt.source)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.src, err)
		}
		if got := p.Fields(); !slices.Equal(got, tt.want) {
			t.Errorf("Fields(%q) = %q, want %q", tt.src, got, tt.want)
		}
	}
}

// TestEnvMatchesSchema keeps the VM environment in step with event.Fields:
// same names, same order, and the same values as the schema getters.
func TestEnvMatchesSchema(t *testing.T) {
	for _, source := range []event.Source{event.Requests, event.Audit} {
		for i := range eventsOf(source) {
			e := &eventsOf(source)[i]
			env := reflect.ValueOf(envFor(e, source, false))
			fields := event.Fields(source)
			if env.NumField() != len(fields) {
				t.Fatalf("%v env has %d fields, schema %d", source, env.NumField(), len(fields))
			}
			for j, f := range fields {
				if tag := env.Type().Field(j).Tag.Get("expr"); tag != f.Name {
					t.Fatalf("%v env field %d is %q, schema says %q", source, j, tag, f.Name)
				}
				v := env.Field(j)
				var ok bool
				switch f.Kind {
				case event.String:
					ok = v.String() == f.Str(e)
				case event.Int:
					ok = v.Int() == f.Int(e)
				case event.Float:
					ok = v.Float() == f.Float(e) || math.IsNaN(f.Float(e))
				case event.Object:
					ok = v.Kind() == reflect.Map
				}
				if !ok {
					t.Errorf("%v event %d: env %s = %v, schema getter disagrees", source, i, f.Name, v)
				}
			}
		}
	}
}

func TestChangesDecodedOnlyWhenRead(t *testing.T) {
	e := &auditEvents[0]
	if env := envFor(e, event.Audit, false).(auditEnv); env.Changes != nil {
		t.Errorf("changes decoded although not read")
	}
	p, err := Compile(`changes.role == "admin"`, event.Audit)
	if err != nil {
		t.Fatal(err)
	}
	if !p.withChanges || !p.Match(e) {
		t.Errorf("changes.role: withChanges = %v, Match = %v", p.withChanges, p.Match(e))
	}
	p, err = Compile(`$env["changes"] != nil`, event.Audit)
	if err != nil {
		t.Fatal(err)
	}
	if !p.withChanges || !p.Match(e) {
		t.Errorf("$env[changes]: withChanges = %v, Match = %v", p.withChanges, p.Match(e))
	}
}

func TestCompiledPredicatesDoNotAllocate(t *testing.T) {
	for _, tc := range differentialCases {
		if !tc.fast || raceEnabled && strings.Contains(tc.src, "matches") {
			continue
		}
		p, err := Compile(tc.src, tc.source)
		if err != nil {
			t.Fatal(err)
		}
		for i := range eventsOf(tc.source) {
			e := &eventsOf(tc.source)[i]
			if n := testing.AllocsPerRun(20, func() { p.Match(e) }); n != 0 {
				t.Errorf("%q on event %d: %v allocs per Match, want 0", tc.src, i, n)
			}
		}
	}
}

func TestConcurrentMatch(t *testing.T) {
	// The VM fallback pools its VMs; run both paths from many goroutines
	// under -race.
	var ps []*Predicate
	for _, src := range []string{`changes.role == "admin"`, `status in ["failure", "denied"]`} {
		p, err := Compile(src, event.Audit)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	want := make([][]bool, len(ps))
	for i, p := range ps {
		for j := range auditEvents {
			want[i] = append(want[i], p.Match(&auditEvents[j]))
		}
	}
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 200 {
				for i, p := range ps {
					for j := range auditEvents {
						if p.Match(&auditEvents[j]) != want[i][j] {
							t.Errorf("predicate %d event %d: inconsistent answer", i, j)
							return
						}
					}
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}

func TestNilComparisonsOnFieldsAreRejected(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{`api_key_id == nil`, `1:1: api_key_id is never nil: an absent api_key_id is "", so compare with api_key_id == ""`},
		{`status == 401 && nil != bytes_in`, `1:18: bytes_in is never nil: an absent bytes_in is 0, so compare with bytes_in != 0`},
	} {
		_, err := Compile(tt.src, event.Requests)
		var e *Error
		if !errors.As(err, &e) || fmt.Sprintf("%d:%d: %s", e.Line, e.Column, e.Message) != tt.want {
			t.Errorf("%s: error %v, want %s", tt.src, err, tt.want)
		}
	}
	if _, err := Compile(`changes.role != nil`, event.Audit); err != nil {
		t.Errorf("a key of changes may be absent, so nil is meaningful there: %v", err)
	}
}
