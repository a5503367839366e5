package traffic

import (
	"strconv"
)

// route is an API route template as the gateway logs it; the concrete path
// is pre + namespace + mid + document + post.
type route struct {
	method, tmpl, op string
	pre, mid, post   string
	ns, doc          bool
}

func newRoute(method, tmpl, op string) *route {
	rt := &route{method: method, tmpl: tmpl, op: op}
	const nsp, docp = "{namespace_id}", "{document_id}"
	s := tmpl
	if i := indexOf(s, nsp); i >= 0 {
		rt.ns = true
		rt.pre = s[:i]
		s = s[i+len(nsp):]
		if j := indexOf(s, docp); j >= 0 {
			rt.doc = true
			rt.mid = s[:j]
			rt.post = s[j+len(docp):]
		} else {
			rt.mid = s
		}
	} else {
		rt.pre = s
	}
	return rt
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

var (
	rListNS      = newRoute("GET", "/v1/namespaces", "metadata")
	rGetNS       = newRoute("GET", "/v1/namespaces/{namespace_id}", "metadata")
	rUsage       = newRoute("GET", "/v1/organizations/usage", "metadata")
	rKeys        = newRoute("GET", "/v1/organizations/api-keys", "metadata")
	rMembers     = newRoute("GET", "/v1/organizations/members", "metadata")
	rUpdateNS    = newRoute("PATCH", "/v1/namespaces/{namespace_id}", "metadata")
	rDocGet      = newRoute("GET", "/v1/namespaces/{namespace_id}/documents/{document_id}", "data")
	rDocList     = newRoute("GET", "/v1/namespaces/{namespace_id}/documents", "data")
	rDocDownload = newRoute("GET", "/v1/namespaces/{namespace_id}/documents/{document_id}/download", "data")
	rDocCreate   = newRoute("POST", "/v1/namespaces/{namespace_id}/documents", "data")
	rDocUpdate   = newRoute("PUT", "/v1/namespaces/{namespace_id}/documents/{document_id}", "data")
	rDocDelete   = newRoute("DELETE", "/v1/namespaces/{namespace_id}/documents/{document_id}", "data")
	rSearch      = newRoute("POST", "/v1/namespaces/{namespace_id}/search", "search")
	rUpload      = newRoute("POST", "/v1/namespaces/{namespace_id}/uploads", "upload")
	rUploadURL   = newRoute("POST", "/v1/namespaces/{namespace_id}/uploads/from-url", "upload")
	rExtract     = newRoute("POST", "/v1/namespaces/{namespace_id}/extract", "compute")
	rEmbed       = newRoute("POST", "/v1/namespaces/{namespace_id}/embeddings", "compute")
	rMetrics     = newRoute("GET", "/metrics", "metadata")
	rIntMetrics  = newRoute("GET", "/internal/metrics", "metadata")
	rDebugPprof  = newRoute("GET", "/debug/pprof/heap", "metadata")
	rHealth      = newRoute("GET", "/healthz", "metadata")
	rAuthToken   = newRoute("POST", "/v1/auth/token", "metadata")
)

// Extra (unknown) fields some records carry, as real logs do.
const (
	extraTrace  = 1 << iota // requests: "trace_id"
	extraPop                // requests: "edge_pop"
	extraSess               // audit: "session_id"
	extraReqRef             // audit: "request_id" of the request that caused it
)

// Timestamp forms (events.md allows both RFC 3339 and Unix milliseconds).
const (
	tsMillis  = iota // "2026-11-22T18:00:00.120Z"
	tsUnixMs         // 1795370400120
	tsSeconds        // "2026-11-22T18:00:00Z" (the time is whole seconds)
)

// Ways --invalid corrupts a line.
const (
	corruptNone = iota
	corruptTruncate
	corruptMissingField
	corruptWrongType
	corruptBadTime
	corruptNotJSON
	corruptBadEnum
	corruptBadIP
	numCorruptions
)

// rec is one generated record of either source. Strings come from the
// world's tables, so building a record allocates nothing.
type rec struct {
	logAt int64 // when the line is written (orders the file)
	ts    int64 // event time, Unix ns
	audit bool
	// protect: attack lines and lines the detection of attacks relies on
	// are never corrupted by --invalid.
	protect bool
	// ready: number, timestamp form and log time are set (attack records).
	ready   bool
	tsForm  uint8
	extra   uint8
	corrupt uint8
	num     uint64 // request or event number (its id), and the id of the request an audit record refers to
	ref     uint64

	org      string
	key      string
	perm     string
	ip       string
	country  string
	ns       *namespace
	nsID     string // a namespace that is not in the world (enumeration)
	nsClass  string
	doc      uint32
	pathOver string // a concrete path that is not route-shaped (query strings)

	// Requests.
	rt       *route
	status   int
	bytesIn  int64
	bytesOut int64
	latency  int32 // tenths of a millisecond
	ua       string

	// Audit.
	actor     string
	actorType string
	action    string
	resType   string
	resID     string
	outcome   string
	changes   string
	session   uint32
}

func (r *rec) namespaceID() string {
	if r.ns != nil {
		return r.ns.id
	}
	return r.nsID
}

func (r *rec) classification() string {
	if r.ns != nil {
		return r.ns.class
	}
	return r.nsClass
}

// encoder writes records as JSON lines without reflection.
type encoder struct {
	salt    uint64
	secs    int64 // the second cached in day
	day     [19]byte
	haveDay bool
}

func (en *encoder) id(b []byte, prefix string, n uint64) []byte {
	b = append(b, prefix...)
	return strconv.AppendUint(b, (n+1)*0x9e3779b97f4a7c15^en.salt, 36)
}

func (en *encoder) appendTS(b []byte, ts int64, form uint8) []byte {
	if form == tsUnixMs {
		return strconv.AppendInt(b, floorDiv(ts, 1e6), 10)
	}
	sec := floorDiv(ts, 1e9)
	if !en.haveDay || sec != en.secs {
		en.secs, en.haveDay = sec, true
		civil(&en.day, sec)
	}
	b = append(b, '"')
	b = append(b, en.day[:]...)
	if form == tsMillis {
		ms := (ts - sec*1e9) / 1e6
		b = append(b, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10))
	}
	return append(b, 'Z', '"')
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// civil writes "YYYY-MM-DDTHH:MM:SS" for Unix seconds (Howard Hinnant's
// days-to-civil algorithm).
func civil(out *[19]byte, sec int64) {
	days := floorDiv(sec, 86400)
	rem := sec - days*86400
	z := days + 719468
	era := floorDiv(z, 146097)
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y := yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d := doy - (153*mp+2)/5 + 1
	m := mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	put := func(i int, v int64, n int) {
		for j := n - 1; j >= 0; j-- {
			out[i+j] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, y, 4)
	out[4] = '-'
	put(5, m, 2)
	out[7] = '-'
	put(8, d, 2)
	out[10] = 'T'
	put(11, rem/3600, 2)
	out[13] = ':'
	put(14, rem/60%60, 2)
	out[16] = ':'
	put(17, rem%60, 2)
}

func appendStrField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':', '"')
	b = append(b, v...)
	return append(b, '"')
}

func appendIntField(b []byte, name string, v int64) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, v, 10)
}

func appendDoc(b []byte, n uint32) []byte {
	b = append(b, "doc_"...)
	return strconv.AppendUint(b, uint64(n), 36)
}

var pops = map[string][]string{
	"US": {"iad1", "sjc1", "ord1"}, "CA": {"yyz1"}, "MX": {"qro1"}, "BR": {"gru1"},
	"GB": {"lhr1"}, "IE": {"dub1"}, "DE": {"fra1"}, "FR": {"cdg1"}, "NL": {"ams1"}, "SE": {"arn1"},
	"IN": {"bom1"}, "SG": {"sin1"}, "JP": {"nrt1"}, "AU": {"syd1"},
}

// request appends one request log line (without newline).
func (en *encoder) request(b []byte, r *rec) []byte {
	b = append(b, `{"ts":`...)
	switch r.corrupt {
	case corruptBadTime:
		b = append(b, `"2026-11-31T25:61:00Z"`...)
	case corruptWrongType:
		b = append(b, "true"...)
	default:
		b = en.appendTS(b, r.ts, r.tsForm)
	}
	b = append(b, `,"request_id":"`...)
	b = en.id(b, "req_", r.num)
	b = append(b, '"')
	if r.corrupt != corruptMissingField {
		b = appendStrField(b, "org_id", r.org)
	}
	if r.key != "" {
		b = appendStrField(b, "api_key_id", r.key)
	}
	if r.perm != "" {
		if r.corrupt == corruptBadEnum {
			b = appendStrField(b, "key_permission", "SUPERUSER")
		} else {
			b = appendStrField(b, "key_permission", r.perm)
		}
	}
	if r.corrupt == corruptBadIP {
		b = appendStrField(b, "ip", "300.12.7.1")
	} else {
		b = appendStrField(b, "ip", r.ip)
	}
	if r.country != "" {
		b = appendStrField(b, "country", r.country)
	}
	rt := r.rt
	b = appendStrField(b, "method", rt.method)
	b = appendStrField(b, "route", rt.tmpl)
	b = append(b, `,"path":"`...)
	ns := r.namespaceID()
	switch {
	case r.pathOver != "":
		b = append(b, r.pathOver...)
	case rt.ns:
		b = append(b, rt.pre...)
		b = append(b, ns...)
		b = append(b, rt.mid...)
		if rt.doc {
			b = appendDoc(b, r.doc)
			b = append(b, rt.post...)
		}
	default:
		b = append(b, rt.pre...)
	}
	b = append(b, '"')
	if r.corrupt == corruptBadEnum && r.perm == "" {
		b = appendStrField(b, "operation", "graphql")
	} else {
		b = appendStrField(b, "operation", rt.op)
	}
	if ns != "" {
		b = appendStrField(b, "namespace", ns)
		if c := r.classification(); c != "" {
			b = appendStrField(b, "data_classification", c)
		}
	}
	if r.corrupt == corruptWrongType {
		b = append(b, `,"status":"`...)
		b = strconv.AppendInt(b, int64(r.status), 10)
		b = append(b, '"')
	} else {
		b = appendIntField(b, "status", int64(r.status))
	}
	if r.bytesIn > 0 || rt.method != "GET" {
		b = appendIntField(b, "bytes_in", r.bytesIn)
	}
	b = appendIntField(b, "bytes_out", r.bytesOut)
	b = append(b, `,"latency_ms":`...)
	b = strconv.AppendInt(b, int64(r.latency/10), 10)
	b = append(b, '.', byte('0'+r.latency%10))
	if r.ua != "" {
		b = appendStrField(b, "user_agent", r.ua)
	}
	if r.extra&extraTrace != 0 {
		b = append(b, `,"trace_id":"`...)
		b = strconv.AppendUint(b, (r.num+7)*0xd6e8feb86659fd93^en.salt, 16)
		b = append(b, '"')
	}
	if r.extra&extraPop != 0 {
		if p := pops[r.country]; len(p) > 0 {
			b = appendStrField(b, "edge_pop", p[int(r.num%uint64(len(p)))])
		}
	}
	return append(b, '}')
}

// auditEvent appends one audit line (without newline).
func (en *encoder) auditEvent(b []byte, r *rec) []byte {
	b = append(b, `{"ts":`...)
	switch r.corrupt {
	case corruptBadTime:
		b = append(b, `"yesterday"`...)
	case corruptWrongType:
		b = append(b, `{"seconds":1}`...)
	default:
		b = en.appendTS(b, r.ts, r.tsForm)
	}
	b = append(b, `,"event_id":"`...)
	b = en.id(b, "evt_", r.num)
	b = append(b, '"')
	b = appendStrField(b, "org_id", r.org)
	if r.corrupt != corruptMissingField {
		b = appendStrField(b, "actor_id", r.actor)
	}
	if r.corrupt == corruptBadEnum {
		b = appendStrField(b, "actor_type", "robot")
	} else {
		b = appendStrField(b, "actor_type", r.actorType)
	}
	if r.key != "" {
		b = appendStrField(b, "api_key_id", r.key)
	}
	if r.perm != "" {
		b = appendStrField(b, "key_permission", r.perm)
	}
	if r.corrupt == corruptBadIP {
		b = appendStrField(b, "ip", "localhost")
	} else if r.ip != "" {
		b = appendStrField(b, "ip", r.ip)
	}
	b = appendStrField(b, "action", r.action)
	b = appendStrField(b, "resource_type", r.resType)
	switch {
	case r.resID != "":
		b = appendStrField(b, "resource_id", r.resID)
	case r.doc != 0:
		b = append(b, `,"resource_id":"`...)
		b = appendDoc(b, r.doc)
		b = append(b, '"')
	}
	if ns := r.namespaceID(); ns != "" {
		b = appendStrField(b, "namespace", ns)
		if c := r.classification(); c != "" {
			b = appendStrField(b, "data_classification", c)
		}
	}
	if r.corrupt == corruptWrongType {
		b = append(b, `,"status":200`...)
	} else {
		b = appendStrField(b, "status", r.outcome)
	}
	if r.changes != "" {
		b = append(b, `,"changes":`...)
		b = append(b, r.changes...)
	}
	if r.extra&extraSess != 0 {
		b = append(b, `,"session_id":"sess_`...)
		b = strconv.AppendUint(b, uint64(r.session)*0x9e3779b1^en.salt&0xffffffffff, 36)
		b = append(b, '"')
	}
	if r.extra&extraReqRef != 0 {
		b = append(b, `,"request_id":"`...)
		b = en.id(b, "req_", r.ref)
		b = append(b, '"')
	}
	return append(b, '}')
}

// line appends r's line with its newline, applying the corruptions that
// work on the finished text.
func (en *encoder) line(b []byte, r *rec) []byte {
	start := len(b)
	if r.corrupt == corruptNotJSON {
		if r.audit {
			b = append(b, "audit-shipper: connection reset by peer, 3 records lost"...)
		} else {
			b = append(b, `<html><head><title>502 Bad Gateway</title></head></html>`...)
		}
		return append(b, '\n')
	}
	if r.audit {
		b = en.auditEvent(b, r)
	} else {
		b = en.request(b, r)
	}
	if r.corrupt == corruptTruncate {
		// The writer died mid-line: keep between a third and two thirds.
		n := len(b) - start
		b = b[:start+n/3+int(r.num%uint64(n/3+1))]
	}
	return append(b, '\n')
}
