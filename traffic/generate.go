package traffic

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// DefaultStart is the start of the generated span when Config.Start is
// zero: a Monday, so a default day has weekday traffic.
var DefaultStart = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// Defaults of Config.
const (
	DefaultDuration = 24 * time.Hour
	DefaultRate     = 50.0
)

// Config says what to generate. The same Config always produces the same
// bytes.
type Config struct {
	// Start of the span; zero means DefaultStart.
	Start time.Time
	// Duration of the span; zero means DefaultDuration.
	Duration time.Duration
	// Rate is the mean number of requests per second over a weekday (an
	// org's daily curve goes from about 0.4× in its night to 1.9× at its
	// afternoon peak; weekends are half as busy); zero means DefaultRate.
	Rate float64
	// Seed selects the platform (orgs, keys, addresses) and the traffic.
	Seed uint64
	// Attacks names the attacks to inject (AttackNames lists them all);
	// none when empty.
	Attacks []string
	// InvalidPerMille is how many lines in a thousand are made invalid
	// (truncated, not JSON, missing or mistyped fields, bad times, unknown
	// enum values, bad addresses), for dead-letter tests. Attack lines are
	// never corrupted, so the attacks' alerts do not depend on it.
	InvalidPerMille int
}

func (c Config) withDefaults() (Config, error) {
	if c.Start.IsZero() {
		c.Start = DefaultStart
	}
	c.Start = c.Start.UTC()
	if c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	switch {
	case c.Duration < time.Second:
		return c, fmt.Errorf("duration %s is shorter than a second", c.Duration)
	case c.Duration > 31*24*time.Hour:
		return c, fmt.Errorf("duration %s is longer than 31 days", c.Duration)
	case c.Rate < 0 || c.Rate > 1e6:
		return c, fmt.Errorf("rate %g is outside 0..1e6 requests/s", c.Rate)
	case c.InvalidPerMille < 0 || c.InvalidPerMille > 1000:
		return c, fmt.Errorf("invalid %d is outside 0..1000 per mille", c.InvalidPerMille)
	}
	for _, a := range c.Attacks {
		if findAttack(a) == nil {
			return c, fmt.Errorf("unknown attack %q (known: %s)", a, strings.Join(AttackNames(), ", "))
		}
	}
	return c, nil
}

// Manifest describes what was generated: the span, the line counts and
// every injected attack with the rules it is expected to trigger.
type Manifest struct {
	Seed     uint64    `json:"seed"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Rate     float64   `json:"rate"`
	Requests uint64    `json:"requests"`
	Audit    uint64    `json:"audit"`
	// Invalid lines among them, per file.
	InvalidRequests uint64          `json:"invalid_requests"`
	InvalidAudit    uint64          `json:"invalid_audit"`
	Attacks         []Attack        `json:"attacks"`
	Skipped         []SkippedAttack `json:"skipped,omitempty"`
}

// Attack is one injected attack. Its alerts are expected between Start
// and End (the first and last event of the attack) with group values
// taken from Group.
type Attack struct {
	Name        string    `json:"name"`
	Description string    `json:"description"`
	Start       time.Time `json:"start"`
	End         time.Time `json:"end"`
	// Group holds the values that identify the attack (address, key, org,
	// actor, operation); each expected alert's group fields take their
	// values from here.
	Group map[string]string `json:"group"`
	// Rules are the ids of the rules of configs/rules expected to fire.
	Rules  []string `json:"expected_rules"`
	Events int      `json:"events"`
	Note   string   `json:"note,omitempty"`
}

// SkippedAttack is an attack that was asked for but does not fit the span.
type SkippedAttack struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// Generate writes the request log to requests and the audit log to audit
// as JSON lines, each in event-time order up to the small disorder real
// logs have (lines are written when a request completes). Writes to the two
// writers happen on their own goroutines; Generate returns after both are
// done.
func Generate(cfg Config, requests, audit io.Writer) (*Manifest, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	g := newGen(cfg)
	rw := newAsyncWriter(requests)
	aw := newAsyncWriter(audit)
	g.out = [2]*asyncWriter{rw, aw}
	g.run()
	errR := rw.close()
	errA := aw.close()
	if err := errors.Join(errR, errA); err != nil {
		return nil, err
	}
	return g.manifest(), nil
}

// Files are the names WriteDir uses inside its directory.
const (
	RequestsFile = "requests.jsonl"
	AuditFile    = "audit.jsonl"
	ManifestFile = "attacks.json"
)

// WriteDir generates into dir (created if missing): requests.jsonl,
// audit.jsonl (with a .gz suffix and gzip-compressed when compress is set)
// and attacks.json, the manifest.
func WriteDir(cfg Config, dir string, compress bool) (*Manifest, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	suffix := ""
	if compress {
		suffix = ".gz"
	}
	open := func(name string) (*os.File, io.WriteCloser, error) {
		f, err := os.Create(filepath.Join(dir, name+suffix))
		if err != nil {
			return nil, nil, err
		}
		if !compress {
			return f, nopCloser{f}, nil
		}
		return f, newParallelGzip(f), nil
	}
	rf, rw, err := open(RequestsFile)
	if err != nil {
		return nil, err
	}
	defer rf.Close()
	af, aw, err := open(AuditFile)
	if err != nil {
		return nil, err
	}
	defer af.Close()
	m, err := Generate(cfg, rw, aw)
	if err != nil {
		return nil, err
	}
	for _, c := range []io.Closer{rw, aw, rf, af} {
		if err := c.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			return nil, err
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ManifestFile), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return m, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// asyncWriter hands filled buffers to a goroutine that writes them, so
// generating and writing (or compressing) overlap.
type asyncWriter struct {
	w    io.Writer
	full chan []byte
	free chan []byte
	done chan struct{}
	err  error
	buf  []byte
}

const chunkSize = 256 << 10

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{w: w, full: make(chan []byte, 4), free: make(chan []byte, 5), done: make(chan struct{})}
	for i := 0; i < 4; i++ {
		a.free <- make([]byte, 0, chunkSize+4096)
	}
	a.buf = make([]byte, 0, chunkSize+4096)
	go func() {
		defer close(a.done)
		for b := range a.full {
			if a.err == nil {
				_, a.err = a.w.Write(b)
			}
			a.free <- b[:0]
		}
	}()
	return a
}

// flushIfFull passes the buffer on once it holds a chunk.
func (a *asyncWriter) flushIfFull() {
	if len(a.buf) >= chunkSize {
		a.full <- a.buf
		a.buf = <-a.free
	}
}

func (a *asyncWriter) close() error {
	if len(a.buf) > 0 {
		a.full <- a.buf
		a.buf = nil
	}
	close(a.full)
	<-a.done
	return a.err
}

// outputs: which asyncWriter a record goes to.
const (
	outRequests = 0
	outAudit    = 1
)

// ringSize bounds how far (in seconds) a line may be written after its
// event time; latencies and audit delays are capped below it.
const ringSize = 64

// gen holds the state of one generation run.
type gen struct {
	cfg   Config
	w     *world
	r     *rng // benign traffic
	ar    *rng // attacks
	sr    *rng // schedules (sessions, key lifecycle)
	enc   encoder
	start int64
	end   int64

	reqNum, evtNum uint64
	ring           [ringSize][]rec
	order          []sortKey
	scheduled      []rec // sessions, lifecycle and attack events, sorted by ts before the run
	next           int
	early          []rec // events before the span (the dormant key's last use)

	orgCum    []float64
	totalRate float64
	errorMods []errorMod
	stale     []staleClient
	promoted  map[*org]int64 // orgs with a benign promotion to ADMIN, and when
	orgEvents map[*org][]int64
	sessionN  uint32
	// Attack records are numbered apart from benign ones, so that benign
	// traffic is the same with and without attacks.
	attackReq, attackEvt uint64
	used                 map[any]bool // orgs and keys an attack has claimed

	out         [2]*asyncWriter
	lines       [2]uint64
	invalid     [2]uint64
	attacks     []Attack
	skipped     []SkippedAttack
	outageIdx   []int // index into attacks of outage-style attacks, to count their events
	outageCount []int
}

type sortKey struct {
	at int64
	i  int32
}

// errorMod raises the 5xx rate of one operation for a while (outages and
// short benign blips).
type errorMod struct {
	op       string
	from, to int64
	p        float64
	attack   int // index into attacks, or -1 for a benign blip
}

// staleClient keeps calling with a key after it was revoked.
type staleClient struct {
	k          *apiKey
	next, stop int64
	every      int64
}

func newGen(cfg Config) *gen {
	g := &gen{cfg: cfg, w: newWorld(cfg.Seed),
		r: newRNG(cfg.Seed, 2), ar: newRNG(cfg.Seed, 3), sr: newRNG(cfg.Seed, 4),
		start: cfg.Start.UnixNano(), promoted: map[*org]int64{}}
	g.end = g.start + int64(cfg.Duration)
	g.enc.salt = newRNG(cfg.Seed, 5).u64()
	g.w.finish(cfg.Rate)
	g.schedule()
	g.injectAttacks()
	sort.SliceStable(g.scheduled, func(i, j int) bool { return g.scheduled[i].ts < g.scheduled[j].ts })
	return g
}

func (g *gen) manifest() *Manifest {
	m := &Manifest{Seed: g.cfg.Seed, Start: g.cfg.Start, End: g.cfg.Start.Add(g.cfg.Duration), Rate: g.cfg.Rate,
		Requests: g.lines[outRequests], Audit: g.lines[outAudit],
		InvalidRequests: g.invalid[outRequests], InvalidAudit: g.invalid[outAudit],
		Attacks: g.attacks, Skipped: g.skipped}
	for i, ai := range g.outageIdx {
		m.Attacks[ai].Events = g.outageCount[i]
	}
	if m.Attacks == nil {
		m.Attacks = []Attack{}
	}
	return m
}

// run generates second by second.
func (g *gen) run() {
	secs := (g.end - g.start + 1e9 - 1) / 1e9
	for s := int64(0); s < secs; s++ {
		t0 := g.start + s*1e9
		if s%60 == 0 {
			g.updateRates(t0)
		}
		g.benignSecond(t0)
		for g.next < len(g.scheduled) && g.scheduled[g.next].ts < t0+1e9 {
			g.pushScheduled(&g.scheduled[g.next])
			g.next++
		}
		g.flushBucket(s)
		g.writeEarly()
	}
	for g.next < len(g.scheduled) { // events dated after the span are dropped by push
		g.pushScheduled(&g.scheduled[g.next])
		g.next++
	}
	for s := secs; s < secs+ringSize; s++ {
		g.flushBucket(s)
	}
	for i := range g.early { // a span without requests
		g.write(&g.early[i])
	}
}

// pushScheduled queues a planned record; benign ones get their number and
// timestamp form now, in time order, attack ones have theirs.
func (g *gen) pushScheduled(r *rec) {
	if r.ready {
		g.push(*r)
		return
	}
	if r.ts < g.start || r.ts >= g.end {
		return
	}
	g.finishAudit(r)
}

// writeEarly writes the records dated before the span (the dormant key's
// last use) once the request log has its first line: a late line, as a
// backfill of archived logs would be. Written first, it would be the first
// event of the source, and learning periods (new_value's learn) would be
// over before the span begins.
func (g *gen) writeEarly() {
	if len(g.early) == 0 || g.lines[outRequests] == 0 {
		return
	}
	for i := range g.early {
		g.write(&g.early[i])
	}
	g.early = nil
}

// push queues a record to be written in the second its line is logged.
func (g *gen) push(r rec) {
	if r.ts >= g.end {
		return // outside the span
	}
	if r.logAt < r.ts {
		r.logAt = r.ts
	}
	if max := r.ts + (ringSize-2)*1e9; r.logAt > max {
		r.logAt = max
	}
	sec := floorDiv(r.logAt-g.start, 1e9)
	if sec < 0 {
		sec = 0
	}
	b := &g.ring[sec%ringSize]
	*b = append(*b, r)
}

func (g *gen) flushBucket(s int64) {
	b := &g.ring[s%ringSize]
	if len(*b) == 0 {
		return
	}
	g.order = g.order[:0]
	for i := range *b {
		g.order = append(g.order, sortKey{(*b)[i].logAt, int32(i)})
	}
	slices.SortFunc(g.order, func(x, y sortKey) int {
		if x.at != y.at {
			if x.at < y.at {
				return -1
			}
			return 1
		}
		return int(x.i - y.i)
	})
	for _, k := range g.order {
		g.write(&(*b)[k.i])
	}
	*b = (*b)[:0]
}

// write encodes a record into its file's buffer, corrupting it first when
// --invalid says so.
func (g *gen) write(r *rec) {
	out := outRequests
	if r.audit {
		out = outAudit
	}
	if g.cfg.InvalidPerMille > 0 && !r.protect && g.r.intn(1000) < g.cfg.InvalidPerMille {
		r.corrupt = uint8(1 + g.r.intn(numCorruptions-1))
		g.invalid[out]++
	}
	w := g.out[out]
	w.buf = g.enc.line(w.buf, r)
	g.lines[out]++
	w.flushIfFull()
}

func (g *gen) updateRates(t int64) {
	if g.orgCum == nil {
		g.orgCum = make([]float64, len(g.w.orgs))
	}
	var s float64
	for i, o := range g.w.orgs {
		s += o.weight * o.activity(t+30e9)
		g.orgCum[i] = s
	}
	g.totalRate = s
}
