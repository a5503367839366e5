// Package event defines the two log records Vigil reads (request logs and
// audit events, see docs/events.md) and decodes them from JSON without
// reflection. It knows nothing about Kafka, files or rules: ingest and replay
// hand it bytes, the rule engine reads the decoded struct.
package event

import "unsafe"

// Source says which log a record came from.
type Source uint8

const (
	// Requests is the API gateway's request log (`source: requests`).
	Requests Source = 1
	// Audit is the platform's audit trail (`source: audit`).
	Audit Source = 2
)

// String returns the name used in rule files and alerts.
func (s Source) String() string {
	switch s {
	case Requests:
		return "requests"
	case Audit:
		return "audit"
	}
	return "unknown"
}

// ParseSource maps a rule file's `source` value to a Source.
func ParseSource(s string) (Source, bool) {
	switch s {
	case "requests":
		return Requests, true
	case "audit":
		return Audit, true
	}
	return 0, false
}

// Event is one decoded record of either source. Absent optional fields hold
// their zero value, which is what rule expressions compare against.
//
// Strings and byte slices may alias the buffer passed to Decoder.Decode and
// the decoder's scratch space: they are valid until the next Decode call on
// the same Decoder. Code that keeps a value longer (group keys, sample ids)
// must copy it (strings.Clone / Event.Clone).
type Event struct {
	Source Source
	// TS is the event time in Unix nanoseconds (UTC).
	TS int64
	// ID is request_id for requests and event_id for audit events.
	ID string

	OrgID              string
	APIKeyID           string
	KeyPermission      string
	IP                 string
	Namespace          string
	DataClassification string

	// Request log fields.
	Country   string
	Method    string
	Route     string
	Path      string
	Operation string
	Status    int64 // HTTP status code
	BytesIn   int64
	BytesOut  int64
	LatencyMs float64
	UserAgent string

	// Audit event fields.
	ActorID      string
	ActorType    string
	Action       string
	ResourceType string
	ResourceID   string
	Outcome      string // the audit record's `status`: success, failure, denied
	// Changes is the raw JSON of the audit record's `changes` object, nil when absent.
	Changes []byte

	// Extra is a JSON object holding every field the contract does not name,
	// byte for byte as received; nil when there were none.
	Extra []byte
}

// Clone returns a copy of e that owns all its strings and slices.
func (e *Event) Clone() Event {
	c := *e
	// One allocation for every string and byte field: the detector copies
	// what it keeps, so the fields live and die together.
	fields := c.stringFields()
	n := len(e.Changes) + len(e.Extra)
	for _, p := range fields {
		n += len(*p)
	}
	if n == 0 {
		return c
	}
	arena := make([]byte, 0, n)
	for _, p := range fields {
		if s := *p; s != "" {
			off := len(arena)
			arena = append(arena, s...)
			*p = unsafe.String(&arena[off], len(s))
		}
	}
	c.Changes = appendOwned(&arena, e.Changes)
	c.Extra = appendOwned(&arena, e.Extra)
	return c
}

// appendOwned copies b to the end of *arena and returns the copy, capped so
// that appending to it cannot overwrite what follows; nil stays nil.
func appendOwned(arena *[]byte, b []byte) []byte {
	if b == nil {
		return nil
	}
	off := len(*arena)
	*arena = append(*arena, b...)
	return (*arena)[off:len(*arena):len(*arena)]
}

func (e *Event) stringFields() []*string {
	return []*string{&e.ID, &e.OrgID, &e.APIKeyID, &e.KeyPermission, &e.IP, &e.Namespace,
		&e.DataClassification, &e.Country, &e.Method, &e.Route, &e.Path, &e.Operation,
		&e.UserAgent, &e.ActorID, &e.ActorType, &e.Action, &e.ResourceType, &e.ResourceID, &e.Outcome}
}

// IsPHI reports whether the event touches a namespace classified PHI.
func (e *Event) IsPHI() bool { return e.DataClassification == "PHI" }
