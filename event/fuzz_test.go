package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzDecode checks that Decode never panics and, for every record it
// accepts, that the record is valid JSON, that the event is sane, that
// decoding again gives the same event, and that encoding/json reads the same
// values from it.
func FuzzDecode(f *testing.F) {
	for _, l := range readLines(f, "requests.example.jsonl") {
		f.Add(uint8(Requests), l)
	}
	for _, l := range readLines(f, "audit.example.jsonl") {
		f.Add(uint8(Audit), l)
	}
	_, extra := allocLines(f)
	for i, l := range extra {
		f.Add(uint8(i%2+1), l)
	}
	for _, c := range decodeCases() {
		if len(c.in) < 4096 {
			f.Add(uint8(c.src), []byte(c.in))
		}
	}

	// One decoder for the whole run, so that state left over from earlier
	// inputs (scratch buffers, unknown keys) is exercised too.
	var d Decoder
	f.Fuzz(func(t *testing.T, s uint8, data []byte) {
		src := Source(s % 3) // 0 is not a source
		var e Event
		err := d.Decode(src, data, &e)
		if src == 0 {
			var ie *InvalidError
			if err == nil || errors.As(err, &ie) {
				t.Fatalf("source 0: got %v, want a plain error", err)
			}
			return
		}
		if err != nil {
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("got %T %v, want an *InvalidError", err, err)
			}
			if ie.Reason == "" || ie.Error() != ie.Reason {
				t.Fatalf("bad InvalidError %+v", ie)
			}
			if !reflect.DeepEqual(e, Event{Source: src}) {
				t.Fatalf("event not reset after an error: %+v", e)
			}
			var e2 Event
			err2 := d.Decode(src, data, &e2)
			var ie2 *InvalidError
			if !errors.As(err2, &ie2) || *ie2 != *ie {
				t.Fatalf("second decode: got %v, first %v", err2, err)
			}
			return
		}

		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if e.Source != src {
			t.Fatalf("Source = %v, want %v", e.Source, src)
		}
		if e.ID == "" {
			t.Fatalf("accepted a record with an empty ID")
		}
		// The year range is checked in local time, so an offset can move
		// the instant up to a day past it.
		if lo, hi := minTSMillis*1e6-24*int64(time.Hour), (maxTSMillis+1)*1e6+24*int64(time.Hour); e.TS < lo || e.TS > hi {
			t.Fatalf("TS %d outside %d..%d", e.TS, lo, hi)
		}
		if e.Extra != nil && (!json.Valid(e.Extra) || e.Extra[0] != '{') {
			t.Fatalf("Extra is not a JSON object: %q", e.Extra)
		}
		if e.Changes != nil && (!json.Valid(e.Changes) || e.Changes[0] != '{') {
			t.Fatalf("Changes is not a JSON object: %q", e.Changes)
		}

		first := e.Clone()
		var e2 Event
		if err := d.Decode(src, data, &e2); err != nil {
			t.Fatalf("second decode failed: %v", err)
		}
		if !reflect.DeepEqual(first, e2) {
			t.Fatalf("second decode differs:\n%+v\n%+v", first, e2)
		}

		compareWithStdlib(t, src, data, &e2)
	})
}

// compareWithStdlib decodes data with encoding/json and checks that every
// field, Extra and Changes agree with e.
func compareWithStdlib(t *testing.T, src Source, data []byte, e *Event) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("encoding/json rejects an accepted record: %v", err)
	}
	for _, f := range Fields(src) {
		v, present := m[f.Name]
		if v == nil {
			present = false
		}
		switch {
		case f.Name == "ts":
			checkTS(t, v, e.TS)
		case f.Kind == String:
			want, isString := v.(string)
			if present && !isString {
				t.Fatalf("%s accepted as %T", f.Name, v)
			}
			if got := f.Str(e); got != want {
				t.Fatalf("%s = %q, encoding/json has %q", f.Name, got, want)
			}
		case f.Kind == Int:
			var want int64
			if present {
				var err error
				if want, err = strconv.ParseInt(string(v.(json.Number)), 10, 64); err != nil {
					t.Fatalf("%s: %v", f.Name, err)
				}
			}
			if got := f.Int(e); got != want {
				t.Fatalf("%s = %d, encoding/json has %d", f.Name, got, want)
			}
		case f.Kind == Float:
			var want float64
			if present {
				var err error
				if want, err = strconv.ParseFloat(string(v.(json.Number)), 64); err != nil {
					t.Fatalf("%s: %v", f.Name, err)
				}
			}
			if got := f.Float(e); got != want {
				t.Fatalf("%s = %v, encoding/json has %v", f.Name, got, want)
			}
		case f.Kind == Object:
			if !present {
				if e.Changes != nil {
					t.Fatalf("changes = %s, encoding/json has none", e.Changes)
				}
				break
			}
			var got any
			gd := json.NewDecoder(bytes.NewReader(e.Changes))
			gd.UseNumber()
			if err := gd.Decode(&got); err != nil || !reflect.DeepEqual(got, v) {
				t.Fatalf("changes = %s (%v), encoding/json has %v", e.Changes, err, v)
			}
		}
		delete(m, f.Name)
	}
	// What is left are the unknown fields.
	var extra map[string]any
	if e.Extra != nil {
		xd := json.NewDecoder(bytes.NewReader(e.Extra))
		xd.UseNumber()
		if err := xd.Decode(&extra); err != nil {
			t.Fatalf("Extra %s: %v", e.Extra, err)
		}
		if len(extra) == 0 {
			t.Fatalf("Extra is an empty object")
		}
	}
	if len(m) == 0 {
		m = nil
	}
	if !reflect.DeepEqual(extra, m) {
		t.Fatalf("Extra = %s, encoding/json has unknown fields %v", e.Extra, m)
	}
}

// checkTS compares TS with time.Parse or the millisecond value.
func checkTS(t *testing.T, v any, got int64) {
	t.Helper()
	switch v := v.(type) {
	case json.Number:
		ms, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil || ms*1e6 != got {
			t.Fatalf("ts %s gave %d", v, got)
		}
	case string:
		// time.Parse wants upper-case T and Z, which RFC 3339 does not
		// require.
		s := []byte(v)
		if len(s) > 10 {
			s[10] = 'T'
		}
		if s[len(s)-1] == 'z' {
			s[len(s)-1] = 'Z'
		}
		tm, err := time.Parse(time.RFC3339Nano, string(s))
		if err != nil {
			t.Fatalf("ts %q accepted but time.Parse says %v", v, err)
		}
		if tm.UnixNano() != got {
			t.Fatalf("ts %q gave %d, time.Parse %d", v, got, tm.UnixNano())
		}
		if strings.Contains(v, " ") {
			t.Fatalf("ts %q with a space accepted", v)
		}
	default:
		t.Fatalf("ts accepted as %T", v)
	}
}
