package longrules

import (
	"context"
	"slices"
	"testing"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/rules/expression"
)

// The SQL of an expression selects exactly the stored events whose decoded
// form the in-memory predicate matches.
func TestWhereSelectsWhatTheDetectorMatches(t *testing.T) {
	s, db := openStore(t)
	namespaces := map[string]string{"ns_patients": "PHI", "ns_docs": "INTERNAL"}
	reqs := insert(t, s, event.Requests,
		req(t0, "r01", "status", 401, "route", "/v1/organizations/{org}", "ip", "10.1.2.3"),
		req(t0.Add(1), "r02", "status", 403, "ip", "::ffff:10.9.9.9", "api_key_id", "key_1", "key_permission", "ADMIN"),
		req(t0.Add(2), "r03", "status", 500, "operation", "upload", "bytes_in", 20000, "bytes_out", 10, "ip", "2001:db8::7"),
		req(t0.Add(3), "r04", "status", 502, "bytes_in", 100, "bytes_out", 900, "latency_ms", 1.5, "country", "US"),
		req(t0.Add(4), "r05", "method", "DELETE", "route", "/v1/namespaces/{namespace_id}/search", "path", "/v1/admin/x",
			"namespace", "ns_patients", "key_permission", "DELETE", "ip", "172.16.0.1"),
		req(t0.Add(5), "r06", "namespace", "ns_docs", "data_classification", "PHI", "user_agent", "curl/8.1", "latency_ms", 100),
		req(t0.Add(6), "r07", "namespace", "ns_other", "user_agent", "Mozilla/5.0", "ip", "2001:db9::1", "status", 204),
		req(t0.Add(7), "r08", "bytes_in", 5, "bytes_out", 3, "latency_ms", 49.99, "country", "DE", "org_id", "org_2"),
		req(t0.Add(8), "r09", "ip", "::1", "status", 599, "route", "/admin/users"),
		req(t0.Add(9), "r10", "ip", "10.0.0.0", "path", "/v1/organizations/org_1/keys", "namespace", "ns_patients",
			"data_classification", "PUBLIC"),
	)
	audits := insert(t, s, event.Audit,
		audit(t0, "a01", "action", "namespace.delete", "ip", "10.0.0.5"),
		audit(t0.Add(1), "a02", "action", "api_key.create", "actor_type", "api_key", "status", "failure"),
		audit(t0.Add(2), "a03", "action", "api_key.delete", "status", "denied", "namespace", "ns_patients"),
		audit(t0.Add(3), "a04", "action", "document.read", "ip", "2001:db8::1", "changes", map[string]any{"role": "owner"}),
	)

	cfg := detector.Config{Namespaces: namespaces}
	for i := range reqs {
		cfg.Enrich(&reqs[i])
	}
	for i := range audits {
		cfg.Enrich(&audits[i])
	}
	for _, tc := range []struct {
		src  event.Source
		expr string
	}{
		{event.Requests, `status in [401, 403]`},
		{event.Requests, `status not in [200, 204]`},
		{event.Requests, `status in 500..599`},
		{event.Requests, `status in [500, 502.0, 0.5, "x"]`},
		{event.Requests, `latency_ms in [1.5, 100]`},
		{event.Requests, `route startsWith "/v1/organizations"`},
		{event.Requests, `route endsWith "/search" || path contains "admin"`},
		{event.Requests, `user_agent matches "^curl/[0-9]+\\."`},
		{event.Requests, `cidr(ip, "10.0.0.0/8")`},
		{event.Requests, `cidr(ip, "10.1.2.3/16")`},
		{event.Requests, `cidr(ip, "::ffff:10.0.0.0/104")`},
		{event.Requests, `cidr(ip, "2001:db8::/32")`},
		{event.Requests, `!cidr(ip, "::/0")`},
		{event.Requests, `cidr(path, "10.0.0.0/8")`},
		{event.Requests, `bytes_in + bytes_out > 1000`},
		{event.Requests, `bytes_in - bytes_out < 0`},
		{event.Requests, `bytes_out / (bytes_in + 1) > 2.5`},
		{event.Requests, `bytes_out / bytes_in > 1`},
		{event.Requests, `latency_ms * 2 >= 99.98`},
		{event.Requests, `-status < -500`},
		{event.Requests, `status >= 500 && (operation == "upload" || bytes_in > 10e3) && !(country == "US")`},
		{event.Requests, `data_classification == "PHI"`},
		{event.Requests, `data_classification == ""`},
		{event.Requests, `api_key_id == "" and key_permission != "ADMIN"`},
		{event.Requests, `key_permission in ["ADMIN", "DELETE"] and not (method == "GET")`},
		{event.Requests, `org_id + "/" + country == "org_2/DE"`},
		{event.Requests, `ts > 1795348800003`},
		{event.Requests, `latency_ms < 50 && latency_ms > 0`},
		{event.Requests, `route > "/v1/n" && route <= "/v1/x"`},
		{event.Requests, `$env.status == 204 || $env["country"] == "DE"`},
		{event.Requests, `true && status in []`},
		{event.Audit, `action endsWith ".delete" && status == "success"`},
		{event.Audit, `actor_type in ["api_key"] || status == "denied"`},
		{event.Audit, `cidr(ip, "10.0.0.0/8") || ip == ""`},
		{event.Audit, `data_classification == "PHI"`},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			pred, err := expression.Compile(tc.expr, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			evs, table, id := reqs, "request_events", "request_id"
			if tc.src == event.Audit {
				evs, table, id = audits, "audit_events", "event_id"
			}
			var want []string
			for i := range evs {
				if pred.Match(&evs[i]) {
					want = append(want, evs[i].ID)
				}
			}
			x, err := translate(tc.expr, tc.src)
			if err != nil {
				t.Fatal(err)
			}
			var b sqlBuilder
			b.add("WITH\n")
			b.classification()
			b.add("SELECT "+id+" FROM "+db+"."+table+" FINAL WHERE ", x, " ORDER BY "+id)
			sql := b.b.String()
			rows, err := s.Query(context.Background(), sql, bind(b.args, window{}, namespaces, nil)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, sql)
			}
			defer rows.Close()
			var got []string
			for rows.Next() {
				var v string
				if err := rows.Scan(&v); err != nil {
					t.Fatal(err)
				}
				got = append(got, v)
			}
			if err := rows.Err(); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want) {
				t.Errorf("ClickHouse selects %v, the detector matches %v\n%s", got, want, sql)
			}
		})
	}
}
