package event

import (
	"encoding/json"
	"testing"
)

// benchLines returns the example lines of a source.
func benchLines(b *testing.B, src Source) [][]byte {
	if src == Requests {
		return readLines(b, "requests.example.jsonl")
	}
	return readLines(b, "audit.example.jsonl")
}

// avgLen is the mean length of lines, for b.SetBytes: each benchmark
// iteration decodes one line, cycling through them.
func avgLen(lines [][]byte) int64 {
	n := 0
	for _, l := range lines {
		n += len(l)
	}
	return int64(n / len(lines))
}

var sources = []Source{Requests, Audit}

func BenchmarkDecode(b *testing.B) {
	for _, src := range sources {
		b.Run(src.String(), func(b *testing.B) {
			lines := benchLines(b, src)
			var d Decoder
			var e Event
			b.SetBytes(avgLen(lines))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if err := d.Decode(src, lines[i], &e); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(lines) {
					i = 0
				}
			}
		})
	}
}

// BenchmarkBaselineStdlibMap decodes the same lines with encoding/json into a
// map, with none of the validation Decode does.
func BenchmarkBaselineStdlibMap(b *testing.B) {
	for _, src := range sources {
		b.Run(src.String(), func(b *testing.B) {
			lines := benchLines(b, src)
			b.SetBytes(avgLen(lines))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				var m map[string]any
				if err := json.Unmarshal(lines[i], &m); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(lines) {
					i = 0
				}
			}
		})
	}
}

// stdlibRecord is the union of both sources' fields, for
// BenchmarkBaselineStdlibStruct. ts is either a string or a number, so it is
// kept raw; changes too.
type stdlibRecord struct {
	TS                 json.RawMessage `json:"ts"`
	RequestID          string          `json:"request_id"`
	EventID            string          `json:"event_id"`
	OrgID              string          `json:"org_id"`
	APIKeyID           string          `json:"api_key_id"`
	KeyPermission      string          `json:"key_permission"`
	IP                 string          `json:"ip"`
	Country            string          `json:"country"`
	Method             string          `json:"method"`
	Route              string          `json:"route"`
	Path               string          `json:"path"`
	Operation          string          `json:"operation"`
	Namespace          string          `json:"namespace"`
	DataClassification string          `json:"data_classification"`
	Status             json.RawMessage `json:"status"` // integer for requests, string for audit
	BytesIn            int64           `json:"bytes_in"`
	BytesOut           int64           `json:"bytes_out"`
	LatencyMs          float64         `json:"latency_ms"`
	UserAgent          string          `json:"user_agent"`
	ActorID            string          `json:"actor_id"`
	ActorType          string          `json:"actor_type"`
	Action             string          `json:"action"`
	ResourceType       string          `json:"resource_type"`
	ResourceID         string          `json:"resource_id"`
	Changes            json.RawMessage `json:"changes"`
}

// BenchmarkBaselineStdlibStruct decodes the same lines with encoding/json
// into a tagged struct, with none of the validation Decode does (and
// dropping unknown fields).
func BenchmarkBaselineStdlibStruct(b *testing.B) {
	for _, src := range sources {
		b.Run(src.String(), func(b *testing.B) {
			lines := benchLines(b, src)
			b.SetBytes(avgLen(lines))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				var r stdlibRecord
				if err := json.Unmarshal(lines[i], &r); err != nil {
					b.Fatal(err)
				}
				if i++; i == len(lines) {
					i = 0
				}
			}
		})
	}
}
