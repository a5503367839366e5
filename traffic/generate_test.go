package traffic

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/event"
)

func generate(t testing.TB, cfg Config) (req, aud []byte, m *Manifest) {
	t.Helper()
	var rb, ab bytes.Buffer
	m, err := Generate(cfg, &rb, &ab)
	if err != nil {
		t.Fatal(err)
	}
	return rb.Bytes(), ab.Bytes(), m
}

func lines(b []byte) [][]byte {
	out := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	if len(out) == 1 && len(out[0]) == 0 {
		return nil
	}
	return out
}

// streamDecode generates cfg straight into decoders (no copy of the logs is
// kept) and hands each request and audit event, valid only during the
// call, with its raw line to onReq and onAudit; these run on two
// goroutines, one per log. An invalid line fails the test.
func streamDecode(t *testing.T, cfg Config, onReq, onAudit func(e *event.Event, line []byte)) *Manifest {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	consume := func(src event.Source, r *io.PipeReader, fn func(*event.Event, []byte)) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var dec event.Decoder
		var e event.Event
		n := 0
		for sc.Scan() {
			n++
			if err := dec.Decode(src, sc.Bytes(), &e); err != nil {
				errs <- fmt.Errorf("%v line %d is invalid: %v\n%s", src, n, err, sc.Bytes())
				r.CloseWithError(err)
				return
			}
			fn(&e, sc.Bytes())
		}
		if err := sc.Err(); err != nil {
			errs <- err
		}
	}
	rr, rw := io.Pipe()
	ar, aw := io.Pipe()
	wg.Add(2)
	go consume(event.Requests, rr, onReq)
	go consume(event.Audit, ar, onAudit)
	m, err := Generate(cfg, rw, aw)
	rw.Close()
	aw.Close()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// interner copies strings once, so that the many repeats of a key id or an
// address share one copy.
type interner map[string]string

func (in interner) str(s string) string {
	if c, ok := in[s]; ok {
		return c
	}
	c := strings.Clone(s)
	in[c] = c
	return c
}

// event returns a copy of e's fields that the checks keep.
func (in interner) event(e *event.Event) *event.Event {
	return &event.Event{TS: e.TS, Status: e.Status, Extra: e.Extra, OrgID: in.str(e.OrgID), APIKeyID: in.str(e.APIKeyID),
		KeyPermission: in.str(e.KeyPermission), IP: in.str(e.IP), Operation: in.str(e.Operation),
		DataClassification: in.str(e.DataClassification), Action: in.str(e.Action), Outcome: in.str(e.Outcome)}
}

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	cfg := Config{Seed: 3, Duration: 20 * time.Minute, Attacks: AttackNames(), InvalidPerMille: 5}
	r1, a1, m1 := generate(t, cfg)
	r2, a2, m2 := generate(t, cfg)
	if !bytes.Equal(r1, r2) || !bytes.Equal(a1, a2) {
		t.Fatal("two runs with the same config wrote different bytes")
	}
	if m1.Requests != m2.Requests || len(m1.Attacks) != len(m2.Attacks) {
		t.Fatalf("manifests differ: %+v vs %+v", m1, m2)
	}
	r3, _, _ := generate(t, Config{Seed: 4, Duration: 20 * time.Minute})
	if bytes.Equal(r1[:1000], r3[:1000]) {
		t.Error("another seed wrote the same traffic")
	}
}

// TestBenignTrafficIsTheSameWithAttacks: attacks are added to the day, they
// do not reshuffle it, so a benign replay and an attack replay differ only
// by the attacks (and by the outage's failed requests).
func TestBenignTrafficIsTheSameWithAttacks(t *testing.T) {
	t.Parallel()
	base := Config{Seed: 5, Duration: 40 * time.Minute}
	r1, a1, _ := generate(t, base)
	withAttacks := base
	withAttacks.Attacks = []string{"key-guessing", "mass-delete", "dormant-key"}
	r2, a2, _ := generate(t, withAttacks)
	for _, c := range []struct {
		name     string
		without  []byte
		with     []byte
		minExtra int
	}{{"requests", r1, r2, 100}, {"audit", a1, a2, 40}} {
		have := map[string]bool{}
		for _, l := range lines(c.with) {
			have[string(l)] = true
		}
		for _, l := range lines(c.without) {
			if !have[string(l)] {
				t.Fatalf("%s: benign line missing once attacks are added:\n%s", c.name, l)
			}
		}
		if extra := len(lines(c.with)) - len(lines(c.without)); extra < c.minExtra {
			t.Errorf("%s: attacks added %d lines, want at least %d", c.name, extra, c.minExtra)
		}
	}
}

// TestTrafficLooksReal checks the properties the rule pack's thresholds
// assume: a daily curve, every operation and classification, errors spread
// over many keys, stable addresses, ADMIN keys from a small fixed set of
// addresses, the audit trail's variety, both timestamp forms, unknown fields.
func TestTrafficLooksReal(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("generates a day of traffic (-short)")
	}

	perHour := make([]int, 24)
	ops, classes, perms := map[string]int{}, map[string]int{}, map[string]map[string]bool{}
	status := map[int64]map[string]bool{} // status → keys (or addresses) that got it
	keyIPs, orgs := map[string]map[string]bool{}, map[string]bool{}
	adminIPs := map[string]map[string]bool{} // org → addresses of its ADMIN keys
	var nreq, extra, disorder int
	var newest int64
	// Timestamp forms, per log: RFC 3339 strings and integer milliseconds.
	var rfc3339, unixMs [2]int
	form := func(log int, line []byte) {
		if line[len(`{"ts":`)] == '"' {
			rfc3339[log]++
		} else {
			unixMs[log]++
		}
	}
	// Event strings alias the decoder's input: keys kept in maps are copied.
	reqStr, audStr := interner{}, interner{}
	onReq := func(ev *event.Event, line []byte) {
		e := reqStr.event(ev)
		nreq++
		form(0, line)
		if e.TS < newest-int64(time.Minute) {
			disorder++
		}
		newest = max(newest, e.TS)
		if e.APIKeyID != "" && e.KeyPermission != "ADMIN" {
			// Customer traffic; monitors, automation and scanners are flat.
			perHour[time.Unix(0, e.TS).UTC().Hour()]++
		}
		ops[e.Operation]++
		orgs[e.OrgID] = true
		if e.DataClassification != "" {
			classes[e.DataClassification]++
		}
		if e.Extra != nil {
			extra++
		}
		who := e.APIKeyID
		if who == "" {
			who = e.IP
		}
		if status[e.Status] == nil {
			status[e.Status] = map[string]bool{}
		}
		status[e.Status][who] = true
		if e.APIKeyID == "" {
			return
		}
		if perms[e.KeyPermission] == nil {
			perms[e.KeyPermission] = map[string]bool{}
		}
		perms[e.KeyPermission][e.APIKeyID] = true
		if keyIPs[e.APIKeyID] == nil {
			keyIPs[e.APIKeyID] = map[string]bool{}
		}
		if e.Status != 401 {
			keyIPs[e.APIKeyID][e.IP] = true
		}
		if e.KeyPermission == "ADMIN" {
			if adminIPs[e.OrgID] == nil {
				adminIPs[e.OrgID] = map[string]bool{}
			}
			adminIPs[e.OrgID][e.IP] = true
		}
	}
	actions, outcomes := map[string]int{}, map[string]int{}
	var naud, auditExtra int
	onAudit := func(ev *event.Event, line []byte) {
		e := audStr.event(ev)
		naud++
		form(1, line)
		actions[e.Action]++
		outcomes[e.Outcome]++
		if e.Extra != nil {
			auditExtra++
		}
	}
	m := streamDecode(t, Config{Seed: 1, Rate: 5}, onReq, onAudit)
	if uint64(nreq) != m.Requests || uint64(naud) != m.Audit {
		t.Fatalf("manifest counts %d/%d, files hold %d/%d", m.Requests, m.Audit, nreq, naud)
	}
	for log, name := range []string{"requests", "audit"} {
		if rfc3339[log] == 0 || unixMs[log] == 0 || unixMs[log] > rfc3339[log]/2 {
			t.Errorf("%s timestamp forms: %d RFC 3339, %d Unix ms; want both, RFC 3339 the majority",
				name, rfc3339[log], unixMs[log])
		}
	}

	lo, hi := math.MaxInt, 0
	for _, n := range perHour {
		lo, hi = min(lo, n), max(hi, n)
	}
	if hi < 2*lo {
		t.Errorf("no daily curve: busiest hour %d requests, quietest %d", hi, lo)
	}
	if disorder != 0 {
		t.Errorf("%d requests more than a minute behind the newest", disorder)
	}
	for _, op := range []string{"metadata", "data", "search", "upload", "compute"} {
		if ops[op] < nreq/100 {
			t.Errorf("operation %s: %d requests of %d", op, ops[op], nreq)
		}
	}
	for _, c := range []string{"PUBLIC", "INTERNAL", "CONFIDENTIAL", "PHI"} {
		if classes[c] == 0 {
			t.Errorf("no request touches a %s namespace", c)
		}
	}
	if len(orgs) < 28 {
		t.Errorf("%d orgs, want about 30", len(orgs))
	}
	keys := 0
	for _, ks := range perms {
		keys += len(ks)
	}
	if rw := len(perms["READ"]) + len(perms["WRITE"]); rw < keys*2/3 || len(perms["ADMIN"]) == 0 || len(perms["ADMIN"]) > keys/5 {
		t.Errorf("key permissions: READ %d, WRITE %d, DELETE %d, ADMIN %d of %d keys; want mostly READ/WRITE, few ADMIN",
			len(perms["READ"]), len(perms["WRITE"]), len(perms["DELETE"]), len(perms["ADMIN"]), keys)
	}
	for _, code := range []int64{401, 403, 404, 429} {
		if len(status[code]) < 20 {
			t.Errorf("status %d: %d keys or addresses got it, want it spread over many", code, len(status[code]))
		}
	}
	var fivexx int
	for code, who := range status {
		if code >= 500 {
			fivexx += len(who)
		}
	}
	if fivexx == 0 {
		t.Error("no server errors at all")
	}
	for k, ips := range keyIPs {
		if len(ips) > 2 {
			t.Errorf("key %s used from %d addresses, want its one or two", k, len(ips))
		}
	}
	for o, ips := range adminIPs {
		if len(ips) > 2 {
			t.Errorf("org %s's ADMIN keys used from %d addresses, want a small fixed set", o, len(ips))
		}
	}
	if extra < nreq/10 {
		t.Errorf("%d of %d requests carry unknown fields", extra, nreq)
	}

	for _, a := range []string{"auth.login", "document.read", "document.update", "document.create",
		"document.delete", "api_key.create", "api_key.revoke", "api_key.rotate", "member.role_change",
		"namespace.delete", "api_key.flag_inactive"} {
		if actions[a] == 0 {
			t.Errorf("no %s audit event in a day", a)
		}
	}
	if actions["document.read"] < actions["api_key.create"]*100 {
		t.Errorf("key management (%d creations) is not rare next to reads (%d)", actions["api_key.create"], actions["document.read"])
	}
	if outcomes["failure"] == 0 || outcomes["denied"] == 0 {
		t.Errorf("audit outcomes %v: want some failures and denials", outcomes)
	}
	if auditExtra == 0 {
		t.Error("no audit event carries unknown fields")
	}
}

func TestInvalidLinesAreCountedAndVaried(t *testing.T) {
	t.Parallel()
	req, aud, m := generate(t, Config{Seed: 2, Duration: 30 * time.Minute, InvalidPerMille: 30, Attacks: []string{"metadata-ssrf"}})
	var dec event.Decoder
	reasons := map[string]int{}
	for _, c := range []struct {
		src  event.Source
		b    []byte
		want uint64
	}{{event.Requests, req, m.InvalidRequests}, {event.Audit, aud, m.InvalidAudit}} {
		var bad uint64
		for _, l := range lines(c.b) {
			var e event.Event
			err := dec.Decode(c.src, l, &e)
			if err == nil {
				continue
			}
			var ie *event.InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("decode error %T is not an *event.InvalidError", err)
			}
			bad++
			// The kind of problem: the field and the reason without numbers.
			reason := strings.Map(func(r rune) rune {
				if r >= '0' && r <= '9' {
					return -1
				}
				return r
			}, ie.Reason)
			reasons[ie.Field+"|"+reason[:min(len(reason), 30)]]++
		}
		if bad != c.want || bad == 0 {
			t.Errorf("%v: %d invalid lines, manifest says %d", c.src, bad, c.want)
		}
		total := uint64(len(lines(c.b)))
		if lo, hi := total*15/1000, total*45/1000; bad < lo || bad > hi {
			t.Errorf("%v: %d of %d lines invalid, want about 3%%", c.src, bad, total)
		}
	}
	if len(reasons) < 6 {
		t.Errorf("invalid lines fail for only %d kinds of reason: %v", len(reasons), reasons)
	}
	// Attack lines are never corrupted.
	if n := bytes.Count(req, []byte("169.254.169.254")); n != 2 {
		t.Errorf("metadata attack lines: %d with the address, want 2", n)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Attacks: []string{"no-such-attack"}},
		{Duration: time.Millisecond},
		{Rate: -1},
		{InvalidPerMille: 1001},
	} {
		if _, err := Generate(cfg, io.Discard, io.Discard); err == nil {
			t.Errorf("Generate(%+v) did not fail", cfg)
		}
	}
}

func TestSelectedAttacksOnly(t *testing.T) {
	t.Parallel()
	_, _, m := generate(t, Config{Seed: 1, Duration: time.Hour, Attacks: []string{"outage", "mass-delete"}})
	if len(m.Attacks) != 2 || len(m.Skipped) != 0 {
		t.Fatalf("attacks %+v, skipped %+v", m.Attacks, m.Skipped)
	}
	for _, a := range m.Attacks {
		if a.Start.Before(m.Start) || a.End.After(m.End) || a.End.Before(a.Start) || len(a.Rules) == 0 || len(a.Group) == 0 {
			t.Errorf("attack %+v is not inside the span with rules and a group", a)
		}
		if a.Events == 0 {
			t.Errorf("attack %s has no events", a.Name)
		}
	}
	_, _, m = generate(t, Config{Seed: 1, Duration: 5 * time.Minute, Attacks: []string{"key-volume-spike", "metadata-ssrf"}})
	if len(m.Attacks) != 1 || len(m.Skipped) != 1 || m.Skipped[0].Name != "key-volume-spike" {
		t.Errorf("a 5-minute span: attacks %+v, skipped %+v; want the spike skipped (it needs history)", m.Attacks, m.Skipped)
	}
}

func TestWriteDirGzip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	m, err := WriteDir(Config{Seed: 1, Duration: 10 * time.Minute, Attacks: []string{"metadata-ssrf"}}, dir, true)
	if err != nil {
		t.Fatal(err)
	}
	if m.Requests == 0 || len(m.Attacks) != 1 {
		t.Fatalf("manifest %+v", m)
	}
	for _, name := range []string{RequestsFile + ".gz", AuditFile + ".gz"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(zr)
		f.Close()
		if err != nil || len(lines(data)) == 0 {
			t.Errorf("%s: %d lines, %v", name, len(lines(data)), err)
		}
	}
	data, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	var back Manifest
	if err := json.Unmarshal(data, &back); err != nil || back.Requests != m.Requests || back.Attacks[0].Name != "metadata-ssrf" {
		t.Errorf("manifest file: %v, %+v", err, back)
	}
}

// BenchmarkGenerate reports generated lines per second (requests and
// audit, written to memory).
func BenchmarkGenerate(b *testing.B) {
	var lines uint64
	began := time.Now()
	for i := 0; i < b.N; i++ {
		m, err := Generate(Config{Seed: uint64(i), Duration: time.Hour, Attacks: AttackNames()}, io.Discard, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		lines += m.Requests + m.Audit
	}
	b.ReportMetric(float64(lines)/time.Since(began).Seconds(), "lines/s")
}
