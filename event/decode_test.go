package event

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// kv is one key and its raw JSON value.
type kv struct{ k, v string }

// drop as an edit's value removes the key from the record.
const drop = "\x00drop"

var baseRequest = []kv{
	{"ts", `"2026-11-22T18:00:00.120Z"`},
	{"request_id", `"req_1"`},
	{"org_id", `"org_42"`},
	{"api_key_id", `"key_7f3a"`},
	{"key_permission", `"WRITE"`},
	{"ip", `"203.0.113.7"`},
	{"country", `"US"`},
	{"method", `"GET"`},
	{"route", `"/v1/namespaces/{namespace_id}/documents"`},
	{"path", `"/v1/namespaces/ns_9/documents"`},
	{"operation", `"data"`},
	{"namespace", `"ns_9"`},
	{"data_classification", `"CONFIDENTIAL"`},
	{"status", `200`},
	{"bytes_in", `10`},
	{"bytes_out", `20480`},
	{"latency_ms", `12.5`},
	{"user_agent", `"client-python/1.4.0"`},
}

var baseAudit = []kv{
	{"ts", `"2026-11-22T18:00:05.000Z"`},
	{"event_id", `"evt_1"`},
	{"org_id", `"org_42"`},
	{"actor_id", `"user_12"`},
	{"actor_type", `"user"`},
	{"api_key_id", `"key_9c2d"`},
	{"key_permission", `"ADMIN"`},
	{"ip", `"203.0.113.7"`},
	{"action", `"api_key.create"`},
	{"resource_type", `"api_key"`},
	{"resource_id", `"key_9c2d"`},
	{"namespace", `"ns_9"`},
	{"data_classification", `"PHI"`},
	{"status", `"success"`},
	{"changes", `{"permission":[null,"ADMIN"]}`},
}

// record builds a compact JSON object from base with edits applied. An edit
// replaces the value of a key already there, adds a new key at the end, or
// removes the key when its value is drop.
func record(base []kv, edits ...kv) string {
	fields := append([]kv(nil), base...)
edit:
	for _, ed := range edits {
		for i := range fields {
			if fields[i].k == ed.k {
				fields[i].v = ed.v
				continue edit
			}
		}
		fields = append(fields, ed)
	}
	var b strings.Builder
	b.WriteByte('{')
	n := 0
	for _, f := range fields {
		if f.v == drop {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		b.WriteString(`"` + f.k + `":` + f.v)
	}
	b.WriteByte('}')
	return b.String()
}

func req(edits ...kv) string   { return record(baseRequest, edits...) }
func audit(edits ...kv) string { return record(baseAudit, edits...) }

type decodeCase struct {
	name   string
	src    Source
	in     string
	field  string // want InvalidError.Field
	reason string // want InvalidError.Reason; "" means the record is valid
	check  func(t *testing.T, e *Event)
}

func valid(name string, src Source, in string, check func(t *testing.T, e *Event)) decodeCase {
	return decodeCase{name: name, src: src, in: in, check: check}
}

func invalid(name string, src Source, in, field, reason string) decodeCase {
	return decodeCase{name: name, src: src, in: in, field: field, reason: reason}
}

// end as a needle of invalidAt stands for the end of the input.
const end = "\x00end"

// invalidAt is invalid with a byte offset in the reason: reason has one %d,
// filled with the offset of needle in the input, plus the offset of '|' in
// needle if it has one.
func invalidAt(name string, src Source, in, field, reason, needle string) decodeCase {
	pos := len(in)
	if needle != end {
		bar := max(strings.Index(needle, "|"), 0)
		needle = strings.Replace(needle, "|", "", 1)
		i := strings.Index(in, needle)
		if i < 0 || strings.Count(in, needle) != 1 {
			panic(name + ": needle " + needle + " not found once in " + in)
		}
		pos = i + bar
	}
	return invalid(name, src, in, field, fmt.Sprintf(reason, pos))
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func ts(s string) int64 {
	tm, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return tm.UnixNano()
}

func wantTS(want int64) func(t *testing.T, e *Event) {
	return func(t *testing.T, e *Event) { eq(t, "TS", e.TS, want) }
}

func wantExtra(want string) func(t *testing.T, e *Event) {
	return func(t *testing.T, e *Event) {
		t.Helper()
		if want == "" {
			if e.Extra != nil {
				t.Errorf("Extra = %s, want nil", e.Extra)
			}
			return
		}
		eq(t, "Extra", string(e.Extra), want)
	}
}

// isZero reports whether the named schema field of e holds its zero value.
func isZero(e *Event, name string) bool {
	if name == "changes" {
		return e.Changes == nil
	}
	f, ok := Lookup(e.Source, name)
	if !ok {
		panic("no field " + name)
	}
	switch f.Kind {
	case String:
		return f.Str(e) == ""
	case Int:
		return f.Int(e) == 0
	case Float:
		return f.Float(e) == 0
	}
	return false
}

func decodeCases() []decodeCase {
	cases := []decodeCase{
		valid("a complete request decodes every field", Requests, req(), func(t *testing.T, e *Event) {
			want := Event{Source: Requests, TS: ts("2026-11-22T18:00:00.120Z"), ID: "req_1", OrgID: "org_42",
				APIKeyID: "key_7f3a", KeyPermission: "WRITE", IP: "203.0.113.7", Country: "US", Method: "GET",
				Route: "/v1/namespaces/{namespace_id}/documents", Path: "/v1/namespaces/ns_9/documents",
				Operation: "data", Namespace: "ns_9", DataClassification: "CONFIDENTIAL", Status: 200,
				BytesIn: 10, BytesOut: 20480, LatencyMs: 12.5, UserAgent: "client-python/1.4.0"}
			if !reflect.DeepEqual(*e, want) {
				t.Errorf("got  %+v\nwant %+v", *e, want)
			}
		}),
		valid("a complete audit event decodes every field", Audit, audit(), func(t *testing.T, e *Event) {
			want := Event{Source: Audit, TS: ts("2026-11-22T18:00:05Z"), ID: "evt_1", OrgID: "org_42",
				ActorID: "user_12", ActorType: "user", APIKeyID: "key_9c2d", KeyPermission: "ADMIN",
				IP: "203.0.113.7", Action: "api_key.create", ResourceType: "api_key", ResourceID: "key_9c2d",
				Namespace: "ns_9", DataClassification: "PHI", Outcome: "success",
				Changes: []byte(`{"permission":[null,"ADMIN"]}`)}
			if !reflect.DeepEqual(*e, want) {
				t.Errorf("got  %+v\nwant %+v", *e, want)
			}
		}),
	}

	// Presence: every field of both sources missing and null.
	for _, src := range []Source{Requests, Audit} {
		base, noun := baseRequest, "request"
		if src == Audit {
			base, noun = baseAudit, "audit event"
		}
		for _, f := range Fields(src) {
			name := f.Name
			if f.Required || (name == "ip" && src == Requests) {
				reason := `missing required field "` + name + `"`
				cases = append(cases,
					invalid("a "+noun+" without "+name+" is rejected", src, record(base, kv{name, drop}), name, reason),
					invalid("a "+noun+" with a null "+name+" is rejected as missing", src, record(base, kv{name, "null"}), name, reason))
				continue
			}
			absent := func(t *testing.T, e *Event) {
				if !isZero(e, name) {
					t.Errorf("%s is not the zero value", name)
				}
				if e.Extra != nil {
					t.Errorf("Extra = %s, want nil", e.Extra)
				}
			}
			cases = append(cases,
				valid("a "+noun+" without "+name+" leaves it zero", src, record(base, kv{name, drop}), absent),
				valid("a "+noun+" with a null "+name+" leaves it zero", src, record(base, kv{name, "null"}), absent))
		}
	}

	// Types: every field given a value of the wrong JSON type.
	others := []struct{ raw, got string }{{`1`, "number"}, {`{}`, "object"}, {`[]`, "array"}, {`true`, "boolean"}, {`false`, "boolean"}}
	for _, src := range []Source{Requests, Audit} {
		base, noun := baseRequest, "request"
		if src == Audit {
			base, noun = baseAudit, "audit event"
		}
		for i, f := range Fields(src) {
			name := f.Name
			var raw, want string
			switch {
			case name == "ts":
				raw, want = `true`, `field "ts": not an RFC 3339 time or integer Unix milliseconds`
			case name == "changes":
				raw, want = `[1,2]`, `field "changes": want object, got array`
			case f.Kind == String:
				o := others[i%len(others)]
				raw, want = o.raw, `field "`+name+`": want string, got `+o.got
			case f.Kind == Int:
				raw, want = `"12"`, `field "`+name+`": want integer, got string`
			case f.Kind == Float:
				raw, want = `"12.5"`, `field "`+name+`": want number, got string`
			}
			cases = append(cases, invalid("a "+noun+" with "+name+" of the wrong type is rejected", src, record(base, kv{name, raw}), name, want))
		}
	}

	cases = append(cases,
		// Strings.
		invalid("an empty request_id is rejected", Requests, req(kv{"request_id", `""`}), "request_id", `field "request_id": must not be empty`),
		invalid("an empty event_id is rejected", Audit, audit(kv{"event_id", `""`}), "event_id", `field "event_id": must not be empty`),
		invalid("an empty org_id is rejected", Requests, req(kv{"org_id", `""`}), "org_id", `field "org_id": must not be empty`),
		invalid("an empty method is rejected", Requests, req(kv{"method", `""`}), "method", `field "method": must not be empty`),
		invalid("an empty route is rejected", Requests, req(kv{"route", `""`}), "route", `field "route": must not be empty`),
		invalid("an empty actor_id is rejected", Audit, audit(kv{"actor_id", `""`}), "actor_id", `field "actor_id": must not be empty`),
		invalid("an empty action is rejected", Audit, audit(kv{"action", `""`}), "action", `field "action": must not be empty`),
		invalid("an empty resource_type is rejected", Audit, audit(kv{"resource_type", `""`}), "resource_type", `field "resource_type": must not be empty`),
		valid("empty optional strings are accepted", Requests,
			req(kv{"api_key_id", `""`}, kv{"path", `""`}, kv{"country", `""`}, kv{"namespace", `""`}, kv{"user_agent", `""`}, kv{"key_permission", `""`}, kv{"data_classification", `""`}),
			func(t *testing.T, e *Event) {
				for _, n := range []string{"api_key_id", "path", "country", "namespace", "user_agent", "key_permission", "data_classification"} {
					if !isZero(e, n) {
						t.Errorf("%s is not empty", n)
					}
				}
			}),
		valid("an empty audit resource_id is accepted", Audit, audit(kv{"resource_id", `""`}), func(t *testing.T, e *Event) { eq(t, "ResourceID", e.ResourceID, "") }),

		// Enumerations.
		invalid("a lower-case key_permission is rejected", Requests, req(kv{"key_permission", `"read"`}), "key_permission",
			`field "key_permission": "read" is not one of READ, WRITE, DELETE, ADMIN`),
		valid("every key_permission is accepted", Audit, audit(kv{"key_permission", `"DELETE"`}), func(t *testing.T, e *Event) { eq(t, "KeyPermission", e.KeyPermission, "DELETE") }),
		invalid("an unknown operation is rejected", Requests, req(kv{"operation", `"admin"`}), "operation",
			`field "operation": "admin" is not one of metadata, data, search, upload, compute`),
		invalid("an empty operation is rejected", Requests, req(kv{"operation", `""`}), "operation",
			`field "operation": "" is not one of metadata, data, search, upload, compute`),
		valid("operation compute is accepted", Requests, req(kv{"operation", `"compute"`}), func(t *testing.T, e *Event) { eq(t, "Operation", e.Operation, "compute") }),
		invalid("an unknown data_classification is rejected", Audit, audit(kv{"data_classification", `"SECRET"`}), "data_classification",
			`field "data_classification": "SECRET" is not one of PUBLIC, INTERNAL, CONFIDENTIAL, PHI`),
		invalid("an unknown actor_type is rejected", Audit, audit(kv{"actor_type", `"robot"`}), "actor_type",
			`field "actor_type": "robot" is not one of user, api_key, system`),
		valid("actor_type system is accepted", Audit, audit(kv{"actor_type", `"system"`}), func(t *testing.T, e *Event) { eq(t, "ActorType", e.ActorType, "system") }),
		invalid("an unknown audit status is rejected", Audit, audit(kv{"status", `"ok"`}), "status",
			`field "status": "ok" is not one of success, failure, denied`),
		valid("audit status denied is stored as the outcome", Audit, audit(kv{"status", `"denied"`}), func(t *testing.T, e *Event) {
			eq(t, "Outcome", e.Outcome, "denied")
			eq(t, "Status", e.Status, 0)
		}),
		invalid("a long bad enumeration value is shortened in the reason", Requests, req(kv{"operation", `"` + strings.Repeat("x", 100) + `"`}), "operation",
			`field "operation": "`+strings.Repeat("x", 64)+`…" is not one of metadata, data, search, upload, compute`),

		// ip.
		valid("an IPv6 ip is accepted as written", Requests, req(kv{"ip", `"2001:DB8::42"`}), func(t *testing.T, e *Event) { eq(t, "IP", e.IP, "2001:DB8::42") }),
		valid("an IPv4-mapped IPv6 ip is accepted", Requests, req(kv{"ip", `"::ffff:192.0.2.1"`}), func(t *testing.T, e *Event) { eq(t, "IP", e.IP, "::ffff:192.0.2.1") }),
		invalid("an ip that is not an address is rejected", Requests, req(kv{"ip", `"example.com"`}), "ip", `field "ip": "example.com" is not an IPv4 or IPv6 address`),
		invalid("an IPv4 ip with an octet over 255 is rejected", Requests, req(kv{"ip", `"256.1.1.1"`}), "ip", `field "ip": "256.1.1.1" is not an IPv4 or IPv6 address`),
		invalid("an ip with a zone is rejected", Requests, req(kv{"ip", `"fe80::1%eth0"`}), "ip", `field "ip": "fe80::1%eth0" is not an IPv4 or IPv6 address`),
		invalid("an ip with a port is rejected", Requests, req(kv{"ip", `"203.0.113.7:443"`}), "ip", `field "ip": "203.0.113.7:443" is not an IPv4 or IPv6 address`),
		invalid("an ip with surrounding spaces is rejected", Requests, req(kv{"ip", `" 203.0.113.7"`}), "ip", `field "ip": " 203.0.113.7" is not an IPv4 or IPv6 address`),
		invalid("an empty request ip is rejected", Requests, req(kv{"ip", `""`}), "ip", `field "ip": "" is not an IPv4 or IPv6 address`),
		valid("an empty audit ip counts as absent", Audit, audit(kv{"ip", `""`}), func(t *testing.T, e *Event) { eq(t, "IP", e.IP, "") }),
		invalid("a bad audit ip is rejected", Audit, audit(kv{"ip", `"1.2.3"`}), "ip", `field "ip": "1.2.3" is not an IPv4 or IPv6 address`),

		// status.
		valid("status 0 is accepted", Requests, req(kv{"status", `0`}), func(t *testing.T, e *Event) { eq(t, "Status", e.Status, 0) }),
		valid("status 999 is accepted", Requests, req(kv{"status", `999`}), func(t *testing.T, e *Event) { eq(t, "Status", e.Status, 999) }),
		valid("status -0 is accepted as 0", Requests, req(kv{"status", `-0`}), func(t *testing.T, e *Event) { eq(t, "Status", e.Status, 0) }),
		invalid("status 1000 is rejected", Requests, req(kv{"status", `1000`}), "status", `field "status": 1000 is out of range 0..999`),
		invalid("a negative status is rejected", Requests, req(kv{"status", `-1`}), "status", `field "status": -1 is out of range 0..999`),
		invalid("a fractional status is rejected", Requests, req(kv{"status", `200.5`}), "status", `field "status": want integer, got number 200.5`),
		invalid("status with a zero fraction is rejected", Requests, req(kv{"status", `200.0`}), "status", `field "status": want integer, got number 200.0`),
		invalid("status in exponent form is rejected", Requests, req(kv{"status", `2e2`}), "status", `field "status": want integer, got number 2e2`),
		invalidAt("status with a leading zero is not JSON", Requests, req(kv{"status", `0200`}), "", `invalid JSON at byte %d: unexpected '2', want ',' or '}'`, `:0|200`),
		invalid("a status beyond int64 is rejected", Requests, req(kv{"status", `9223372036854775808`}), "status", `field "status": 9223372036854775808 does not fit a 64-bit integer`),

		// bytes_in, bytes_out.
		valid("zero byte counts are accepted", Requests, req(kv{"bytes_in", `0`}, kv{"bytes_out", `0`}), func(t *testing.T, e *Event) {
			eq(t, "BytesIn", e.BytesIn, 0)
			eq(t, "BytesOut", e.BytesOut, 0)
		}),
		valid("the largest int64 byte count is accepted", Requests, req(kv{"bytes_out", `9223372036854775807`}), func(t *testing.T, e *Event) { eq(t, "BytesOut", e.BytesOut, 1<<63-1) }),
		invalid("a byte count beyond int64 is rejected", Requests, req(kv{"bytes_out", `9223372036854775808`}), "bytes_out", `field "bytes_out": 9223372036854775808 does not fit a 64-bit integer`),
		invalid("a byte count with 20 digits is rejected", Requests, req(kv{"bytes_in", `12345678901234567890`}), "bytes_in", `field "bytes_in": 12345678901234567890 does not fit a 64-bit integer`),
		invalid("a negative byte count is rejected", Requests, req(kv{"bytes_in", `-1`}), "bytes_in", `field "bytes_in": must not be negative, got -1`),
		invalid("the smallest int64 byte count is rejected as negative", Requests, req(kv{"bytes_in", `-9223372036854775808`}), "bytes_in", `field "bytes_in": must not be negative, got -9223372036854775808`),
		invalid("a fractional byte count is rejected", Requests, req(kv{"bytes_out", `1.5`}), "bytes_out", `field "bytes_out": want integer, got number 1.5`),
		invalid("a byte count in exponent form is rejected", Requests, req(kv{"bytes_out", `1E3`}), "bytes_out", `field "bytes_out": want integer, got number 1E3`),

		// latency_ms.
		valid("an integer latency is accepted", Requests, req(kv{"latency_ms", `3`}), func(t *testing.T, e *Event) { eq(t, "LatencyMs", e.LatencyMs, 3) }),
		valid("a zero latency is accepted", Requests, req(kv{"latency_ms", `0.0`}), func(t *testing.T, e *Event) { eq(t, "LatencyMs", e.LatencyMs, 0) }),
		valid("a negative zero latency is stored as zero", Requests, req(kv{"latency_ms", `-0.0`}), func(t *testing.T, e *Event) {
			if e.LatencyMs != 0 || 1/e.LatencyMs < 0 {
				t.Errorf("LatencyMs = %v, want +0", e.LatencyMs)
			}
		}),
		valid("a latency in exponent form is accepted", Requests, req(kv{"latency_ms", `1.25e3`}), func(t *testing.T, e *Event) { eq(t, "LatencyMs", e.LatencyMs, 1250) }),
		valid("a latency with many digits is rounded like strconv", Requests, req(kv{"latency_ms", `0.1000000000000000055511151231257827`}), func(t *testing.T, e *Event) { eq(t, "LatencyMs", e.LatencyMs, 0.1) }),
		valid("a latency too small for a float64 is zero", Requests, req(kv{"latency_ms", `1e-400`}), func(t *testing.T, e *Event) { eq(t, "LatencyMs", e.LatencyMs, 0) }),
		invalid("a negative latency is rejected", Requests, req(kv{"latency_ms", `-0.5`}), "latency_ms", `field "latency_ms": must not be negative, got -0.5`),
		invalid("a latency too large for a float64 is rejected", Requests, req(kv{"latency_ms", `1e400`}), "latency_ms", `field "latency_ms": 1e400 is out of range`),
		invalidAt("a latency with a trailing dot is not JSON", Requests, req(kv{"latency_ms", `1.`}), "latency_ms", `invalid JSON at byte %d: unexpected ',', want a digit after the decimal point`, `:1.|,`),

		// changes.
		valid("changes is kept byte for byte", Audit, audit(kv{"changes", `{ "a" : [1, 2.50, "\u00e9"] ,"b":{}}`}), func(t *testing.T, e *Event) {
			eq(t, "Changes", string(e.Changes), `{ "a" : [1, 2.50, "\u00e9"] ,"b":{}}`)
		}),
		valid("an empty changes object is kept", Audit, audit(kv{"changes", `{}`}), func(t *testing.T, e *Event) { eq(t, "Changes", string(e.Changes), `{}`) }),
		invalid("a changes string is rejected", Audit, audit(kv{"changes", `"x"`}), "changes", `field "changes": want object, got string`),
		invalidAt("invalid JSON inside changes is reported as such", Audit, audit(kv{"changes", `{"a":tru}`}), "changes", `invalid JSON at byte %d: unexpected '}' in literal, want true`, `tru|}`),
		valid("changes in a request is an unknown field", Requests, req(kv{"changes", `{"a":1}`}), func(t *testing.T, e *Event) {
			eq(t, "Changes", e.Changes == nil, true)
			eq(t, "Extra", string(e.Extra), `{"changes":{"a":1}}`)
		}),

		// Fields of the other source are unknown fields.
		valid("audit fields in a request are unknown fields", Requests, req(kv{"event_id", `"e"`}, kv{"actor_id", `7`}), wantExtra(`{"event_id":"e","actor_id":7}`)),
		valid("request fields in an audit event are unknown fields", Audit, audit(kv{"request_id", `"r"`}, kv{"method", `"GET"`}, kv{"latency_ms", `"slow"`}), func(t *testing.T, e *Event) {
			eq(t, "ID", e.ID, "evt_1")
			eq(t, "Extra", string(e.Extra), `{"request_id":"r","method":"GET","latency_ms":"slow"}`)
		}),

		// Unknown fields.
		valid("a record without unknown fields has no Extra", Requests, req(), wantExtra("")),
		valid("unknown fields are kept in Extra byte for byte", Requests,
			`{"trace":"abc",`+req()[1:len(req())-1]+`, "n" : [1, {"x":null}] ,"b":true,"s":"\u00e9\"","f":-1.5e-3}`,
			wantExtra(`{"trace":"abc","n":[1, {"x":null}],"b":true,"s":"\u00e9\"","f":-1.5e-3}`)),
		valid("an unknown key with escapes is kept as written", Audit, audit(kv{`tr\u0061ce`, `null`}), wantExtra(`{"tr\u0061ce":null}`)),
		valid("many unknown fields are all kept", Requests, req(manyUnknown(40)...), wantExtra(manyUnknownExtra(40))),
		valid("a key that only looks like a field name is unknown", Requests, req(kv{"ts ", `1`}, kv{"Status", `1`}, kv{"s", `1`}, kv{"", `1`}), wantExtra(`{"ts ":1,"Status":1,"s":1,"":1}`)),

		// Escapes.
		valid("escapes in strings are decoded", Requests,
			req(kv{"user_agent", `"a\"b\\c\/d\be\ff\ng\rh\ti\u0000j\u00e9\u20AC\ud83d\ude00"`}),
			func(t *testing.T, e *Event) {
				eq(t, "UserAgent", e.UserAgent, "a\"b\\c/d\be\ff\ng\rh\ti\x00jé€😀")
			}),
		valid("a string that is only an escape is decoded", Requests, req(kv{"path", `"\n"`}), func(t *testing.T, e *Event) { eq(t, "Path", e.Path, "\n") }),
		valid("several escaped strings in one record keep their values", Audit,
			audit(kv{"event_id", `"e\u0031"`}, kv{"org_id", `"o\u0032"`}, kv{"actor_id", `"` + strings.Repeat(`\u0041`, 300) + `"`}, kv{"action", `"x\ty"`}),
			func(t *testing.T, e *Event) {
				eq(t, "ID", e.ID, "e1")
				eq(t, "OrgID", e.OrgID, "o2")
				eq(t, "ActorID", e.ActorID, strings.Repeat("A", 300))
				eq(t, "Action", e.Action, "x\ty")
			}),
		valid("an escaped field name is recognised", Requests, req(kv{"org_id", drop}, kv{`org\u005fid`, `"org_9"`}), func(t *testing.T, e *Event) {
			eq(t, "OrgID", e.OrgID, "org_9")
			eq(t, "Extra", e.Extra == nil, true)
		}),
		valid("an escaped timestamp is parsed", Requests, req(kv{"ts", `"2026-11-22T18:00:00\u002e5Z"`}), wantTS(ts("2026-11-22T18:00:00.5Z"))),
		invalidAt("an unknown escape is rejected", Requests, req(kv{"path", `"\x41"`}), "path", `invalid JSON at byte %d: invalid escape "\\x"`, `|\x41`),
		invalidAt("a short \\u escape is rejected", Requests, req(kv{"path", `"\u41"`}), "path", `invalid JSON at byte %d: invalid \u escape`, `|\u41"`),
		invalidAt("a \\u escape with a non-hex digit is rejected", Requests, req(kv{"path", `"\u12G4"`}), "path", `invalid JSON at byte %d: invalid \u escape`, `|\u12G4`),
		invalidAt("a lone high surrogate is rejected", Requests, req(kv{"path", `"\ud83d"`}), "path", `invalid JSON at byte %d: unpaired surrogate in \u escape`, `|\ud83d"`),
		invalidAt("a high surrogate followed by a letter is rejected", Requests, req(kv{"path", `"\ud83dxxxxxx"`}), "path", `invalid JSON at byte %d: unpaired surrogate in \u escape`, `|\ud83dxxxxxx`),
		invalidAt("two high surrogates are rejected", Requests, req(kv{"path", `"\ud83d\ud83d"`}), "path", `invalid JSON at byte %d: unpaired surrogate in \u escape`, `|\ud83d\ud83d`),
		invalidAt("a lone low surrogate is rejected", Requests, req(kv{"path", `"\ude00"`}), "path", `invalid JSON at byte %d: unpaired surrogate in \u escape`, `|\ude00`),
		invalidAt("a lone surrogate in an unknown field is rejected", Requests, req(kv{"x", `["\udc00"]`}), "x", `invalid JSON at byte %d: unpaired surrogate in \u escape`, `|\udc00`),
		invalidAt("a raw control character in a string is rejected", Requests, req(kv{"path", "\"a\tb\""}), "path", `invalid JSON at byte %d: control character in string`, "\t"),
		invalidAt("a raw control character after an escape is rejected", Requests, req(kv{"path", "\"\\n\x01\""}), "path", `invalid JSON at byte %d: control character in string`, "\x01"),
		invalidAt("a string with escapes cut short is rejected", Requests, `{"path":"\n`, "path", `invalid JSON at byte %d: unexpected end of input in string`, end),
		invalidAt("a raw control character in an unknown string is rejected", Requests, req(kv{"x", "[\"\\t\x01\"]"}), "x", `invalid JSON at byte %d: control character in string`, "\x01"),
		invalidAt("an unknown string cut short is rejected", Requests, `{"x":["abc`, "x", `invalid JSON at byte %d: unexpected end of input in string`, end),
		invalidAt("a bad escape in an unknown string is rejected", Requests, req(kv{"x", `{"\q":1}`}), "x", `invalid JSON at byte %d: invalid escape "\\q"`, `|\q`),
		valid("escapes in unknown strings are kept as written", Requests, req(kv{"x", `"\u00e9\n\"\ud83d\ude00"`}), wantExtra(`{"x":"\u00e9\n\"\ud83d\ude00"}`)),
		invalid("a backslash at the end of input is rejected", Requests, `{"path":"\`, "path", `invalid JSON at byte 9: unexpected end of input in string`),

		// UTF-8.
		valid("multi-byte UTF-8 is accepted", Requests, req(kv{"user_agent", `"naïve € 😀"`}), func(t *testing.T, e *Event) { eq(t, "UserAgent", e.UserAgent, "naïve € 😀") }),
		invalidAt("invalid UTF-8 in a value is rejected", Requests, req(kv{"user_agent", "\"a\xffb\""}), "user_agent", `invalid JSON at byte %d: invalid UTF-8 in string`, "\xff"),
		invalidAt("invalid UTF-8 after an escape is rejected", Requests, req(kv{"user_agent", "\"\\n\xc3\""}), "user_agent", `invalid JSON at byte %d: invalid UTF-8 in string`, "\xc3"),
		invalidAt("an overlong UTF-8 encoding is rejected", Requests, req(kv{"user_agent", "\"\xc0\xaf\""}), "user_agent", `invalid JSON at byte %d: invalid UTF-8 in string`, "\xc0"),
		invalidAt("a UTF-8 encoded surrogate is rejected", Requests, req(kv{"user_agent", "\"\xed\xa0\x80\""}), "user_agent", `invalid JSON at byte %d: invalid UTF-8 in string`, "\xed"),
		invalid("invalid UTF-8 in a key is rejected", Requests, "{\"k\xff\":1}", "", `invalid JSON at byte 3: invalid UTF-8 in string`),
		invalidAt("invalid UTF-8 deep in an unknown field is rejected", Requests, req(kv{"x", "{\"a\":[\"\xfe\"]}"}), "x", `invalid JSON at byte %d: invalid UTF-8 in string`, "\xfe"),
		invalidAt("invalid UTF-8 in a changes key is rejected", Audit, audit(kv{"changes", "{\"\xff\":1}"}), "changes", `invalid JSON at byte %d: invalid UTF-8 in string`, "\xff"),

		// Duplicate keys.
		invalid("a duplicate field is rejected", Requests, req(kv{"x", `1`})[:len(req())-1]+`,"org_id":"org_1"}`, "org_id", `duplicate field "org_id"`),
		invalid("a duplicate field after a null is rejected", Requests, req(kv{"namespace", `null`})[:len(req(kv{"namespace", `null`}))-1]+`,"namespace":"ns"}`, "namespace", `duplicate field "namespace"`),
		invalid("a duplicate field spelt with an escape is rejected", Requests, req(kv{`org\u005fid`, `"org_1"`}), "org_id", `duplicate field "org_id"`),
		invalid("a duplicate unknown field is rejected", Requests, req(kv{"x", `1`}, kv{"y", `2`}, kv{"x ", `3`}, kv{`\u0078`, `4`}), "x", `duplicate field "x"`),
		invalid("a duplicate among many unknown fields is rejected", Requests, req(append(manyUnknown(40), kv{"u7", `0`})...)[:len(req(manyUnknown(40)...))-1]+`,"u33":0}`, "u33", `duplicate field "u33"`),
		valid("duplicate keys inside changes are kept as received", Audit, audit(kv{"changes", `{"a":1,"a":2}`}), func(t *testing.T, e *Event) { eq(t, "Changes", string(e.Changes), `{"a":1,"a":2}`) }),

		// Nesting.
		valid("nesting 64 levels deep is accepted", Requests, req(kv{"x", nested(63)}), wantExtra(`{"x":`+nested(63)+`}`)),
		invalid("nesting 65 levels deep is rejected", Requests, req(kv{"x", nested(64)}), "x", deepAt(req(kv{"x", nested(64)}), nested(64), 63)),
		valid("changes nested 64 levels deep is accepted", Audit, audit(kv{"changes", `{"a":` + nested(62) + `}`}), func(t *testing.T, e *Event) {}),
		invalid("changes nested 65 levels deep is rejected", Audit, audit(kv{"changes", `{"a":` + nested(63) + `}`}), "changes", deepAt(audit(kv{"changes", `{"a":` + nested(63) + `}`}), nested(63), 62)),
		invalid("very deep nesting is rejected without trouble", Requests, req(kv{"x", strings.Repeat("[", 100000)}), "x", deepAt(req(kv{"x", strings.Repeat("[", 100000)}), strings.Repeat("[", 100000), 63)),

		// Timestamps (more in TestTimestamps).
		valid("an integer Unix millisecond ts is accepted", Requests, req(kv{"ts", `1795370401000`}), wantTS(1795370401000*1e6)),
		invalid("a fractional millisecond ts is rejected", Requests, req(kv{"ts", `1795370401000.5`}), "ts", `field "ts": want integer Unix milliseconds, got number 1795370401000.5`),

		// Structure.
		invalid("an empty record is rejected", Requests, ``, "", `empty record`),
		invalid("a blank record is rejected", Requests, " \n\t\r ", "", `empty record`),
		invalid("a JSON array is rejected", Requests, `[`+req()+`]`, "", `not a JSON object`),
		invalid("a JSON string is rejected", Audit, `"{}"`, "", `not a JSON object`),
		invalid("a JSON number is rejected", Audit, `42`, "", `not a JSON object`),
		invalid("a JSON null is rejected", Audit, `null`, "", `not a JSON object`),
		invalid("plain text is rejected", Requests, `hello`, "", `invalid JSON at byte 0: unexpected 'h', want '{'`),
		invalid("a byte order mark is rejected", Requests, "\xef\xbb\xbf"+req(), "", `invalid JSON at byte 0: unexpected byte 0xef, want '{'`),
		invalid("an empty object lacks ts", Requests, `{}`, "ts", `missing required field "ts"`),
		invalid("an empty audit object with spaces lacks ts", Audit, ` { } `, "ts", `missing required field "ts"`),
		invalid("a lone brace is cut short", Requests, `{`, "", `invalid JSON at byte 1: unexpected end of input, want a string key`),
		invalidAt("a record cut short in a value is rejected", Requests, req()[:50], "request_id", `invalid JSON at byte %d: unexpected end of input in string`, end),
		invalidAt("a record cut short after a value is rejected", Requests, req()[:len(req())-1], "", `invalid JSON at byte %d: unexpected end of input, want ',' or '}'`, end),
		invalid("a key without a value is rejected", Requests, `{"a"}`, "", `invalid JSON at byte 4: unexpected '}', want ':'`),
		invalidAt("a trailing comma is rejected", Requests, req()[:len(req())-1]+`,}`, "", `invalid JSON at byte %d: unexpected '}', want a string key`, `,|}`),
		invalid("a key that is not a string is rejected", Requests, `{ts:1}`, "", `invalid JSON at byte 1: unexpected 't', want a string key`),
		invalid("a single-quoted string is rejected", Requests, `{'ts':1}`, "", `invalid JSON at byte 1: unexpected '\'', want a string key`),
		invalidAt("data after the object is rejected", Requests, req()+` x`, "", `invalid JSON at byte %d: unexpected data after the object`, ` |x`),
		invalidAt("a second object is rejected", Requests, req()+req(), "", `invalid JSON at byte %d: unexpected data after the object`, `}|{`),
		invalidAt("a misspelt literal is rejected", Requests, req(kv{"path", `nul`}), "path", `invalid JSON at byte %d: unexpected ',' in literal, want null`, `nul|,`),
		invalidAt("a bare minus is rejected", Requests, req(kv{"x", `-`}), "x", `invalid JSON at byte %d: unexpected '}', want a digit`, `:-|}`),
		invalidAt("a number starting with a dot is rejected", Requests, req(kv{"x", `.5`}), "x", `invalid JSON at byte %d: unexpected '.', want a value`, `:|.5`),
		invalidAt("an exponent without digits is rejected", Requests, req(kv{"x", `1e+`}), "x", `invalid JSON at byte %d: unexpected '}', want a digit in the exponent`, `1e+|}`),
		invalidAt("NaN is rejected", Requests, req(kv{"latency_ms", `NaN`}), "latency_ms", `invalid JSON at byte %d: unexpected 'N', want a value`, `|NaN`),
		invalidAt("an unclosed array is rejected", Requests, req(kv{"x", `[1 2]`}), "x", `invalid JSON at byte %d: unexpected '2', want ',' or ']'`, `[1 |2]`),
		invalidAt("a missing colon in a nested object is rejected", Requests, req(kv{"x", `{"a" 1}`}), "x", `invalid JSON at byte %d: unexpected '1', want ':'`, `{"a" |1}`),
		valid("whitespace around the object and tokens is accepted", Requests,
			" \n\t{ \"ts\" : 1795370401000 ,\r\n \"request_id\":\"r\", \"org_id\":\"o\",\"ip\":\"::1\",\"method\":\"GET\",\"route\":\"/\",\"operation\":\"data\",\"status\" : 204 , \"extra\" : [ 1 , 2 ] } \n\r\t",
			func(t *testing.T, e *Event) {
				eq(t, "Status", e.Status, 204)
				eq(t, "Extra", string(e.Extra), `{"extra":[ 1 , 2 ]}`)
			}),
	)
	return cases
}

func manyUnknown(n int) []kv {
	var kvs []kv
	for i := 0; i < n; i++ {
		kvs = append(kvs, kv{"u" + itoa(i), itoa(i)})
	}
	return kvs
}

func manyUnknownExtra(n int) string {
	var parts []string
	for _, f := range manyUnknown(n) {
		parts = append(parts, `"`+f.k+`":`+f.v)
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

// deepAt is the reason for nesting too deep inside value, a part of in:
// the container that is too deep is the one after the first `opened` ones.
func deepAt(in, value string, opened int) string {
	pos := strings.Index(in, value)
	for i := 0; i < opened; i++ {
		pos += strings.IndexAny(in[pos:], "[{") + 1
	}
	pos += strings.IndexAny(in[pos:], "[{")
	return fmt.Sprintf("nesting deeper than %d levels at byte %d", MaxDepth, pos)
}

// nested returns n containers nested inside one another around a 1,
// alternating arrays and objects.
func nested(n int) string {
	var open, close strings.Builder
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			open.WriteString("[")
		} else {
			open.WriteString(`{"k":`)
		}
	}
	for i := n - 1; i >= 0; i-- {
		if i%2 == 0 {
			close.WriteString("]")
		} else {
			close.WriteString("}")
		}
	}
	return open.String() + "1" + close.String()
}

func TestDecodingAcceptsValidRecordsAndExplainsInvalidOnes(t *testing.T) {
	var d Decoder
	for _, tc := range decodeCases() {
		t.Run(tc.name, func(t *testing.T) {
			// Decode into a dirty event to check that Decode resets it.
			e := Event{Source: Audit, TS: 1, ID: "stale", BytesIn: 9, LatencyMs: 1, Changes: []byte("{}"), Extra: []byte("{}")}
			err := d.Decode(tc.src, []byte(tc.in), &e)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Decode(%s) = %v, want success", tc.in, err)
				}
				eq(t, "Source", e.Source, tc.src)
				if tc.check != nil {
					tc.check(t, &e)
				}
				return
			}
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("Decode(%s) = %v, want an *InvalidError", tc.in, err)
			}
			eq(t, "Reason", ie.Reason, tc.reason)
			eq(t, "Field", ie.Field, tc.field)
			eq(t, "Error()", err.Error(), tc.reason)
			if !reflect.DeepEqual(e, Event{Source: tc.src}) {
				t.Errorf("after an error the event is %+v, want it reset", e)
			}
		})
	}
}

func TestTimestampsAreParsedStrictly(t *testing.T) {
	const bad = `field "ts": not an RFC 3339 time or integer Unix milliseconds`
	cases := []struct {
		name   string
		raw    string
		want   int64
		reason string
	}{
		{name: "UTC with Z is accepted", raw: `"2026-11-22T18:00:02Z"`, want: ts("2026-11-22T18:00:02Z")},
		{name: "lower-case t and z are accepted", raw: `"2026-11-22t18:00:02z"`, want: ts("2026-11-22T18:00:02Z")},
		{name: "a one-digit fraction is accepted", raw: `"2026-11-22T18:00:02.5Z"`, want: ts("2026-11-22T18:00:02.5Z")},
		{name: "a millisecond fraction is accepted", raw: `"2026-11-22T18:00:00.120Z"`, want: ts("2026-11-22T18:00:00.12Z")},
		{name: "a nanosecond fraction is accepted", raw: `"2026-11-22T18:00:00.123456789Z"`, want: ts("2026-11-22T18:00:00.123456789Z")},
		{name: "a positive offset is applied", raw: `"2026-11-22T23:30:00+05:30"`, want: ts("2026-11-22T18:00:00Z")},
		{name: "a negative offset is applied", raw: `"2026-11-22T10:00:00.25-08:00"`, want: ts("2026-11-22T18:00:00.25Z")},
		{name: "the unknown-offset form -00:00 is UTC", raw: `"2026-11-22T18:00:00-00:00"`, want: ts("2026-11-22T18:00:00Z")},
		{name: "an offset crossing midnight moves the date", raw: `"2026-12-31T23:30:00-01:00"`, want: ts("2027-01-01T00:30:00Z")},
		{name: "a leap day is accepted", raw: `"2024-02-29T12:00:00Z"`, want: ts("2024-02-29T12:00:00Z")},
		{name: "a leap day in a 400th year is accepted", raw: `"2000-02-29T00:00:00Z"`, want: ts("2000-02-29T00:00:00Z")},
		{name: "the earliest year is accepted", raw: `"1678-01-01T00:00:00Z"`, want: ts("1678-01-01T00:00:00Z")},
		{name: "the latest instant is accepted", raw: `"2261-12-31T23:59:59.999999999Z"`, want: ts("2261-12-31T23:59:59.999999999Z")},
		{name: "the epoch is accepted", raw: `"1970-01-01T00:00:00Z"`, want: 0},
		{name: "a time before the epoch is accepted", raw: `"1969-12-31T23:59:59.9Z"`, want: -1e8},
		{name: "integer milliseconds are accepted", raw: `1795370401000`, want: 1795370401000 * 1e6},
		{name: "zero milliseconds is the epoch", raw: `0`, want: 0},
		{name: "negative milliseconds are before the epoch", raw: `-1000`, want: -1e9},
		{name: "the earliest millisecond is accepted", raw: `-9214560000000`, want: ts("1678-01-01T00:00:00Z")},
		{name: "the latest millisecond is accepted", raw: `9214646399999`, want: ts("2261-12-31T23:59:59.999Z")},

		{name: "a non-leap February 29 is rejected", raw: `"2023-02-29T00:00:00Z"`, reason: `field "ts": "2023-02-29T00:00:00Z" is not a valid RFC 3339 time: day out of range`},
		{name: "February 29 of a century year is rejected", raw: `"2100-02-29T00:00:00Z"`, reason: `field "ts": "2100-02-29T00:00:00Z" is not a valid RFC 3339 time: day out of range`},
		{name: "April 31 is rejected", raw: `"2026-04-31T00:00:00Z"`, reason: `field "ts": "2026-04-31T00:00:00Z" is not a valid RFC 3339 time: day out of range`},
		{name: "day 0 is rejected", raw: `"2026-04-00T00:00:00Z"`, reason: `field "ts": "2026-04-00T00:00:00Z" is not a valid RFC 3339 time: day out of range`},
		{name: "month 13 is rejected", raw: `"2026-13-01T00:00:00Z"`, reason: `field "ts": "2026-13-01T00:00:00Z" is not a valid RFC 3339 time: month out of range`},
		{name: "month 0 is rejected", raw: `"2026-00-01T00:00:00Z"`, reason: `field "ts": "2026-00-01T00:00:00Z" is not a valid RFC 3339 time: month out of range`},
		{name: "hour 24 is rejected", raw: `"2026-11-22T24:00:00Z"`, reason: `field "ts": "2026-11-22T24:00:00Z" is not a valid RFC 3339 time: hour out of range`},
		{name: "minute 60 is rejected", raw: `"2026-11-22T18:60:00Z"`, reason: `field "ts": "2026-11-22T18:60:00Z" is not a valid RFC 3339 time: minute out of range`},
		{name: "a leap second is rejected", raw: `"2016-12-31T23:59:60Z"`, reason: `field "ts": "2016-12-31T23:59:60Z" is not a valid RFC 3339 time: second out of range`},
		{name: "an offset of 24 hours is rejected", raw: `"2026-11-22T18:00:00+24:00"`, reason: `field "ts": "2026-11-22T18:00:00+24:00" is not a valid RFC 3339 time: offset out of range`},
		{name: "an offset of 60 minutes is rejected", raw: `"2026-11-22T18:00:00+01:60"`, reason: `field "ts": "2026-11-22T18:00:00+01:60" is not a valid RFC 3339 time: offset out of range`},
		{name: "ten fractional digits are rejected", raw: `"2026-11-22T18:00:00.1234567891Z"`, reason: `field "ts": "2026-11-22T18:00:00.1234567891Z" is not a valid RFC 3339 time: more than 9 fractional digits`},
		{name: "a year before 1678 is rejected", raw: `"1677-12-31T23:59:59Z"`, reason: `field "ts": "1677-12-31T23:59:59Z" is not a valid RFC 3339 time: year 1677 is outside 1678..2261`},
		{name: "a year after 2261 is rejected", raw: `"2262-01-01T00:00:00Z"`, reason: `field "ts": "2262-01-01T00:00:00Z" is not a valid RFC 3339 time: year 2262 is outside 1678..2261`},
		{name: "year 0 is rejected", raw: `"0000-01-01T00:00:00Z"`, reason: `field "ts": "0000-01-01T00:00:00Z" is not a valid RFC 3339 time: year 0 is outside 1678..2261`},
		{name: "a time without offset is rejected", raw: `"2026-11-22T18:00:00"`, reason: `field "ts": "2026-11-22T18:00:00" is ` + tsForms},
		{name: "a space instead of T is rejected", raw: `"2026-11-22 18:00:00Z"`, reason: `field "ts": "2026-11-22 18:00:00Z" is ` + tsForms},
		{name: "a time without seconds is rejected", raw: `"2026-11-22T18:00Z"`, reason: `field "ts": "2026-11-22T18:00Z" is ` + tsForms},
		{name: "a date alone is rejected", raw: `"2026-11-22"`, reason: `field "ts": "2026-11-22" is ` + tsForms},
		{name: "an empty fraction is rejected", raw: `"2026-11-22T18:00:00.Z"`, reason: `field "ts": "2026-11-22T18:00:00.Z" is ` + tsForms},
		{name: "a one-digit month is rejected", raw: `"2026-1-22T18:00:00Z"`, reason: `field "ts": "2026-1-22T18:00:00Z" is ` + tsForms},
		{name: "a compact offset is rejected", raw: `"2026-11-22T18:00:00+0530"`, reason: `field "ts": "2026-11-22T18:00:00+0530" is ` + tsForms},
		{name: "a truncated offset is rejected", raw: `"2026-11-22T18:00:00+05:3"`, reason: `field "ts": "2026-11-22T18:00:00+05:3" is ` + tsForms},
		{name: "text after the offset is rejected", raw: `"2026-11-22T18:00:00ZZ"`, reason: `field "ts": "2026-11-22T18:00:00ZZ" is ` + tsForms},
		{name: "a signed year is rejected", raw: `"+2026-11-22T18:00:00Z"`, reason: `field "ts": "+2026-11-22T18:00:00Z" is ` + tsForms},
		{name: "an empty string is rejected", raw: `""`, reason: `field "ts": "" is ` + tsForms},
		{name: "digits in a string are rejected", raw: `"1795370401000"`, reason: `field "ts": "1795370401000" is ` + tsForms},
		{name: "a boolean is rejected", raw: `false`, reason: bad},
		{name: "an object is rejected", raw: `{"s":1}`, reason: bad},
		{name: "exponent milliseconds are rejected", raw: `1.5e12`, reason: `field "ts": want integer Unix milliseconds, got number 1.5e12`},
		{name: "fractional milliseconds are rejected", raw: `1795370401000.5`, reason: `field "ts": want integer Unix milliseconds, got number 1795370401000.5`},
		{name: "milliseconds after 2261 are rejected", raw: `9214646400000`, reason: `field "ts": 9214646400000 Unix milliseconds is outside the years 1678..2261`},
		{name: "milliseconds before 1678 are rejected", raw: `-9214560000001`, reason: `field "ts": -9214560000001 Unix milliseconds is outside the years 1678..2261`},
		{name: "the largest int64 in milliseconds is rejected", raw: `9223372036854775807`, reason: `field "ts": 9223372036854775807 Unix milliseconds is outside the years 1678..2261`},
		{name: "milliseconds beyond int64 are rejected", raw: `99999999999999999999`, reason: `field "ts": 99999999999999999999 Unix milliseconds is outside the years 1678..2261`},
	}
	var d Decoder
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e Event
			err := d.Decode(Requests, []byte(req(kv{"ts", tc.raw})), &e)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("ts %s: %v", tc.raw, err)
				}
				eq(t, "TS", e.TS, tc.want)
				return
			}
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("ts %s: got %v, want an *InvalidError", tc.raw, err)
			}
			eq(t, "Reason", ie.Reason, tc.reason)
			eq(t, "Field", ie.Field, "ts")
		})
	}
}

func TestRFC3339AgreesWithTheTimePackage(t *testing.T) {
	for _, s := range []string{
		"2026-11-22T18:00:00Z", "2026-11-22T18:00:00.1Z", "2026-11-22T18:00:00.000000001+00:00",
		"1999-12-31T23:59:59.999-00:01", "2024-02-29T00:00:00+23:59", "1678-01-01T00:00:00+23:59",
		"2261-12-31T23:59:59.999999999-23:59", "1900-03-01T12:34:56.789+01:00", "2000-01-01T00:00:00Z",
		"1970-01-01T00:00:00.5-12:00", "2262-04-11T23:47:16.854775807Z",
	} {
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		got, problem := parseRFC3339(s)
		if strings.HasPrefix(s, "2262") {
			// Representable in int64 nanoseconds but outside the years accepted.
			if problem == "" {
				t.Errorf("parseRFC3339(%q) accepted a year after %d", s, maxYear)
			}
			continue
		}
		if problem != "" {
			t.Errorf("parseRFC3339(%q): %s", s, problem)
			continue
		}
		if got != want.UnixNano() {
			t.Errorf("parseRFC3339(%q) = %d, want %d", s, got, want.UnixNano())
		}
	}
}

func TestAnUnknownSourceIsAnErrorButNotAnInvalidRecord(t *testing.T) {
	var d Decoder
	for _, src := range []Source{0, 3, 255} {
		e := Event{ID: "stale"}
		err := d.Decode(src, []byte(req()), &e)
		if err == nil {
			t.Fatalf("Decode with source %d succeeded", src)
		}
		var ie *InvalidError
		if errors.As(err, &ie) {
			t.Errorf("Decode with source %d returned an *InvalidError: %v", src, err)
		}
		if e.ID != "" {
			t.Errorf("the event was not reset")
		}
	}
}

func TestRecordsOverTheSizeLimitAreRejected(t *testing.T) {
	rec := []byte(req())
	d := Decoder{MaxBytes: len(rec)}
	var e Event
	if err := d.Decode(Requests, rec, &e); err != nil {
		t.Fatalf("a record of exactly MaxBytes: %v", err)
	}
	padded := append(append([]byte(nil), rec...), ' ')
	err := d.Decode(Requests, padded, &e)
	var ie *InvalidError
	if !errors.As(err, &ie) {
		t.Fatalf("a record one byte over MaxBytes: got %v", err)
	}
	want := "record is " + itoa(len(padded)) + " bytes, over the limit of " + itoa(len(rec)) + " bytes"
	eq(t, "Reason", ie.Reason, want)
	eq(t, "Field", ie.Field, "")

	// The default limit is 1 MiB.
	var def Decoder
	big := []byte(req(kv{"user_agent", `"` + strings.Repeat("a", DefaultMaxBytes-len(rec)+len(`"client-python/1.4.0"`)-2) + `"`}))
	if len(big) != DefaultMaxBytes {
		t.Fatalf("test record is %d bytes", len(big))
	}
	if err := def.Decode(Requests, big, &e); err != nil {
		t.Fatalf("a record of 1 MiB: %v", err)
	}
	if err := def.Decode(Requests, append(big, '\n'), &e); err == nil {
		t.Fatalf("a record of 1 MiB + 1 byte was accepted")
	}
}

func TestDecodingTheSameDecoderAgainResetsEverything(t *testing.T) {
	var d Decoder
	var e Event
	first := req(kv{"user_agent", `"\u00e9"`}, kv{"x", `1`})
	if err := d.Decode(Requests, []byte(first), &e); err != nil {
		t.Fatal(err)
	}
	second := `{"ts":1,"request_id":"r","org_id":"o","ip":"::1","method":"GET","route":"/","operation":"data","status":200}`
	if err := d.Decode(Requests, []byte(second), &e); err != nil {
		t.Fatal(err)
	}
	want := Event{Source: Requests, TS: 1e6, ID: "r", OrgID: "o", IP: "::1", Method: "GET", Route: "/", Operation: "data", Status: 200}
	if !reflect.DeepEqual(e, want) {
		t.Errorf("got  %+v\nwant %+v", e, want)
	}
}

func TestStringsWithoutEscapesAliasTheInput(t *testing.T) {
	var d Decoder
	var e Event
	data := []byte(req(kv{"user_agent", `"a\tb"`}))
	if err := d.Decode(Requests, data, &e); err != nil {
		t.Fatal(err)
	}
	inData := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		base := uintptr(unsafe.Pointer(&data[0]))
		return p >= base && p < base+uintptr(len(data))
	}
	if !inData(e.OrgID) || !inData(e.Route) {
		t.Errorf("strings without escapes were copied")
	}
	if inData(e.UserAgent) {
		t.Errorf("a string with escapes points into the input")
	}
	eq(t, "UserAgent", e.UserAgent, "a\tb")
}

func TestExtraAndChangesCannotBeAppendedIntoDecoderMemory(t *testing.T) {
	var d Decoder
	var e Event
	data := []byte(audit(kv{"x", `1`}) + "     ")
	if err := d.Decode(Audit, data, &e); err != nil {
		t.Fatal(err)
	}
	if cap(e.Extra) != len(e.Extra) || cap(e.Changes) != len(e.Changes) {
		t.Errorf("Extra or Changes has spare capacity: appending would overwrite shared memory")
	}
}

// readLines returns the non-empty lines of a testdata file.
func readLines(t testing.TB, name string) [][]byte {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if l := bytes.TrimSpace(sc.Bytes()); len(l) > 0 {
			lines = append(lines, append([]byte(nil), l...))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestEveryExampleRequestDecodes(t *testing.T) {
	want := []Event{
		{Source: Requests, TS: ts("2026-11-22T18:00:00.120Z"), ID: "req_0001", OrgID: "org_42", APIKeyID: "key_7f3a",
			KeyPermission: "WRITE", IP: "203.0.113.7", Country: "US", Method: "GET",
			Route: "/v1/namespaces/{namespace_id}/documents", Path: "/v1/namespaces/ns_9/documents", Operation: "data",
			Namespace: "ns_9", DataClassification: "CONFIDENTIAL", Status: 200, BytesIn: 0, BytesOut: 20480,
			LatencyMs: 12.5, UserAgent: "client-python/1.4.0"},
		{Source: Requests, TS: ts("2026-11-22T18:00:00.480Z"), ID: "req_0002", OrgID: "org_42", APIKeyID: "key_7f3a",
			KeyPermission: "WRITE", IP: "203.0.113.7", Country: "US", Method: "POST",
			Route: "/v1/namespaces/{namespace_id}/search", Operation: "search", Namespace: "ns_9", Status: 200,
			BytesIn: 812, BytesOut: 4096, LatencyMs: 48.1, UserAgent: "client-python/1.4.0"},
		{Source: Requests, TS: 1795370401000 * 1e6, ID: "req_0003", OrgID: "org_7", IP: "198.51.100.23", Method: "GET",
			Route: "/v1/organizations/api-keys", Operation: "metadata", Status: 401, BytesOut: 64, LatencyMs: 0.9,
			UserAgent: "curl/8.5.0"},
		{Source: Requests, TS: ts("2026-11-22T18:00:02Z"), ID: "req_0004", OrgID: "org_7", APIKeyID: "key_0b11",
			KeyPermission: "READ", IP: "2001:db8::42", Method: "DELETE", Route: "/v1/namespaces/{namespace_id}",
			Operation: "metadata", Namespace: "ns_phi_1", DataClassification: "PHI", Status: 403, BytesOut: 120,
			LatencyMs: 2.2, Extra: []byte(`{"trace":"abc"}`)},
	}
	checkExamples(t, Requests, "requests.example.jsonl", want)
}

func TestEveryExampleAuditEventDecodes(t *testing.T) {
	want := []Event{
		{Source: Audit, TS: ts("2026-11-22T18:00:05Z"), ID: "evt_0001", OrgID: "org_42", ActorID: "user_12",
			ActorType: "user", IP: "203.0.113.7", Action: "api_key.create", ResourceType: "api_key",
			ResourceID: "key_9c2d", Outcome: "success",
			Changes: []byte(`{"permission":[null,"ADMIN"],"namespaces":[null,["*"]]}`)},
		{Source: Audit, TS: ts("2026-11-22T18:00:09.250Z"), ID: "evt_0002", OrgID: "org_42", ActorID: "key_9c2d",
			ActorType: "api_key", APIKeyID: "key_9c2d", KeyPermission: "ADMIN", IP: "192.0.2.200",
			Action: "namespace.delete", ResourceType: "namespace", ResourceID: "ns_9", Namespace: "ns_9",
			DataClassification: "CONFIDENTIAL", Outcome: "success"},
		{Source: Audit, TS: ts("2026-11-22T18:00:11Z"), ID: "evt_0003", OrgID: "org_7", ActorID: "key_0b11",
			ActorType: "api_key", APIKeyID: "key_0b11", KeyPermission: "READ", IP: "2001:db8::42",
			Action: "document.delete", ResourceType: "document", ResourceID: "doc_5", Namespace: "ns_phi_1",
			DataClassification: "PHI", Outcome: "denied"},
	}
	checkExamples(t, Audit, "audit.example.jsonl", want)
}

func checkExamples(t *testing.T, src Source, file string, want []Event) {
	lines := readLines(t, file)
	if len(lines) != len(want) {
		t.Fatalf("%s has %d records, the test expects %d", file, len(lines), len(want))
	}
	var d Decoder
	for i, line := range lines {
		var e Event
		if err := d.Decode(src, line, &e); err != nil {
			t.Errorf("%s line %d: %v", file, i+1, err)
			continue
		}
		if !reflect.DeepEqual(e, want[i]) {
			t.Errorf("%s line %d:\ngot  %+v\nwant %+v", file, i+1, e, want[i])
		}
	}
}

// allocLines are the lines the zero-allocation guarantee is pinned on: every
// example line plus one with escapes and one with unknown fields of every kind.
func allocLines(t testing.TB) (srcs []Source, lines [][]byte) {
	for _, l := range readLines(t, "requests.example.jsonl") {
		srcs, lines = append(srcs, Requests), append(lines, l)
	}
	for _, l := range readLines(t, "audit.example.jsonl") {
		srcs, lines = append(srcs, Audit), append(lines, l)
	}
	srcs = append(srcs, Requests, Audit, Requests)
	lines = append(lines,
		[]byte(req(kv{"user_agent", `"caf\u00e9 \"quoted\" \ud83d\ude00 \/ \n"`}, kv{"path", `"/v1/a\u0020b"`})),
		[]byte(audit(kv{"trace", `{"id":"t\u0041","spans":[1,2.5,-3e2,true,false,null],"deep":{"a":{"b":[{}]}}}`}, kv{"n", `7`}, kv{"s", `"x"`})),
		[]byte(req(kv{"ts", `"2026-11-22T23:30:00.123456+05:30"`}, kv{"ip", `"2001:db8:85a3::8a2e:370:7334"`}, kv{"latency_ms", `1.0000000000000002`})),
	)
	return srcs, lines
}

func TestDecodingDoesNotAllocateInSteadyState(t *testing.T) {
	srcs, lines := allocLines(t)
	var d Decoder
	var e Event
	for i, line := range lines {
		if err := d.Decode(srcs[i], line, &e); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
	}
	for i, line := range lines {
		allocs := testing.AllocsPerRun(200, func() {
			if err := d.Decode(srcs[i], line, &e); err != nil {
				panic(err)
			}
		})
		if allocs != 0 {
			t.Errorf("decoding line %d allocates %.1f times: %s", i, allocs, line)
		}
	}
}

func TestEveryFieldNameIsRecognisedWithAndWithoutTheFastPath(t *testing.T) {
	for id := fTS; id < numFields; id++ {
		name := fieldNames[id]
		if got := lookupKey(name); got != id {
			t.Errorf("lookupKey(%q) = %d, want %d", name, got, id)
		}
		for _, bad := range []string{name[1:], name[:len(name)-1], name + "x", strings.ToUpper(name)} {
			if got := lookupKey(bad); got != fUnknown {
				t.Errorf("lookupKey(%q) = %d, want unknown", bad, got)
			}
		}
		long := []byte(`"` + name + `":` + strings.Repeat(" ", 30))
		if got, next := matchKey(long, 0); got != id || next != len(name)+2 {
			t.Errorf("matchKey(%q) = %d, %d", long, got, next)
		}
		for _, bad := range []string{`"` + name + `x":`, `"` + name[:len(name)-1] + `":`, `"x` + name + `":`} {
			if got, _ := matchKey([]byte(bad+strings.Repeat(" ", 30)), 0); got != fUnknown {
				t.Errorf("matchKey(%q) = %d, want unknown", bad, got)
			}
		}
		if got, _ := matchKey([]byte(`"`+name+`":1}`), 0); got != fUnknown {
			t.Errorf("matchKey near the end of input = %d, want the slow path", got)
		}
	}
}

func TestSkipPlainStopsWhereAByteLoopStops(t *testing.T) {
	interesting := []byte{'a', ' ', '~', '"', '\\', 0, 0x1f, 0x20, 0x7f, 0x80, 0xc3, 0xff, '!', '#', '[', ']', '{', '}'}
	rng := uint64(1)
	next := func() uint64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
	for n := 0; n < 20000; n++ {
		data := make([]byte, next()%40)
		for i := range data {
			if next()%8 == 0 {
				data[i] = interesting[next()%uint64(len(interesting))]
			} else {
				data[i] = 'a' + byte(next()%26)
			}
		}
		start := 0
		if len(data) > 0 {
			start = int(next() % uint64(len(data)))
		}
		want := start
		for want < len(data) && plain[data[want]] {
			want++
		}
		if got := skipPlain(data, start); got != want {
			t.Fatalf("skipPlain(%q, %d) = %d, want %d", data, start, got, want)
		}
	}
}

func TestManyUnknownFieldsDoNotLeakIntoTheNextRecord(t *testing.T) {
	var d Decoder
	var e Event
	rec := []byte(req(manyUnknown(40)...))
	for i := 0; i < 3; i++ {
		if err := d.Decode(Requests, rec, &e); err != nil {
			t.Fatalf("decode %d: %v", i, err)
		}
	}
	small := []byte(req(kv{"u3", `1`}))
	if err := d.Decode(Requests, small, &e); err != nil {
		t.Fatal(err)
	}
	eq(t, "Extra", string(e.Extra), `{"u3":1}`)
}

func TestValidIPAgreesWithNetip(t *testing.T) {
	check := func(s string) {
		a, err := netip.ParseAddr(s)
		want := err == nil && a.Zone() == ""
		if got := validIP(s); got != want {
			t.Errorf("validIP(%q) = %v, netip says %v (%v)", s, got, want, err)
		}
	}
	for _, s := range []string{"", "0.0.0.0", "255.255.255.255", "256.0.0.0", "1.2.3", "1.2.3.4.5", "1..2.3", ".1.2.3",
		"1.2.3.", "01.2.3.4", "1.2.3.04", "1.2.3.0", "10.0.0.1", "1234", "1.2.3.4a", "::1", "::ffff:1.2.3.4",
		"fe80::1%eth0", "2001:db8::42", "1.2.3.4 ", " 1.2.3.4", "999.1.1.1", "1.2.3.2555", "00.1.2.3", "0.0.0.00"} {
		check(s)
	}
	alphabet := "0123456789.25:"
	rng := uint64(7)
	for n := 0; n < 50000; n++ {
		rng ^= rng << 13
		rng ^= rng >> 7
		rng ^= rng << 17
		b := make([]byte, rng%16)
		r := rng
		for i := range b {
			r = r*6364136223846793005 + 1442695040888963407
			b[i] = alphabet[(r>>33)%uint64(len(alphabet))]
		}
		check(string(b))
	}
}
