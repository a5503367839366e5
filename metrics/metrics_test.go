package metrics

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestReasonCodesAreBounded(t *testing.T) {
	cases := map[string]string{
		"record is 2000000 bytes, over the limit of 1048576 bytes":                "too_large",
		`missing required field "ts"`:                                             "missing_field",
		`duplicate field "ip"`:                                                    "duplicate_field",
		"invalid JSON at byte 3: unexpected end of input, want value":             "malformed_json",
		"not a JSON object":                                                       "malformed_json",
		"empty record":                                                            "malformed_json",
		"nesting deeper than 64 levels at byte 70":                                "malformed_json",
		`field "ts": 2200-01-01T00:00:00Z is more than 1h0m0s ahead of the clock`: "future",
		"rejected by ClickHouse: code 27":                                         "clickhouse_rejected",
		`field "status": want an integer`:                                         "bad_value",
	}
	for reason, want := range cases {
		if got := ReasonCode(reason); got != want {
			t.Errorf("ReasonCode(%q) = %q, want %q", reason, got, want)
		}
	}
}

func TestNamesFollowTheConvention(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, "test")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "vigil_") {
			t.Errorf("%s: not vigil_<subsystem>_<name>_<unit>", name)
		}
		if mf.GetType().String() == "COUNTER" && !strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a counter's name ends in _total", name)
		}
	}
	if n := testutil.CollectAndCount(New(nil, "x").Actions); n != len(ActionKinds)*len(Outcomes) {
		t.Errorf("action series at start = %d, want every kind × outcome", n)
	}
}
