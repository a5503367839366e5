package event

// Kind is the type of a field as rule expressions see it.
type Kind uint8

const (
	String Kind = iota + 1
	Int
	Float
	Object // audit `changes`: free-form JSON, readable only through expressions
)

func (k Kind) String() string {
	switch k {
	case String:
		return "string"
	case Int:
		return "int"
	case Float:
		return "float"
	case Object:
		return "object"
	}
	return "unknown"
}

// Field describes one field of a source's schema: its name in JSON and in
// rule expressions, its type, and how to read it from an Event without
// reflection. Exactly one of Str, Int and Float is set, according to Kind
// (none for Object).
type Field struct {
	Name     string
	Kind     Kind
	Required bool
	Str      func(*Event) string
	Int      func(*Event) int64
	Float    func(*Event) float64
}

// Numeric reports whether sum() can add the field up.
func (f *Field) Numeric() bool { return f.Kind == Int || f.Kind == Float }

// Number returns a numeric field's value as float64.
func (f *Field) Number(e *Event) float64 {
	if f.Kind == Int {
		return float64(f.Int(e))
	}
	return f.Float(e)
}

func str(name string, req bool, get func(*Event) string) Field {
	return Field{Name: name, Kind: String, Required: req, Str: get}
}

func integer(name string, req bool, get func(*Event) int64) Field {
	return Field{Name: name, Kind: Int, Required: req, Int: get}
}

// The schemas follow docs/events.md field by field; ts and the id field are
// part of every record but not comparable in expressions except by name.
var requestFields = []Field{
	integer("ts", true, func(e *Event) int64 { return e.TS / 1e6 }),
	str("request_id", true, func(e *Event) string { return e.ID }),
	str("org_id", true, func(e *Event) string { return e.OrgID }),
	str("api_key_id", false, func(e *Event) string { return e.APIKeyID }),
	str("key_permission", false, func(e *Event) string { return e.KeyPermission }),
	str("ip", true, func(e *Event) string { return e.IP }),
	str("country", false, func(e *Event) string { return e.Country }),
	str("method", true, func(e *Event) string { return e.Method }),
	str("route", true, func(e *Event) string { return e.Route }),
	str("path", false, func(e *Event) string { return e.Path }),
	str("operation", true, func(e *Event) string { return e.Operation }),
	str("namespace", false, func(e *Event) string { return e.Namespace }),
	str("data_classification", false, func(e *Event) string { return e.DataClassification }),
	integer("status", true, func(e *Event) int64 { return e.Status }),
	integer("bytes_in", false, func(e *Event) int64 { return e.BytesIn }),
	integer("bytes_out", false, func(e *Event) int64 { return e.BytesOut }),
	{Name: "latency_ms", Kind: Float, Float: func(e *Event) float64 { return e.LatencyMs }},
	str("user_agent", false, func(e *Event) string { return e.UserAgent }),
}

var auditFields = []Field{
	integer("ts", true, func(e *Event) int64 { return e.TS / 1e6 }),
	str("event_id", true, func(e *Event) string { return e.ID }),
	str("org_id", true, func(e *Event) string { return e.OrgID }),
	str("actor_id", true, func(e *Event) string { return e.ActorID }),
	str("actor_type", true, func(e *Event) string { return e.ActorType }),
	str("api_key_id", false, func(e *Event) string { return e.APIKeyID }),
	str("key_permission", false, func(e *Event) string { return e.KeyPermission }),
	str("ip", false, func(e *Event) string { return e.IP }),
	str("action", true, func(e *Event) string { return e.Action }),
	str("resource_type", true, func(e *Event) string { return e.ResourceType }),
	str("resource_id", false, func(e *Event) string { return e.ResourceID }),
	str("namespace", false, func(e *Event) string { return e.Namespace }),
	str("data_classification", false, func(e *Event) string { return e.DataClassification }),
	str("status", true, func(e *Event) string { return e.Outcome }),
	{Name: "changes", Kind: Object},
}

// Fields returns the schema of a source, in the order of docs/events.md.
// The returned slice must not be modified.
func Fields(s Source) []Field {
	switch s {
	case Requests:
		return requestFields
	case Audit:
		return auditFields
	}
	return nil
}

// Lookup returns the named field of a source's schema.
func Lookup(s Source, name string) (*Field, bool) {
	fs := Fields(s)
	for i := range fs {
		if fs[i].Name == name {
			return &fs[i], true
		}
	}
	return nil, false
}
