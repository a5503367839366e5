package event

import "testing"

// A clone owns its bytes: the decoder's buffers can be reused, and an
// append to one of its slices cannot reach the next field.
func TestCloneOwnsItsData(t *testing.T) {
	line := []byte(`{"ts":"2026-11-23T18:00:00Z","event_id":"evt_1","org_id":"org_1","actor_id":"u_1","actor_type":"user","action":"document.read","resource_type":"document","resource_id":"doc_9","status":"success","changes":{"a":1},"color":"blue"}`)
	var d Decoder
	var e Event
	if err := d.Decode(Audit, line, &e); err != nil {
		t.Fatal(err)
	}
	c := e.Clone()
	want := c
	want.Changes = append([]byte(nil), c.Changes...)
	want.Extra = append([]byte(nil), c.Extra...)
	for i := range line {
		line[i] = 'x'
	}
	var other Event
	d.Decode(Audit, []byte(`{"ts":"2026-11-23T18:00:01Z","event_id":"evt_2222222222","org_id":"org_2","actor_id":"u_2","actor_type":"api_key","action":"key.create","resource_type":"key","resource_id":"k","status":"failure"}`), &other)
	if c.ID != "evt_1" || c.OrgID != "org_1" || c.ResourceID != "doc_9" || string(c.Changes) != `{"a":1}` || string(c.Extra) != `{"color":"blue"}` {
		t.Fatalf("clone changed with its source: %+v", c)
	}
	_ = append(c.Changes, "overflow"...)
	if string(c.Extra) != string(want.Extra) {
		t.Errorf("appending to Changes overwrote Extra: %q", c.Extra)
	}
	var empty Event
	if got := empty.Clone(); got.Changes != nil || got.Extra != nil || got.ID != "" {
		t.Errorf("clone of an empty event: %+v", got)
	}
}

func BenchmarkClone(b *testing.B) {
	line := []byte(`{"ts":"2026-11-23T18:00:00.123Z","request_id":"req_01HZX3","org_id":"org_42","api_key_id":"key_9f2c","key_permission":"WRITE","ip":"198.51.100.23","country":"DE","method":"GET","route":"/v1/namespaces/{ns}/documents/{id}","path":"/v1/namespaces/ns_1/documents/doc_77","operation":"data","namespace":"ns_1","status":200,"bytes_in":0,"bytes_out":5120,"latency_ms":12.5,"user_agent":"python-requests/2.31.0"}`)
	var d Decoder
	var e Event
	if err := d.Decode(Requests, line, &e); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = e.Clone()
	}
}
