package event

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

var updateNasty = flag.Bool("update-nasty", false, "rewrite testdata/nasty from the table in nasty_test.go")

// nastyDir holds the records of nastyCases small enough to keep in the
// repository, one per file, named after the case, so that other tools
// (vigil replay, a fuzzer's corpus, a Kafka producer) can use them too.
const nastyDir = "testdata/nasty"

// nastyFileMax is the size above which a record is only generated.
const nastyFileMax = 4 << 10

// nastyCase is one hostile record and what decoding it must give: either
// an event, which check inspects, or an *InvalidError with exactly this
// Field and Reason.
type nastyCase struct {
	name     string // a sentence saying what happens
	src      Source
	in       []byte
	maxBytes int // Decoder.MaxBytes; 0 for the default 1 MiB

	check  func(t *testing.T, e *Event) // accepted records
	field  string                       // rejected records
	reason string
}

// accepts and rejects build cases; rejectsAt fills the reason's %d with
// the offset of needle in the record plus the position of '|' in needle,
// like invalidAt in decode_test.go.
func accepts(name string, src Source, in string, check func(t *testing.T, e *Event)) nastyCase {
	return nastyCase{name: name, src: src, in: []byte(in), check: check}
}

func rejects(name string, src Source, in, field, reason string) nastyCase {
	return nastyCase{name: name, src: src, in: []byte(in), field: field, reason: reason}
}

func rejectsAt(name string, src Source, in, field, reason, needle string) nastyCase {
	bar := max(strings.Index(needle, "|"), 0)
	needle = strings.Replace(needle, "|", "", 1)
	i := strings.Index(in, needle)
	if i < 0 || strings.Count(in, needle) != 1 {
		panic(name + ": needle " + needle + " not found exactly once")
	}
	return rejects(name, src, in, field, fmt.Sprintf(reason, i+bar))
}

// wantIP and wantUserAgent are checks for accepted records.
func wantIP(ip string) func(t *testing.T, e *Event) {
	return func(t *testing.T, e *Event) { eq(t, "IP", e.IP, ip) }
}

func wantUserAgent(ua string) func(t *testing.T, e *Event) {
	return func(t *testing.T, e *Event) {
		if e.UserAgent != ua {
			t.Errorf("UserAgent is %d bytes %q…, want %d bytes %q…", len(e.UserAgent), truncate(e.UserAgent), len(ua), truncate(ua))
		}
	}
}

const (
	mib     = 1 << 20
	deep    = 10000
	bom     = "\xef\xbb\xbf"
	badUTF8 = "\xff\xfe"
)

func nastyCases() []nastyCase {
	huge := strings.Repeat("a", mib)           // a 1 MiB field value
	escaped := strings.Repeat(`\u00e9`, mib/6) // 1 MiB of escapes, a third as many bytes decoded
	brackets := strings.Repeat("[", deep)
	objects := strings.Repeat(`{"a":`, deep)

	return []nastyCase{
		// Size.
		rejects("a record over 1 MiB is rejected before it is read", Requests,
			req(kv{"user_agent", `"` + huge + `"`}), "",
			fmt.Sprintf("record is %d bytes, over the limit of %d bytes", len(req(kv{"user_agent", `"` + huge + `"`})), DefaultMaxBytes)),
		rejects("a line of 1 MiB of whitespace around a record is over the limit too", Requests,
			strings.Repeat(" ", mib)+req(), "",
			fmt.Sprintf("record is %d bytes, over the limit of %d bytes", mib+len(req()), DefaultMaxBytes)),
		{name: "a 1 MiB user_agent under a raised limit is kept whole", src: Requests, maxBytes: 4 * mib,
			in: []byte(req(kv{"user_agent", `"` + huge + `"`})), check: wantUserAgent(huge)},
		{name: "a 1 MiB user_agent of escapes under a raised limit is unescaped", src: Requests, maxBytes: 4 * mib,
			in: []byte(req(kv{"user_agent", `"` + escaped + `"`})), check: wantUserAgent(strings.Repeat("é", mib/6))},
		{name: "a 1 MiB unknown field under a raised limit is kept in Extra", src: Requests, maxBytes: 4 * mib,
			in: []byte(req(kv{"blob", `"` + huge + `"`})), check: func(t *testing.T, e *Event) {
				eq(t, "len(Extra)", len(e.Extra), len(`{"blob":""}`)+mib)
			}},
		{name: "a 1 MiB value in an enumeration is quoted shortened in the reason", src: Requests, maxBytes: 4 * mib,
			in: []byte(req(kv{"key_permission", `"` + huge + `"`})), field: "key_permission",
			reason: `field "key_permission": "` + huge[:64] + `…" is not one of READ, WRITE, DELETE, ADMIN`},
		{name: "a 1 MiB ip is quoted shortened in the reason", src: Requests, maxBytes: 4 * mib,
			in: []byte(req(kv{"ip", `"` + huge + `"`})), field: "ip",
			reason: `field "ip": "` + huge[:64] + `…" is not an IPv4 or IPv6 address`},
		{name: "a 1 MiB number in status is shortened in the reason", src: Requests, maxBytes: 4 * mib,
			in: []byte(req(kv{"status", strings.Repeat("9", mib)})), field: "status",
			reason: `field "status": ` + strings.Repeat("9", 64) + `… does not fit a 64-bit integer`},

		// Nesting.
		rejects("10,000 nested arrays are not an object", Requests, brackets+strings.Repeat("]", deep), "", "not a JSON object"),
		rejectsAt("10,000 nested arrays in an unknown field stop at the depth limit", Requests,
			req(kv{"x", brackets + strings.Repeat("]", deep)}), "x",
			"nesting deeper than 64 levels at byte %d", `"x":`+strings.Repeat("[", 63)+"|["),
		rejectsAt("10,000 unclosed arrays in a string field stop at the depth limit", Requests,
			req(kv{"org_id", brackets}), "org_id",
			"nesting deeper than 64 levels at byte %d", `"org_id":`+strings.Repeat("[", 63)+"|["),
		rejectsAt("10,000 nested objects in changes stop at the depth limit", Audit,
			audit(kv{"changes", objects + "1" + strings.Repeat("}", deep)}), "changes",
			"nesting deeper than 64 levels at byte %d", `"changes":`+strings.Repeat(`{"a":`, 63)+`|{`),

		// Invalid UTF-8 and control characters.
		rejectsAt("invalid UTF-8 in a string value is rejected", Requests,
			req(kv{"org_id", `"org` + badUTF8 + `"`}), "org_id", "invalid JSON at byte %d: invalid UTF-8 in string", `org|`+badUTF8),
		rejectsAt("invalid UTF-8 in a key is rejected", Requests,
			req(kv{"k" + badUTF8, `1`}), "", "invalid JSON at byte %d: invalid UTF-8 in string", `"k|`+badUTF8),
		rejectsAt("invalid UTF-8 in an unknown field's value names that field", Requests,
			req(kv{"note", `"a` + badUTF8 + `"`}), "note", "invalid JSON at byte %d: invalid UTF-8 in string", `"a|`+badUTF8),
		rejectsAt("an overlong encoding of '/' is invalid UTF-8", Requests,
			req(kv{"path", "\"/v1\xc0\xafetc\""}), "path", "invalid JSON at byte %d: invalid UTF-8 in string", "/v1|\xc0\xaf"),
		rejectsAt("a surrogate written as UTF-8 bytes is invalid UTF-8", Requests,
			req(kv{"user_agent", "\"\xed\xa0\x80\""}), "user_agent", "invalid JSON at byte %d: invalid UTF-8 in string", "\xed\xa0\x80"),
		rejectsAt("a lone surrogate escape is rejected", Requests,
			req(kv{"user_agent", `"\ud800x"`}), "user_agent", `invalid JSON at byte %d: unpaired surrogate in \u escape`, `\ud800x`),
		rejectsAt("a raw NUL byte in a string is a control character", Requests,
			req(kv{"route", "\"/v1\x00/x\""}), "route", "invalid JSON at byte %d: control character in string", "/v1|\x00"),
		accepts("an escaped NUL in a string is kept", Requests,
			req(kv{"user_agent", `"a\u0000b"`}), wantUserAgent("a\x00b")),
		rejects("a NUL byte before the record is not an opening brace", Requests,
			"\x00"+req(), "", "invalid JSON at byte 0: unexpected byte 0x00, want '{'"),
		rejects("a NUL byte after the record is trailing data", Requests,
			req()+"\x00", "", fmt.Sprintf("invalid JSON at byte %d: unexpected data after the object", len(req()))),
		rejects("a byte order mark before the record is not an opening brace", Requests,
			bom+req(), "", "invalid JSON at byte 0: unexpected byte 0xef, want '{'"),

		// Trailing garbage and structure.
		rejects("garbage after the object is rejected", Requests,
			req()+" x", "", fmt.Sprintf("invalid JSON at byte %d: unexpected data after the object", len(req())+1)),
		rejects("two objects on one line are rejected", Requests,
			req()+req(), "", fmt.Sprintf("invalid JSON at byte %d: unexpected data after the object", len(req()))),
		rejects("a trailing comma in the object is rejected", Requests,
			strings.TrimSuffix(req(), "}")+",}", "", fmt.Sprintf("invalid JSON at byte %d: unexpected '}', want a string key", len(req()))),
		rejects("whitespace alone is an empty record", Requests, " \t\r\n ", "", "empty record"),

		// Duplicate keys.
		rejects("a duplicate status is rejected", Requests, strings.TrimSuffix(req(), "}")+`,"status":500}`,
			"status", `duplicate field "status"`),
		rejects("a duplicate status written with an escape is still a duplicate", Requests,
			strings.TrimSuffix(req(), "}")+`,"st\u0061tus":500}`, "status", `duplicate field "status"`),
		rejects("a duplicate unknown key is rejected", Requests, strings.TrimSuffix(req(kv{"x", "1"}), "}")+`,"x":2}`,
			"x", `duplicate field "x"`),
		accepts("duplicate keys inside changes are kept as received", Audit,
			audit(kv{"changes", `{"a":1,"a":2}`}), func(t *testing.T, e *Event) { eq(t, "Changes", string(e.Changes), `{"a":1,"a":2}`) }),

		// Numbers.
		rejectsAt("NaN is not JSON", Requests, req(kv{"latency_ms", "NaN"}), "latency_ms",
			"invalid JSON at byte %d: unexpected 'N', want a value", "NaN"),
		rejectsAt("Infinity is not JSON", Requests, req(kv{"latency_ms", "Infinity"}), "latency_ms",
			"invalid JSON at byte %d: unexpected 'I', want a value", "Infinity"),
		rejectsAt("minus Infinity is not JSON either", Requests, req(kv{"latency_ms", "-Infinity"}), "latency_ms",
			"invalid JSON at byte %d: unexpected 'I', want a digit", "-|Infinity"),
		rejects("1e400 does not fit a float64", Requests, req(kv{"latency_ms", "1e400"}), "latency_ms",
			`field "latency_ms": 1e400 is out of range`),
		accepts("1e-400 is zero", Requests, req(kv{"latency_ms", "1e-400"}), func(t *testing.T, e *Event) { eq(t, "LatencyMs", e.LatencyMs, 0) }),
		accepts("minus zero latency is stored as positive zero", Requests, req(kv{"latency_ms", "-0"}), func(t *testing.T, e *Event) {
			if e.LatencyMs != 0 || math.Signbit(e.LatencyMs) {
				t.Errorf("LatencyMs = %v (sign bit %v), want +0", e.LatencyMs, math.Signbit(e.LatencyMs))
			}
		}),
		rejects("a negative latency is rejected", Requests, req(kv{"latency_ms", "-0.5"}), "latency_ms",
			`field "latency_ms": must not be negative, got -0.5`),
		accepts("minus zero status is status 0", Requests, req(kv{"status", "-0"}), func(t *testing.T, e *Event) { eq(t, "Status", e.Status, 0) }),
		rejects("1e400 in status is not an integer", Requests, req(kv{"status", "1e400"}), "status",
			`field "status": want integer, got number 1e400`),
		rejects("200.0 in status is not an integer", Requests, req(kv{"status", "200.0"}), "status",
			`field "status": want integer, got number 200.0`),
		rejects("a 20-digit status does not fit 64 bits", Requests, req(kv{"status", "99999999999999999999"}), "status",
			`field "status": 99999999999999999999 does not fit a 64-bit integer`),
		rejects("the smallest int64 as status is out of range", Requests, req(kv{"status", "-9223372036854775808"}), "status",
			`field "status": -9223372036854775808 is out of range 0..999`),
		rejects("status 1000 is out of range", Requests, req(kv{"status", "1000"}), "status",
			`field "status": 1000 is out of range 0..999`),
		accepts("the largest int64 fits bytes_out", Requests, req(kv{"bytes_out", "9223372036854775807"}),
			func(t *testing.T, e *Event) { eq(t, "BytesOut", e.BytesOut, math.MaxInt64) }),
		rejects("one more than the largest int64 does not fit bytes_out", Requests, req(kv{"bytes_out", "9223372036854775808"}), "bytes_out",
			`field "bytes_out": 9223372036854775808 does not fit a 64-bit integer`),
		rejects("negative bytes_in are rejected", Requests, req(kv{"bytes_in", "-1"}), "bytes_in",
			`field "bytes_in": must not be negative, got -1`),
		rejects("minus 0.0 bytes_out is not an integer", Requests, req(kv{"bytes_out", "-0.0"}), "bytes_out",
			`field "bytes_out": want integer, got number -0.0`),
		rejects("a leading zero is not JSON", Requests, req(kv{"bytes_out", "0123"}), "",
			fmt.Sprintf("invalid JSON at byte %d: unexpected '1', want ',' or '}'", strings.Index(req(kv{"bytes_out", "0123"}), "0123")+1)),

		// Numbers where strings are expected and the other way round.
		rejects("a number as org_id is the wrong type", Requests, req(kv{"org_id", "42"}), "org_id", `field "org_id": want string, got number`),
		rejects("a boolean as request_id is the wrong type", Requests, req(kv{"request_id", "true"}), "request_id", `field "request_id": want string, got boolean`),
		rejects("an object as route is the wrong type", Requests, req(kv{"route", `{"a":1}`}), "route", `field "route": want string, got object`),
		rejects("a number as ip is the wrong type", Requests, req(kv{"ip", "2130706433"}), "ip", `field "ip": want string, got number`),
		rejects("a string as status in a request is the wrong type", Requests, req(kv{"status", `"200"`}), "status", `field "status": want integer, got string`),
		rejects("a number as status in an audit event is the wrong type", Audit, audit(kv{"status", "200"}), "status", `field "status": want string, got number`),
		rejects("a string as bytes_out is the wrong type", Requests, req(kv{"bytes_out", `"1"`}), "bytes_out", `field "bytes_out": want integer, got string`),
		rejects("a string as latency_ms is the wrong type", Requests, req(kv{"latency_ms", `"12.5"`}), "latency_ms", `field "latency_ms": want number, got string`),
		rejects("an array as changes is the wrong type", Audit, audit(kv{"changes", `[1]`}), "changes", `field "changes": want object, got array`),
		rejects("a string as changes is the wrong type", Audit, audit(kv{"changes", `"{}"`}), "changes", `field "changes": want object, got string`),

		// Timestamps.
		rejects("a timestamp in year 1 is rejected", Requests, req(kv{"ts", `"0001-01-01T00:00:00Z"`}), "ts",
			`field "ts": "0001-01-01T00:00:00Z" is not a valid RFC 3339 time: year 1 is outside 1678..2261`),
		rejects("a timestamp in year 9999 is rejected", Requests, req(kv{"ts", `"9999-12-31T23:59:59.999999999Z"`}), "ts",
			`field "ts": "9999-12-31T23:59:59.999999999Z" is not a valid RFC 3339 time: year 9999 is outside 1678..2261`),
		accepts("the first instant of 1678 is accepted", Requests, req(kv{"ts", `"1678-01-01T00:00:00Z"`}), wantTS(ts("1678-01-01T00:00:00Z"))),
		accepts("the last nanosecond of 2261 is accepted", Requests, req(kv{"ts", `"2261-12-31T23:59:59.999999999Z"`}), wantTS(ts("2261-12-31T23:59:59.999999999Z"))),
		accepts("negative Unix milliseconds are before 1970", Requests, req(kv{"ts", `-1`}), wantTS(-1e6)),
		rejects("Unix milliseconds in year 1 are rejected", Requests, req(kv{"ts", `-62135596800000`}), "ts",
			`field "ts": -62135596800000 Unix milliseconds is outside the years 1678..2261`),
		rejects("Unix milliseconds in year 9999 are rejected", Requests, req(kv{"ts", `253402300799999`}), "ts",
			`field "ts": 253402300799999 Unix milliseconds is outside the years 1678..2261`),
		rejects("Unix milliseconds past int64 are rejected", Requests, req(kv{"ts", `99999999999999999999`}), "ts",
			`field "ts": 99999999999999999999 Unix milliseconds is outside the years 1678..2261`),
		rejects("fractional Unix milliseconds are rejected", Requests, req(kv{"ts", `1.7e12`}), "ts",
			`field "ts": want integer Unix milliseconds, got number 1.7e12`),
		rejects("a leap second is rejected", Requests, req(kv{"ts", `"2026-06-30T23:59:60Z"`}), "ts",
			`field "ts": "2026-06-30T23:59:60Z" is not a valid RFC 3339 time: second out of range`),
		rejects("a boolean timestamp is rejected", Requests, req(kv{"ts", `true`}), "ts",
			`field "ts": not an RFC 3339 time or integer Unix milliseconds`),

		// Addresses: kept as written when netip reads them without a zone,
		// rejected otherwise; no normalisation (docs/events.md).
		accepts("an IPv4-mapped IPv6 address is kept as written", Requests, req(kv{"ip", `"::ffff:10.0.0.1"`}), wantIP("::ffff:10.0.0.1")),
		accepts("an upper-case IPv6 address is kept as written", Requests, req(kv{"ip", `"2001:DB8::1"`}), wantIP("2001:DB8::1")),
		accepts("the unspecified IPv6 address is an address", Requests, req(kv{"ip", `"::"`}), wantIP("::")),
		accepts("an empty audit ip means no address", Audit, audit(kv{"ip", `""`}), wantIP("")),
		rejects("an empty request ip is rejected", Requests, req(kv{"ip", `""`}), "ip", `field "ip": "" is not an IPv4 or IPv6 address`),
		rejects("a hexadecimal IPv4 part is rejected", Requests, req(kv{"ip", `"0x7f.1"`}), "ip", `field "ip": "0x7f.1" is not an IPv4 or IPv6 address`),
		rejects("a shortened IPv4 address is rejected", Requests, req(kv{"ip", `"127.1"`}), "ip", `field "ip": "127.1" is not an IPv4 or IPv6 address`),
		rejects("an IPv4 address with a zone is rejected", Requests, req(kv{"ip", `"1.2.3.4%eth0"`}), "ip", `field "ip": "1.2.3.4%eth0" is not an IPv4 or IPv6 address`),
		rejects("an IPv6 address with a zone is rejected", Requests, req(kv{"ip", `"fe80::1%eth0"`}), "ip", `field "ip": "fe80::1%eth0" is not an IPv4 or IPv6 address`),
		rejects("a bracketed IPv6 address is rejected", Requests, req(kv{"ip", `"[2001:db8::1]"`}), "ip", `field "ip": "[2001:db8::1]" is not an IPv4 or IPv6 address`),
		rejects("an octal-looking IPv4 address is rejected", Requests, req(kv{"ip", `"010.0.0.1"`}), "ip", `field "ip": "010.0.0.1" is not an IPv4 or IPv6 address`),
		rejects("a leading zero inside an IPv4 address is rejected", Requests, req(kv{"ip", `"1.02.3.4"`}), "ip", `field "ip": "1.02.3.4" is not an IPv4 or IPv6 address`),
		rejects("an IPv4 part over 255 is rejected", Requests, req(kv{"ip", `"256.1.1.1"`}), "ip", `field "ip": "256.1.1.1" is not an IPv4 or IPv6 address`),
		rejects("an address with a port is rejected", Requests, req(kv{"ip", `"1.2.3.4:80"`}), "ip", `field "ip": "1.2.3.4:80" is not an IPv4 or IPv6 address`),
		rejects("an address with spaces is rejected", Requests, req(kv{"ip", `" 1.2.3.4"`}), "ip", `field "ip": " 1.2.3.4" is not an IPv4 or IPv6 address`),
		rejects("an audit address with a zone is rejected", Audit, audit(kv{"ip", `"fe80::1%25eth0"`}), "ip", `field "ip": "fe80::1%25eth0" is not an IPv4 or IPv6 address`),
	}
}

// nastyFileName is the file a case's record is kept in: the source, then
// the case name in lower case with dashes.
func nastyFileName(c nastyCase) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(c.name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	return c.src.String() + "." + b.String() + ".json"
}

func TestNastyRecordsAreDecodedOrExplained(t *testing.T) {
	for _, c := range nastyCases() {
		t.Run(c.name, func(t *testing.T) {
			d := Decoder{MaxBytes: c.maxBytes}
			var e Event
			err := decodeWithoutPanic(t, &d, c.src, c.in, &e)
			if c.check != nil {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				c.check(t, &e)
				return
			}
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("got %T %v, want an *InvalidError", err, err)
			}
			if ie.Reason == "" {
				t.Fatal("the reason is empty")
			}
			if ie.Field != c.field || ie.Reason != c.reason {
				t.Errorf("got field %q, reason %q\nwant field %q, reason %q", ie.Field, truncate(ie.Reason), c.field, truncate(c.reason))
			}
			if len(ie.Reason) > 300 {
				t.Errorf("the reason is %d bytes; a dead letter's reason must stay short", len(ie.Reason))
			}
			if !utf8.ValidString(ie.Reason) || !utf8.ValidString(ie.Field) {
				t.Errorf("field %q or reason %q is not valid UTF-8", ie.Field, ie.Reason)
			}
		})
	}
}

// decodeWithoutPanic turns a panic into a test failure naming the record.
func decodeWithoutPanic(t *testing.T, d *Decoder, src Source, in []byte, e *Event) (err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("Decode panicked on %d bytes %q…: %v", len(in), truncate(string(in)), r)
		}
	}()
	return d.Decode(src, in, e)
}

// TestNastyRecordsCostNoMoreThanOrdinaryOnes decodes each record too large
// for testdata/nasty repeatedly with one Decoder: after the first time, accepting or rejecting
// it must allocate at most a few small objects (the error and its reason)
// and at most 1 KiB, whatever the record's size, so that a flood of such
// records costs the garbage collector no more than ordinary ones.
func TestNastyRecordsCostNoMoreThanOrdinaryOnes(t *testing.T) {
	for _, c := range nastyCases() {
		if len(c.in) <= nastyFileMax {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			d := Decoder{MaxBytes: c.maxBytes}
			var e Event
			d.Decode(c.src, c.in, &e) // grows the Decoder's buffers once
			allocs := testing.AllocsPerRun(20, func() { d.Decode(c.src, c.in, &e) })
			if allocs > 10 {
				t.Errorf("%.0f allocations per record, want at most 10", allocs)
			}
			if perRecord := bytesPerRun(20, func() { d.Decode(c.src, c.in, &e) }); perRecord > 1024 {
				t.Errorf("%d bytes allocated per record of %d bytes, want at most 1 KiB", perRecord, len(c.in))
			}
		})
	}
}

// bytesPerRun is testing.AllocsPerRun for bytes: the average heap bytes
// allocated by one call of f.
func bytesPerRun(runs int, f func()) uint64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := 0; i < runs; i++ {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestNastyCorpusMatchesTheTable keeps testdata/nasty in step with
// nastyCases: every case small enough has its file, byte for byte, and no
// file is left without a case. go test -run NastyCorpus -update-nasty
// rewrites the directory.
func TestNastyCorpusMatchesTheTable(t *testing.T) {
	want := map[string][]byte{}
	for _, c := range nastyCases() {
		if len(c.in) > nastyFileMax {
			continue
		}
		name := nastyFileName(c)
		if _, dup := want[name]; dup {
			t.Fatalf("two cases share the file %s", name)
		}
		want[name] = c.in
	}
	if *updateNasty {
		if err := os.RemoveAll(nastyDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(nastyDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range want {
			if err := os.WriteFile(filepath.Join(nastyDir, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	entries, err := os.ReadDir(nastyDir)
	if err != nil {
		t.Fatalf("%v (run go test -run NastyCorpus -update-nasty ./event/)", err)
	}
	var have []string
	for _, de := range entries {
		have = append(have, de.Name())
		data, err := os.ReadFile(filepath.Join(nastyDir, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		w, ok := want[de.Name()]
		switch {
		case !ok:
			t.Errorf("%s has no case in nastyCases (run with -update-nasty to remove it)", de.Name())
		case !bytes.Equal(data, w):
			t.Errorf("%s differs from its case (run with -update-nasty to rewrite it)", de.Name())
		}
	}
	for name := range want {
		if !slices.Contains(have, name) {
			t.Errorf("%s is missing (run with -update-nasty to write it)", name)
		}
	}
}
