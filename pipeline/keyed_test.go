package pipeline

import (
	"testing"

	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

const familyRules = `rules:
  - id: by-ip
    source: requests
    group_by: [ip]
    window: 1m
    aggregate: count
    threshold: '> 5'
    severity: low
  - id: by-ip-too
    source: requests
    where: 'status >= 500'
    group_by: [ip]
    window: 5m
    aggregate: count
    threshold: '> 5'
    severity: low
  - id: by-org
    source: requests
    group_by: [org_id]
    window: 1m
    aggregate: count
    threshold: '> 5'
    severity: low
  - id: everything
    source: requests
    window: 1m
    aggregate: count
    threshold: '> 5'
    severity: low
  - id: audit-by-ip
    source: audit
    group_by: [ip]
    window: 1m
    aggregate: count
    threshold: '> 5'
    severity: low
  - id: new-address
    source: audit
    new_value: {field: ip, per: [org_id], remember: 1d, learn: 1h}
    severity: low
  - id: steps
    source: audit
    sequence:
      by: [actor_id]
      within: 10m
      steps:
        - where: 'action == "api_key.create"'
        - where: 'action endsWith ".delete"'
    severity: low
`

// Rules share a repartition topic when they share source and group
// fields; a family grouped as the input topic is partitioned reads it
// directly and is not routed.
func TestFamilies(t *testing.T) {
	rs, errs := rules.Parse("families.yaml", []byte(familyRules))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	inputs := map[event.Source]string{event.Requests: "requests", event.Audit: "audit"}
	tests := []struct {
		name    string
		keyedBy map[event.Source][]string
		want    map[string][]string // topic → rule ids
		direct  []string
	}{
		{
			name: "all routed",
			want: map[string][]string{
				"v-requests-ip": {"by-ip", "by-ip-too"}, "v-requests-org_id": {"by-org"}, "v-requests-all": {"everything"},
				"v-audit-ip": {"audit-by-ip"}, "v-audit-org_id.ip": {"new-address"}, "v-audit-actor_id": {"steps"},
			},
		},
		{
			name:    "requests already partitioned by ip",
			keyedBy: map[event.Source][]string{event.Requests: {"ip"}},
			want: map[string][]string{
				"requests": {"by-ip", "by-ip-too"}, "v-requests-org_id": {"by-org"}, "v-requests-all": {"everything"},
				"v-audit-ip": {"audit-by-ip"}, "v-audit-org_id.ip": {"new-address"}, "v-audit-actor_id": {"steps"},
			},
			direct: []string{"requests"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fams := Families(rs, "v-", inputs, tc.keyedBy)
			got := map[string][]string{}
			var direct []string
			for _, f := range fams {
				for _, r := range f.Rules {
					got[f.Topic] = append(got[f.Topic], r.ID)
				}
				if f.Direct {
					direct = append(direct, f.Topic)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("families %v, want %v", got, tc.want)
			}
			for topic, ids := range tc.want {
				if len(got[topic]) != len(ids) {
					t.Errorf("%s: %v, want %v", topic, got[topic], ids)
					continue
				}
				for i := range ids {
					if got[topic][i] != ids[i] {
						t.Errorf("%s: %v, want %v", topic, got[topic], ids)
					}
				}
			}
			if len(direct) != len(tc.direct) || (len(direct) > 0 && direct[0] != tc.direct[0]) {
				t.Errorf("direct %v, want %v", direct, tc.direct)
			}
			if routes := Routes(fams, 3); len(routes) != len(fams)-len(tc.direct) {
				t.Errorf("%d routes for %d families, %d direct", len(routes), len(fams), len(tc.direct))
			}
		})
	}
}

// Equal groups give equal keys whatever the other fields; different
// groups differ, empty values included.
func TestRouteKey(t *testing.T) {
	var dec event.Decoder
	decode := func(line string) event.Event {
		var e event.Event
		if err := dec.Decode(event.Requests, []byte(line), &e); err != nil {
			t.Fatal(err)
		}
		return e.Clone()
	}
	base := `"ts":"2026-11-23T00:00:00Z","method":"GET","route":"/v1/x","status":200,"latency_ms":3,"bytes_in":0,"bytes_out":10,"user_agent":"ua","operation":"data"`
	a := decode(`{"request_id":"r1","ip":"198.51.100.1","org_id":"org_1","api_key_id":"k1",` + base + `}`)
	b := decode(`{"request_id":"r2","ip":"198.51.100.1","org_id":"org_2","api_key_id":"k2",` + base + `}`)
	c := decode(`{"request_id":"r3","ip":"198.51.100.2","org_id":"org_1","api_key_id":"k1",` + base + `}`)
	ip := fieldsNamed(event.Requests, []string{"ip"})
	orgIP := fieldsNamed(event.Requests, []string{"org_id", "ip"})
	if string(routeKey(ip, &a)) != string(routeKey(ip, &b)) {
		t.Error("same ip, different keys")
	}
	if string(routeKey(ip, &a)) == string(routeKey(ip, &c)) {
		t.Error("different ips, same key")
	}
	if string(routeKey(orgIP, &a)) == string(routeKey(orgIP, &b)) {
		t.Error("different orgs, same key")
	}
	if k := routeKey(nil, &a); len(k) != 0 {
		t.Errorf("no group fields: key %q, want empty", k)
	}
}

// A router's progress record lets events stop waiting for an input
// partition that routed nothing more to this partition, and marks what
// it covered as seen.
func TestProgressReleasesWaitingEvents(t *testing.T) {
	s := &shard{order: newReorderer(1000, 0), family: &Family{Source: event.Requests}, accepted: -1}
	qa := s.order.queue(event.Requests, "requests", 0)
	qb := s.order.queue(event.Requests, "requests", 1)
	push := func(q *partQueue, at, off int64) {
		s.order.push(q, item{ev: &event.Event{Source: event.Requests, TS: at}, origin: storage.Origin{Topic: q.key.topic, Partition: q.key.partition, Offset: off}, kafka: off, at: at})
	}
	push(qb, 5, 0)
	push(qa, 10, 0)
	if got := s.order.release(nil); len(got) != 1 || got[0].at != 5 {
		t.Fatalf("released %v, want only the event at 5 (10 waits for partition 1)", got)
	}
	s.progress([]ingest.Progress{{Topic: "requests", Partition: 1, Offset: 7, MergeTS: 12}})
	if got := s.order.release(nil); len(got) != 1 || got[0].at != 10 {
		t.Fatalf("released %v after progress to 12, want the event at 10", got)
	}
	if qb.accepted != 6 {
		t.Errorf("partition 1 accepted up to %d, want 6 (records below the progress offset are copies)", qb.accepted)
	}
}
