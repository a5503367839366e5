package event

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
	"unsafe"
)

// DefaultMaxBytes is the record size limit a Decoder applies when its
// MaxBytes field is zero.
const DefaultMaxBytes = 1 << 20

// MaxDepth is the deepest nesting of objects and arrays a record may have.
// The record's own top-level object counts as level 1, so a `changes` object
// is at level 2 and may hold 62 more levels inside it.
const MaxDepth = 64

// Decoder decodes records; reuse one per goroutine. Not safe for concurrent use.
//
// The zero value is ready to use. A Decoder owns two buffers that it reuses
// from one Decode call to the next: one for strings that contained JSON escape
// sequences (every other string aliases the input) and one for Event.Extra.
// That is why everything Decode stores in an Event is valid only until the
// next Decode call on the same Decoder and only as long as the caller does
// not modify the input bytes.
type Decoder struct {
	// MaxBytes is the size of the largest record accepted, in bytes, counting
	// any surrounding whitespace. Zero or less means DefaultMaxBytes.
	MaxBytes int

	data    []byte // the record being decoded
	scratch []byte // unescaped strings, reset per Decode
	extra   []byte // Event.Extra, reset per Decode

	// The top-level field whose value is being read, for error messages:
	// a known field, or else an unknown key (or neither).
	cur    fieldID
	curKey string

	// Unknown top-level keys seen so far (unescaped), for duplicate
	// detection; unknownSet takes over when a record has very many.
	unknown    []string
	unknownSet map[string]struct{}
}

// InvalidError is returned for every invalid record; Reason is a short
// human-readable sentence naming the field and the problem, for example
// `missing required field "org_id"` or `field "status": want integer, got string`.
// Field is the top-level field concerned, or "" when the problem is not
// about one field (the record is not JSON, is too large, ...).
//
// Decode returns it as a *InvalidError: test with
//
//	var ie *event.InvalidError
//	if errors.As(err, &ie) { ... }
type InvalidError struct {
	Field  string
	Reason string
}

// Error returns the Reason.
func (e *InvalidError) Error() string { return e.Reason }

// fieldID numbers the fields the contract names, across both sources. Zero
// means unknown. Each id is also a bit position in the masks below.
type fieldID uint8

const (
	fUnknown fieldID = iota
	fTS
	fRequestID
	fEventID
	fOrgID
	fAPIKeyID
	fKeyPermission
	fIP
	fCountry
	fMethod
	fRoute
	fPath
	fOperation
	fNamespace
	fDataClassification
	fStatus
	fBytesIn
	fBytesOut
	fLatencyMs
	fUserAgent
	fActorID
	fActorType
	fAction
	fResourceType
	fResourceID
	fChanges
	numFields
)

var fieldNames = [numFields]string{
	fTS:                 "ts",
	fRequestID:          "request_id",
	fEventID:            "event_id",
	fOrgID:              "org_id",
	fAPIKeyID:           "api_key_id",
	fKeyPermission:      "key_permission",
	fIP:                 "ip",
	fCountry:            "country",
	fMethod:             "method",
	fRoute:              "route",
	fPath:               "path",
	fOperation:          "operation",
	fNamespace:          "namespace",
	fDataClassification: "data_classification",
	fStatus:             "status",
	fBytesIn:            "bytes_in",
	fBytesOut:           "bytes_out",
	fLatencyMs:          "latency_ms",
	fUserAgent:          "user_agent",
	fActorID:            "actor_id",
	fActorType:          "actor_type",
	fAction:             "action",
	fResourceType:       "resource_type",
	fResourceID:         "resource_id",
	fChanges:            "changes",
}

// The field masks are uint32s.
var _ [32 - numFields]struct{}

func maskOf(ids ...fieldID) uint32 {
	var m uint32
	for _, id := range ids {
		m |= 1 << id
	}
	return m
}

// Per source: the required fields in the order of events.md (the first one
// missing is the one reported), and the set of fields the source names. A key
// outside a source's set, such as `changes` in a request log record, is an
// unknown field for that source and goes to Event.Extra.
var (
	requestRequired = []fieldID{fTS, fRequestID, fOrgID, fIP, fMethod, fRoute, fOperation, fStatus}
	auditRequired   = []fieldID{fTS, fEventID, fOrgID, fActorID, fActorType, fAction, fResourceType, fStatus}

	requestKnown = maskOf(fTS, fRequestID, fOrgID, fAPIKeyID, fKeyPermission, fIP, fCountry, fMethod,
		fRoute, fPath, fOperation, fNamespace, fDataClassification, fStatus, fBytesIn, fBytesOut,
		fLatencyMs, fUserAgent)
	auditKnown = maskOf(fTS, fEventID, fOrgID, fActorID, fActorType, fAPIKeyID, fKeyPermission, fIP,
		fAction, fResourceType, fResourceID, fNamespace, fDataClassification, fStatus, fChanges)

	requestRequiredMask = maskOf(requestRequired...)
	auditRequiredMask   = maskOf(auditRequired...)
)

// lookupKey returns the field a key names, or fUnknown. Dispatching on the
// length and then the first byte leaves one comparison with a constant
// string, which the compiler inlines.
func lookupKey(k string) fieldID {
	switch len(k) {
	case 2:
		if k == "ts" {
			return fTS
		}
		if k == "ip" {
			return fIP
		}
	case 4:
		if k == "path" {
			return fPath
		}
	case 5:
		if k == "route" {
			return fRoute
		}
	case 6:
		switch k[0] {
		case 'o':
			if k == "org_id" {
				return fOrgID
			}
		case 'm':
			if k == "method" {
				return fMethod
			}
		case 's':
			if k == "status" {
				return fStatus
			}
		case 'a':
			if k == "action" {
				return fAction
			}
		}
	case 7:
		if k == "country" {
			return fCountry
		}
		if k == "changes" {
			return fChanges
		}
	case 8:
		switch k[0] {
		case 'e':
			if k == "event_id" {
				return fEventID
			}
		case 'b':
			if k == "bytes_in" {
				return fBytesIn
			}
		case 'a':
			if k == "actor_id" {
				return fActorID
			}
		}
	case 9:
		switch k[0] {
		case 'o':
			if k == "operation" {
				return fOperation
			}
		case 'n':
			if k == "namespace" {
				return fNamespace
			}
		case 'b':
			if k == "bytes_out" {
				return fBytesOut
			}
		}
	case 10:
		switch k[0] {
		case 'r':
			if k == "request_id" {
				return fRequestID
			}
		case 'a':
			if k == "api_key_id" {
				return fAPIKeyID
			}
			if k == "actor_type" {
				return fActorType
			}
		case 'l':
			if k == "latency_ms" {
				return fLatencyMs
			}
		case 'u':
			if k == "user_agent" {
				return fUserAgent
			}
		}
	case 11:
		if k == "resource_id" {
			return fResourceID
		}
	case 13:
		if k == "resource_type" {
			return fResourceType
		}
	case 14:
		if k == "key_permission" {
			return fKeyPermission
		}
	case 19:
		if k == "data_classification" {
			return fDataClassification
		}
	}
	return fUnknown
}

// keyWords holds, for each field, its name followed by the closing quote
// as three little-endian words and the masks selecting the bytes that
// count; keyCandidates lists the fields by the first byte of their name.
// matchKey uses them to recognise a key with three word comparisons.
var (
	keyWords      [numFields]struct{ w, m [3]uint64 }
	keyCandidates [256][4]fieldID
)

func init() {
	for id := fTS; id < numFields; id++ {
		b := []byte(fieldNames[id] + `"`)
		if len(b) > 24 {
			panic("event: field name too long for matchKey: " + fieldNames[id])
		}
		for k, c := range b {
			keyWords[id].w[k/8] |= uint64(c) << (8 * (k % 8))
			keyWords[id].m[k/8] |= 0xff << (8 * (k % 8))
		}
		cands := &keyCandidates[b[0]]
		for n := 0; ; n++ {
			if n == len(cands) {
				panic("event: too many field names start with " + string(b[:1]))
			}
			if cands[n] == fUnknown {
				cands[n] = id
				break
			}
		}
	}
}

// matchKey recognises a field name written without escapes in the key at
// data[i] (the opening quote) and returns its id and the position after the
// closing quote. It returns fUnknown when the key needs reading the slow
// way: an unknown key, a known one written with escapes, or one too near the
// end of the input to load three words.
func matchKey(data []byte, i int) (fieldID, int) {
	if i < 0 || len(data)-i < 25 {
		return fUnknown, i
	}
	p := data[i+1 : i+25]
	w0 := binary.LittleEndian.Uint64(p[0:8])
	w1 := binary.LittleEndian.Uint64(p[8:16])
	w2 := binary.LittleEndian.Uint64(p[16:24])
	for _, id := range &keyCandidates[p[0]] {
		if id == fUnknown {
			break
		}
		k := &keyWords[id]
		if (w0^k.w[0])&k.m[0]|(w1^k.w[1])&k.m[1]|(w2^k.w[2])&k.m[2] == 0 {
			return id, i + 2 + len(fieldNames[id])
		}
	}
	return fUnknown, i
}

// Decode decodes one record of source src from data into *e, which it resets
// first: fields absent from the record hold their zero value.
//
// It returns a *InvalidError if the record breaks the contract in
// docs/events.md (then *e holds only Source) and a plain error if src is
// neither Requests nor Audit. Strings and slices in *e alias data and the
// Decoder's buffers; see Event.
//
// Choices the contract leaves open, made here:
//   - null for an optional field means absent, null for a required one means missing;
//   - request_id, event_id, org_id, method, route, action, actor_id and
//     resource_type must be non-empty strings: an empty identifier or route
//     cannot be grouped or matched on, so it is treated as a broken record.
//     Other strings may be empty; for the optional enumerations (key_permission,
//     data_classification) and for the audit ip, "" means absent, which is
//     what the zero value means anyway. country is not checked against ISO 3166;
//   - ip is kept as received (not normalised) once it parses as an IPv4 or
//     IPv6 address without a zone;
//   - integers (status, bytes_in, bytes_out, integer ts) must be written
//     without fraction or exponent; latency_ms may be any JSON number ≥ 0
//     that fits a float64;
//   - duplicate keys are rejected at the top level only; nested objects
//     inside `changes` and unknown fields are kept verbatim, not interpreted;
//   - a \u escape encoding half of a surrogate pair alone is invalid, like
//     invalid UTF-8;
//   - ts strings follow RFC 3339 strictly (YYYY-MM-DDTHH:MM:SS, 1 to 9
//     fractional digits, Z or ±HH:MM with HH ≤ 23; "t" and "z" may be lower
//     case as RFC 3339 allows; no leap second); its date must lie in the years
//     1678..2261, and integer milliseconds must too, so that TS never
//     overflows int64 nanoseconds;
//   - the top-level object is nesting level 1 and MaxDepth levels are
//     allowed; the size limit counts the whole record including whitespace.
func (d *Decoder) Decode(src Source, data []byte, e *Event) error {
	var required []fieldID
	var known, requiredMask uint32
	switch src {
	case Requests:
		required, known, requiredMask = requestRequired, requestKnown, requestRequiredMask
	case Audit:
		required, known, requiredMask = auditRequired, auditKnown, auditRequiredMask
	default:
		*e = Event{}
		return fmt.Errorf("event: cannot decode a record of unknown source %d", uint8(src))
	}
	*e = Event{Source: src}

	limit := d.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	if len(data) > limit {
		return &InvalidError{Reason: fmt.Sprintf("record is %d bytes, over the limit of %d bytes", len(data), limit)}
	}

	d.data = data
	d.scratch = d.scratch[:0]
	d.extra = d.extra[:0]
	present, err := d.object(src, known, e)
	if err == nil {
		if missing := requiredMask &^ present; missing != 0 {
			for _, id := range required {
				if missing&(1<<id) != 0 {
					name := fieldNames[id]
					err = &InvalidError{Field: name, Reason: `missing required field "` + name + `"`}
					break
				}
			}
		}
	}
	if err == nil && len(d.extra) > 0 {
		d.extra = append(d.extra, '}')
		e.Extra = d.extra[:len(d.extra):len(d.extra)]
	}

	// Drop references to data so that the Decoder does not keep the
	// caller's buffer alive.
	d.data, d.cur, d.curKey = nil, fUnknown, ""
	if len(d.unknown) > 0 {
		clear(d.unknown)
		d.unknown = d.unknown[:0]
		if d.unknownSet != nil {
			clear(d.unknownSet)
		}
	}
	if err != nil {
		*e = Event{Source: src}
		return err
	}
	return nil
}

// object decodes the top-level object and returns the set of fields present
// with a non-null value.
func (d *Decoder) object(src Source, known uint32, e *Event) (present uint32, err error) {
	data := d.data
	i := skipWS(data, 0)
	if i >= len(data) {
		return 0, &InvalidError{Reason: "empty record"}
	}
	if c := data[i]; c != '{' {
		if c == '[' || c == '"' || c == '-' || isDigit(c) || c == 't' || c == 'f' || c == 'n' {
			return 0, &InvalidError{Reason: "not a JSON object"}
		}
		return 0, d.unexpected(i, "'{'")
	}
	i = skipWS(data, i+1)
	if i < len(data) && data[i] == '}' {
		i++
	} else {
		var seen uint32
		for {
			if i >= len(data) || data[i] != '"' {
				return 0, d.unexpected(i, "a string key")
			}
			keyStart := i
			var key string // set only when read the slow way
			id, j := matchKey(data, i)
			if id == fUnknown {
				if key, j, err = d.readString(i); err != nil {
					return 0, err
				}
				id = lookupKey(key)
			}
			keyEnd := j
			if j < len(data) && data[j] == ':' {
				j++
			} else {
				j = skipWS(data, j)
				if j >= len(data) || data[j] != ':' {
					return 0, d.unexpected(j, "':'")
				}
				j++
			}
			j = skipWS(data, j)

			if bit := uint32(1) << id; known&bit != 0 { // never true for fUnknown
				if seen&bit != 0 {
					return 0, d.duplicate(fieldNames[id])
				}
				seen |= bit
				d.cur = id
				var set bool
				if j, set, err = d.field(src, id, e, j); err != nil {
					return 0, err
				}
				if set {
					present |= bit
				}
				d.cur = fUnknown
			} else {
				if id != fUnknown { // a field of the other source
					key = fieldNames[id]
				}
				if d.seenUnknown(key) {
					return 0, d.duplicate(key)
				}
				d.curKey = key
				valStart := j
				if j, err = d.skipValue(j, 1); err != nil {
					return 0, err
				}
				d.addExtra(data[keyStart:keyEnd], data[valStart:j])
				d.curKey = ""
			}

			j = skipWS(data, j)
			if j < len(data) {
				if c := data[j]; c == ',' {
					i = skipWS(data, j+1)
					continue
				} else if c == '}' {
					i = j + 1
					break
				}
			}
			return 0, d.unexpected(j, "',' or '}'")
		}
	}
	if i = skipWS(data, i); i < len(data) {
		return 0, d.syntax(i, "unexpected data after the object")
	}
	return present, nil
}

func (d *Decoder) duplicate(key string) error {
	return &InvalidError{Field: strings.Clone(key), Reason: "duplicate field " + quote(key)}
}

// seenUnknown records an unknown key and reports whether it was seen before.
func (d *Decoder) seenUnknown(key string) bool {
	const linearMax = 16
	if len(d.unknown) < linearMax {
		for _, k := range d.unknown {
			if k == key {
				return true
			}
		}
		d.unknown = append(d.unknown, key)
		return false
	}
	if len(d.unknown) == linearMax {
		if d.unknownSet == nil {
			d.unknownSet = make(map[string]struct{})
		}
		for _, k := range d.unknown {
			d.unknownSet[k] = struct{}{}
		}
		// Keep len(d.unknown) > linearMax from now on so that the set is
		// used and cleared at the end of Decode.
		d.unknown = append(d.unknown, "")
	}
	if _, ok := d.unknownSet[key]; ok {
		return true
	}
	d.unknownSet[key] = struct{}{}
	return false
}

func (d *Decoder) addExtra(rawKey, rawValue []byte) {
	if len(d.extra) == 0 {
		d.extra = append(d.extra, '{')
	} else {
		d.extra = append(d.extra, ',')
	}
	d.extra = append(d.extra, rawKey...)
	d.extra = append(d.extra, ':')
	d.extra = append(d.extra, rawValue...)
}

// field decodes the value of a known field, which starts at data[i], and
// returns the position after it and whether it was non-null.
func (d *Decoder) field(src Source, id fieldID, e *Event, i int) (next int, set bool, err error) {
	data := d.data
	if i >= len(data) {
		return i, false, d.syntax(i, "unexpected end of input, want a value")
	}
	switch id {
	case fTS:
		return d.ts(e, i)
	case fStatus:
		if src == Requests {
			var v int64
			v, next, set, err = d.integer(id, i)
			if err == nil && (v < 0 || v > 999) {
				err = d.invalidf(id, "%d is out of range 0..999", v)
			}
			e.Status = v
			return next, set, err
		}
	case fBytesIn, fBytesOut:
		var v int64
		v, next, set, err = d.integer(id, i)
		if err == nil && v < 0 {
			err = d.invalidf(id, "must not be negative, got %d", v)
		}
		if id == fBytesIn {
			e.BytesIn = v
		} else {
			e.BytesOut = v
		}
		return next, set, err
	case fLatencyMs:
		return d.latency(e, i)
	case fChanges:
		return d.changes(e, i)
	}

	// Everything else is a string.
	var s string
	switch data[i] {
	case '"':
		if s, next, err = d.readString(i); err != nil {
			return next, false, err
		}
	case 'n':
		next, err = d.literal(i, "null")
		return next, false, err
	default:
		return i, false, d.wrongType(id, i, "string")
	}

	switch id {
	case fRequestID, fEventID:
		e.ID = s
	case fOrgID:
		e.OrgID = s
	case fAPIKeyID:
		e.APIKeyID = s
	case fKeyPermission:
		switch s {
		case "", "READ", "WRITE", "DELETE", "ADMIN":
		default:
			return next, false, d.notOneOf(id, s, "READ, WRITE, DELETE, ADMIN")
		}
		e.KeyPermission = s
	case fIP:
		if s == "" && src == Audit {
			return next, true, nil
		}
		if !validIP(s) {
			return next, false, d.invalidf(id, "%s is not an IPv4 or IPv6 address", quote(s))
		}
		e.IP = s
	case fCountry:
		e.Country = s
	case fMethod:
		e.Method = s
	case fRoute:
		e.Route = s
	case fPath:
		e.Path = s
	case fOperation:
		switch s {
		case "metadata", "data", "search", "upload", "compute":
		default:
			return next, false, d.notOneOf(id, s, "metadata, data, search, upload, compute")
		}
		e.Operation = s
	case fNamespace:
		e.Namespace = s
	case fDataClassification:
		switch s {
		case "", "PUBLIC", "INTERNAL", "CONFIDENTIAL", "PHI":
		default:
			return next, false, d.notOneOf(id, s, "PUBLIC, INTERNAL, CONFIDENTIAL, PHI")
		}
		e.DataClassification = s
	case fUserAgent:
		e.UserAgent = s
	case fActorID:
		e.ActorID = s
	case fActorType:
		switch s {
		case "user", "api_key", "system":
		default:
			return next, false, d.notOneOf(id, s, "user, api_key, system")
		}
		e.ActorType = s
	case fAction:
		e.Action = s
	case fResourceType:
		e.ResourceType = s
	case fResourceID:
		e.ResourceID = s
	case fStatus: // audit
		switch s {
		case "success", "failure", "denied":
		default:
			return next, false, d.notOneOf(id, s, "success, failure, denied")
		}
		e.Outcome = s
	}
	if s == "" {
		switch id {
		case fRequestID, fEventID, fOrgID, fMethod, fRoute, fAction, fActorID, fResourceType:
			return next, false, d.invalidf(id, "must not be empty")
		}
	}
	return next, true, nil
}

// integer reads an integer field at data[i]: a JSON number without fraction
// or exponent that fits an int64, or null.
func (d *Decoder) integer(id fieldID, i int) (v int64, next int, set bool, err error) {
	data := d.data
	c := data[i]
	if c == 'n' {
		next, err = d.literal(i, "null")
		return 0, next, false, err
	}
	if c != '-' && !isDigit(c) {
		return 0, i, false, d.wrongType(id, i, "integer")
	}
	next, isInt, err := d.number(i)
	if err != nil {
		return 0, next, false, err
	}
	lit := data[i:next]
	if !isInt {
		return 0, next, false, d.invalidf(id, "want integer, got number %s", truncateBytes(lit))
	}
	v, ok := parseInt(lit)
	if !ok {
		return 0, next, false, d.invalidf(id, "%s does not fit a 64-bit integer", truncateBytes(lit))
	}
	return v, next, true, nil
}

func (d *Decoder) latency(e *Event, i int) (next int, set bool, err error) {
	data := d.data
	c := data[i]
	if c == 'n' {
		next, err = d.literal(i, "null")
		return next, false, err
	}
	if c != '-' && !isDigit(c) {
		return i, false, d.wrongType(fLatencyMs, i, "number")
	}
	if next, _, err = d.number(i); err != nil {
		return next, false, err
	}
	lit := data[i:next]
	v, ok := parseFloat(lit)
	if !ok {
		return next, false, d.invalidf(fLatencyMs, "%s is out of range", truncateBytes(lit))
	}
	if v < 0 {
		return next, false, d.invalidf(fLatencyMs, "must not be negative, got %s", truncateBytes(lit))
	}
	e.LatencyMs = v + 0 // turns -0 into 0
	return next, true, nil
}

func (d *Decoder) changes(e *Event, i int) (next int, set bool, err error) {
	switch d.data[i] {
	case 'n':
		next, err = d.literal(i, "null")
		return next, false, err
	case '{':
		if next, err = d.skipValue(i, 1); err != nil {
			return next, false, err
		}
		e.Changes = d.data[i:next:next]
		return next, true, nil
	}
	return i, false, d.wrongType(fChanges, i, "object")
}

const tsForms = "not an RFC 3339 time or integer Unix milliseconds"

func (d *Decoder) ts(e *Event, i int) (next int, set bool, err error) {
	data := d.data
	switch c := data[i]; {
	case c == 'n':
		next, err = d.literal(i, "null")
		return next, false, err
	case c == '"':
		var s string
		if s, next, err = d.readString(i); err != nil {
			return next, false, err
		}
		ns, problem := parseRFC3339(s)
		if problem != "" {
			if problem == tsForms {
				return next, false, d.invalidf(fTS, "%s is %s", quote(s), tsForms)
			}
			return next, false, d.invalidf(fTS, "%s is not a valid RFC 3339 time: %s", quote(s), problem)
		}
		e.TS = ns
		return next, true, nil
	case c == '-' || isDigit(c):
		var isInt bool
		if next, isInt, err = d.number(i); err != nil {
			return next, false, err
		}
		lit := data[i:next]
		if !isInt {
			return next, false, d.invalidf(fTS, "want integer Unix milliseconds, got number %s", truncateBytes(lit))
		}
		ms, ok := parseInt(lit)
		if !ok || ms < minTSMillis || ms > maxTSMillis {
			return next, false, d.invalidf(fTS, "%s Unix milliseconds is outside the years %d..%d", truncateBytes(lit), minYear, maxYear)
		}
		e.TS = ms * 1e6
		return next, true, nil
	}
	if next, err = d.skipValue(i, 1); err != nil {
		return next, false, err
	}
	return next, false, &InvalidError{Field: "ts", Reason: `field "ts": ` + tsForms}
}

// validIP reports whether s is an IPv4 or IPv6 address without a zone, as
// net/netip.ParseAddr reads them. Dotted-quad IPv4, the common case, is
// accepted here without the cost of building an Addr; anything else,
// including every invalid address, is left to netip.
func validIP(s string) bool {
	if fastIPv4(s) {
		return true
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// fastIPv4 reports whether s is a valid dotted-quad IPv4 address: four
// decimal octets ≤ 255 without leading zeros. false means "not known valid".
func fastIPv4(s string) bool {
	octets, val, n := 0, 0, 0 // octets finished, value and digits of the current one
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case isDigit(c):
			if n == 1 && val == 0 { // leading zero
				return false
			}
			val = val*10 + int(c-'0')
			n++
			if val > 255 {
				return false
			}
		case c == '.':
			if n == 0 || octets == 3 {
				return false
			}
			octets++
			val, n = 0, 0
		default:
			return false
		}
	}
	return octets == 3 && n > 0
}

// ---- errors ----

func (d *Decoder) invalidf(id fieldID, format string, args ...any) error {
	name := fieldNames[id]
	return &InvalidError{Field: name, Reason: `field "` + name + `": ` + fmt.Sprintf(format, args...)}
}

func (d *Decoder) notOneOf(id fieldID, s, values string) error {
	return d.invalidf(id, "%s is not one of %s", quote(s), values)
}

// wrongType reports the value at data[i] as being of the wrong JSON type,
// once it has been checked to be valid JSON (otherwise that is the error
// reported).
func (d *Decoder) wrongType(id fieldID, i int, want string) error {
	var got string
	switch c := d.data[i]; {
	case c == '"':
		got = "string"
	case c == '{':
		got = "object"
	case c == '[':
		got = "array"
	case c == 't' || c == 'f':
		got = "boolean"
	case c == '-' || isDigit(c):
		got = "number"
	}
	if _, err := d.skipValue(i, 1); err != nil {
		return err
	}
	return d.invalidf(id, "want %s, got %s", want, got)
}

// field returns the name of the top-level field being decoded, for errors.
func (d *Decoder) fieldName() string {
	if d.cur != fUnknown {
		return fieldNames[d.cur]
	}
	return strings.Clone(d.curKey)
}

func (d *Decoder) syntax(pos int, msg string) error {
	return &InvalidError{
		Field:  d.fieldName(),
		Reason: "invalid JSON at byte " + strconv.Itoa(pos) + ": " + msg,
	}
}

// unexpected reports the byte at data[i], or the end of input, where want
// was expected.
func (d *Decoder) unexpected(i int, want string) error {
	if i >= len(d.data) {
		return d.syntax(i, "unexpected end of input, want "+want)
	}
	return d.syntax(i, "unexpected "+describeByte(d.data[i])+", want "+want)
}

func (d *Decoder) tooDeep(i int) error {
	return &InvalidError{
		Field:  d.fieldName(),
		Reason: fmt.Sprintf("nesting deeper than %d levels at byte %d", MaxDepth, i),
	}
}

func describeByte(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return strconv.QuoteRune(rune(c))
	}
	return fmt.Sprintf("byte 0x%02x", c)
}

// quote quotes s for an error message, shortening it if it is long.
func quote(s string) string { return strconv.Quote(truncate(s)) }

func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// truncateBytes is truncate(string(b)) without copying all of b: a number
// literal can be as long as the record, and truncate looks at most at its
// first 65 bytes.
func truncateBytes(b []byte) string {
	if keep := 64 + utf8.UTFMax; len(b) > keep {
		b = b[:keep]
	}
	return truncate(string(b))
}

// ---- scanning ----
//
// The scanning functions take the position to start at and return the
// position after what they read.

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isSpace(c byte) bool { return c <= ' ' && (c == ' ' || c == '\t' || c == '\n' || c == '\r') }

func skipWS(data []byte, i int) int {
	for i < len(data) && isSpace(data[i]) {
		i++
	}
	return i
}

func (d *Decoder) literal(i int, lit string) (int, error) {
	data := d.data
	for k := 0; k < len(lit); k++ {
		if i >= len(data) {
			return i, d.syntax(i, "unexpected end of input")
		}
		if data[i] != lit[k] {
			return i, d.syntax(i, "unexpected "+describeByte(data[i])+" in literal, want "+lit)
		}
		i++
	}
	return i, nil
}

// number scans the JSON number at data[i] and reports whether it is written
// as an integer (no fraction, no exponent).
func (d *Decoder) number(i int) (next int, isInt bool, err error) {
	data := d.data
	if i < len(data) && data[i] == '-' {
		i++
	}
	if i >= len(data) || !isDigit(data[i]) {
		return i, false, d.unexpected(i, "a digit")
	}
	if data[i] == '0' {
		i++
	} else {
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	isInt = true
	if i < len(data) && data[i] == '.' {
		isInt = false
		i++
		if i >= len(data) || !isDigit(data[i]) {
			return i, false, d.unexpected(i, "a digit after the decimal point")
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		isInt = false
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || !isDigit(data[i]) {
			return i, false, d.unexpected(i, "a digit in the exponent")
		}
		for i < len(data) && isDigit(data[i]) {
			i++
		}
	}
	return i, isInt, nil
}

// parseInt converts a JSON integer literal (already validated: optional
// minus, digits without leading zeros) to an int64.
func parseInt(lit []byte) (int64, bool) {
	neg := lit[0] == '-'
	if neg {
		lit = lit[1:]
	}
	if len(lit) > 19 { // no leading zeros, so at least 10^19 > MaxInt64
		return 0, false
	}
	var u uint64
	for _, c := range lit {
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow a uint64
	}
	if neg {
		if u > 1<<63 {
			return 0, false
		}
		return -int64(u), true
	}
	if u > math.MaxInt64 {
		return 0, false
	}
	return int64(u), true
}

var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseFloat converts a validated JSON number literal to a float64,
// reporting false if it is too large for one.
func parseFloat(lit []byte) (float64, bool) {
	// Fast path: at most 15 digits and no exponent. Mantissa and power of
	// ten are then exact float64 values and one IEEE division rounds
	// correctly, giving the same result as strconv.ParseFloat.
	if len(lit) <= 16 {
		var mant uint64
		digits, frac := 0, -1
		neg := false
		fast := true
		for i, c := range lit {
			switch {
			case isDigit(c):
				mant = mant*10 + uint64(c-'0')
				digits++
				if frac >= 0 {
					frac++
				}
			case c == '.':
				frac = 0
			case c == '-' && i == 0:
				neg = true
			default:
				fast = false
			}
		}
		if fast && digits <= 15 {
			f := float64(mant)
			if frac > 0 {
				f /= pow10[frac]
			}
			if neg {
				f = -f
			}
			return f, true
		}
	}
	// The literal is valid JSON, so the only possible error is ErrRange:
	// ±Inf on overflow (rejected), 0 on underflow (accepted, as a JSON
	// number that small is 0 to every reader).
	f, _ := strconv.ParseFloat(unsafe.String(unsafe.SliceData(lit), len(lit)), 64)
	if math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

// skipValue validates the JSON value at data[i] and returns the position
// after it. depth is the nesting level of the container holding the value.
func (d *Decoder) skipValue(i, depth int) (int, error) {
	data := d.data
	if i >= len(data) {
		return i, d.syntax(i, "unexpected end of input, want a value")
	}
	switch c := data[i]; {
	case c == '"':
		return d.skipString(i)
	case c == '-' || isDigit(c):
		next, _, err := d.number(i)
		return next, err
	case c == 't':
		return d.literal(i, "true")
	case c == 'f':
		return d.literal(i, "false")
	case c == 'n':
		return d.literal(i, "null")
	case c == '{':
		if depth++; depth > MaxDepth {
			return i, d.tooDeep(i)
		}
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(data) || data[i] != '"' {
				return i, d.unexpected(i, "a string key")
			}
			var err error
			if i, err = d.skipString(i); err != nil {
				return i, err
			}
			i = skipWS(data, i)
			if i >= len(data) || data[i] != ':' {
				return i, d.unexpected(i, "':'")
			}
			if i, err = d.skipValue(skipWS(data, i+1), depth); err != nil {
				return i, err
			}
			i = skipWS(data, i)
			if i < len(data) {
				switch data[i] {
				case ',':
					i = skipWS(data, i+1)
					continue
				case '}':
					return i + 1, nil
				}
			}
			return i, d.unexpected(i, "',' or '}'")
		}
	case c == '[':
		if depth++; depth > MaxDepth {
			return i, d.tooDeep(i)
		}
		i = skipWS(data, i+1)
		if i < len(data) && data[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = d.skipValue(i, depth); err != nil {
				return i, err
			}
			i = skipWS(data, i)
			if i < len(data) {
				switch data[i] {
				case ',':
					i = skipWS(data, i+1)
					continue
				case ']':
					return i + 1, nil
				}
			}
			return i, d.unexpected(i, "',' or ']'")
		}
	}
	return i, d.unexpected(i, "a value")
}

// plain marks the bytes that stand for themselves inside a JSON string:
// everything but '"', '\\', control characters and non-ASCII bytes (which
// need UTF-8 validation).
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipPlain returns the index of the first byte at or after i that is not
// plain, or len(data). It looks at 8 bytes at a time: in the word w, the
// expression below sets the top bit of the lowest byte that is < 0x20, '"',
// '\\' or ≥ 0x80 (subtraction borrows only start at such a byte, so bytes
// above it may be flagged wrongly but never bytes below).
func skipPlain(data []byte, i int) int {
	const (
		ones = 0x0101010101010101
		high = 0x8080808080808080
	)
	for ; i+8 <= len(data); i += 8 {
		w := binary.LittleEndian.Uint64(data[i:])
		t := (w - 0x20*ones) | ((w ^ '"'*ones) - ones) | ((w ^ '\\'*ones) - ones) | w
		if m := t & high; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
	}
	for i < len(data) && plain[data[i]] {
		i++
	}
	return i
}

// readString reads the JSON string at data[i] (the opening quote) and
// returns its value and the position after it. Without escapes the value
// aliases d.data; with escapes it is unescaped into d.scratch.
func (d *Decoder) readString(i int) (string, int, error) {
	data := d.data
	start := i + 1
	i = start
	for {
		i = skipPlain(data, i)
		if i >= len(data) {
			return "", i, d.syntax(i, "unexpected end of input in string")
		}
		switch c := data[i]; {
		case c == '"':
			if i == start {
				return "", i + 1, nil
			}
			return unsafe.String(&data[start], i-start), i + 1, nil
		case c == '\\':
			return d.readEscaped(start, i)
		case c < 0x20:
			return "", i, d.syntax(i, "control character in string")
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return "", i, d.syntax(i, "invalid UTF-8 in string")
			}
			i += size
		}
	}
}

// readEscaped finishes reading a string whose value starts at data[start]
// and whose first backslash is at data[i], unescaping it into d.scratch.
func (d *Decoder) readEscaped(start, i int) (string, int, error) {
	data := d.data
	out := len(d.scratch)
	d.scratch = append(d.scratch, data[start:i]...)
	for {
		j := skipPlain(data, i)
		d.scratch = append(d.scratch, data[i:j]...)
		i = j
		if i >= len(data) {
			return "", i, d.syntax(i, "unexpected end of input in string")
		}
		switch c := data[i]; {
		case c == '"':
			if len(d.scratch) == out {
				return "", i + 1, nil
			}
			return unsafe.String(&d.scratch[out], len(d.scratch)-out), i + 1, nil
		case c == '\\':
			r, n, problem := unescape(data[i:])
			if problem != "" {
				return "", i, d.syntax(i, problem)
			}
			d.scratch = utf8.AppendRune(d.scratch, r)
			i += n
		case c < 0x20:
			return "", i, d.syntax(i, "control character in string")
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return "", i, d.syntax(i, "invalid UTF-8 in string")
			}
			d.scratch = append(d.scratch, data[i:i+size]...)
			i += size
		}
	}
}

// skipString validates the JSON string at data[i] and returns the position
// after it.
func (d *Decoder) skipString(i int) (int, error) {
	data := d.data
	i++
	for {
		i = skipPlain(data, i)
		if i >= len(data) {
			return i, d.syntax(i, "unexpected end of input in string")
		}
		switch c := data[i]; {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			_, n, problem := unescape(data[i:])
			if problem != "" {
				return i, d.syntax(i, problem)
			}
			i += n
		case c < 0x20:
			return i, d.syntax(i, "control character in string")
		default:
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size == 1 {
				return i, d.syntax(i, "invalid UTF-8 in string")
			}
			i += size
		}
	}
}

// unescape decodes the escape sequence at the start of b (b[0] is '\\'),
// returning the rune and the number of bytes used, or a problem.
func unescape(b []byte) (r rune, n int, problem string) {
	if len(b) < 2 {
		return 0, 0, "unexpected end of input in string"
	}
	switch b[1] {
	case '"', '\\', '/':
		return rune(b[1]), 2, ""
	case 'b':
		return '\b', 2, ""
	case 'f':
		return '\f', 2, ""
	case 'n':
		return '\n', 2, ""
	case 'r':
		return '\r', 2, ""
	case 't':
		return '\t', 2, ""
	case 'u':
		r, ok := hex4(b[2:])
		if !ok {
			return 0, 0, `invalid \u escape`
		}
		switch {
		case r >= 0xDC00 && r < 0xE000:
			return 0, 0, `unpaired surrogate in \u escape`
		case r >= 0xD800 && r < 0xDC00:
			if len(b) < 12 || b[6] != '\\' || b[7] != 'u' {
				return 0, 0, `unpaired surrogate in \u escape`
			}
			lo, ok := hex4(b[8:])
			if !ok {
				return 0, 0, `invalid \u escape`
			}
			if lo < 0xDC00 || lo >= 0xE000 {
				return 0, 0, `unpaired surrogate in \u escape`
			}
			return 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00), 12, ""
		}
		return r, 6, ""
	}
	return 0, 0, "invalid escape " + strconv.Quote(string(b[:2]))
}

func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case isDigit(c):
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	return r, true
}

// ---- time ----

const (
	minYear = 1678 // Unix nanoseconds in an int64 span 1677-09-21 .. 2262-04-11
	maxYear = 2261
)

var (
	minTSMillis = daysFromCivil(minYear, 1, 1) * 86400 * 1000
	maxTSMillis = daysFromCivil(maxYear+1, 1, 1)*86400*1000 - 1
)

// daysFromCivil returns the number of days from 1970-01-01 to y-m-d in the
// proleptic Gregorian calendar (H. Hinnant's algorithm, for y ≥ 1).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	yoe := y - era*400
	mp := (m + 9) % 12 // March = 0
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}

func isLeap(y int64) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(m, y int64) int64 {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// digits parses s[i:i+n] as decimal digits.
func digits(s string, i, n int) (int64, bool) {
	if i+n > len(s) {
		return 0, false
	}
	var v int64
	for _, c := range []byte(s[i : i+n]) {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	return v, true
}

// parseRFC3339 parses an RFC 3339 date-time, YYYY-MM-DDTHH:MM:SS[.F]Z or
// with a ±HH:MM offset, with 1 to 9 fractional digits, and returns Unix
// nanoseconds. "t" and "z" may be lower case, as RFC 3339 allows; leap
// seconds (second 60) are not accepted. problem is tsForms when s does not
// have the shape of an RFC 3339 time at all.
func parseRFC3339(s string) (ns int64, problem string) {
	if len(s) < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':' {
		return 0, tsForms
	}
	year, ok1 := digits(s, 0, 4)
	month, ok2 := digits(s, 5, 2)
	day, ok3 := digits(s, 8, 2)
	hour, ok4 := digits(s, 11, 2)
	minute, ok5 := digits(s, 14, 2)
	sec, ok6 := digits(s, 17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) {
		return 0, tsForms
	}
	i := 19
	var frac int64
	if s[i] == '.' {
		i++
		n := 0
		for i < len(s) && isDigit(s[i]) {
			if n == 9 {
				return 0, "more than 9 fractional digits"
			}
			frac = frac*10 + int64(s[i]-'0')
			n++
			i++
		}
		if n == 0 {
			return 0, tsForms
		}
		for ; n < 9; n++ {
			frac *= 10
		}
	}
	if i >= len(s) {
		return 0, tsForms
	}
	var offset int64 // seconds east of UTC
	switch s[i] {
	case 'Z', 'z':
		i++
	case '+', '-':
		oh, ok1 := digits(s, i+1, 2)
		om, ok2 := digits(s, i+4, 2)
		if !ok1 || !ok2 || s[i+3] != ':' {
			return 0, tsForms
		}
		if oh > 23 || om > 59 {
			return 0, "offset out of range"
		}
		offset = oh*3600 + om*60
		if s[i] == '-' {
			offset = -offset
		}
		i += 6
	default:
		return 0, tsForms
	}
	if i != len(s) {
		return 0, tsForms
	}
	switch {
	case year < minYear || year > maxYear:
		return 0, fmt.Sprintf("year %d is outside %d..%d", year, minYear, maxYear)
	case month < 1 || month > 12:
		return 0, "month out of range"
	case day < 1 || day > daysIn(month, year):
		return 0, "day out of range"
	case hour > 23:
		return 0, "hour out of range"
	case minute > 59:
		return 0, "minute out of range"
	case sec > 59:
		return 0, "second out of range"
	}
	secs := daysFromCivil(year, month, day)*86400 + hour*3600 + minute*60 + sec - offset
	return secs*1e9 + frac, ""
}
