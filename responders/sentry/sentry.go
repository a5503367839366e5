// Package sentry delivers the open_incident action to Sentry through
// github.com/getsentry/sentry-go: one Sentry event per incident update,
// fingerprinted by rule and group so that every update of an incident
// lands in the same Sentry issue.
//
// The operator configures the project's DSN (responders.sentry.dsn, from an
// environment variable or a file, never from rule files), and optionally
// the environment and release shown in Sentry. The DSN's key only lets
// Vigil submit events to that one project. It is never put in an event
// field, an error or a log; the SDK sends it to Sentry in the
// X-Sentry-Auth header and the envelope header, as every Sentry SDK does.
//
// # What goes to Sentry
//
// The message, level, tags and two contexts ("incident", "evidence")
// describe the incident by ids: rule, severity, org, namespace and key ids,
// sample event ids, the evidence query, the planned actions and notes.
// Event payload values never go beyond ids. Group values, client
// addresses and the evidence query's parameters (which repeat the group
// values) are added only when the incident is not PHI; for PHI incidents
// the fingerprint carries the SHA-256 of the group instead, so grouping
// still works, and the full record stays in ClickHouse. The SDK's default
// integrations (host and runtime details, module lists, environment-based
// tags) are removed, the server name is "vigil", and SendDefaultPII is off.
//
// # Delivery
//
// Each Notify builds its own SDK client with a synchronous transport and
// makes exactly one attempt, so it knows whether Sentry accepted the event
// and returns a *responders.CallError when not; retrying is the
// dispatcher's job. A fresh client per call also means the SDK's own
// rate-limit memory, which would otherwise drop later events silently,
// never outlives the call: the Notifier keeps that memory itself. After
// Sentry asks for a pause (429, Retry-After, X-Sentry-Rate-Limits), Notify
// returns a retryable error with RetryAfter set and sends nothing until the
// pause is over, and the first call after it sends again.
package sentry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	sentrygo "github.com/getsentry/sentry-go"

	"github.com/vigil-sec/vigil/responders"
)

const (
	// DefaultTimeout bounds one delivery when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second
	// DefaultEnvironment and DefaultRelease fill in empty Config fields,
	// so the SDK never falls back to SENTRY_* variables or runs git.
	DefaultEnvironment = "production"
	DefaultRelease     = "vigil"

	system = "sentry"
	op     = "POST /api/{project_id}/envelope/"

	// defaultPause is the wait Sentry's SDKs assume after a 429 that
	// names none.
	defaultPause = time.Minute
	// maxRetryAfter caps CallError.RetryAfter like responders.ParseRetryAfter;
	// a longer pause is still honored, by answering again with the rest.
	maxRetryAfter = 10 * time.Minute
	maxServerMsg  = 200
	maxCapture    = 1 << 10
)

// Config configures a Notifier.
type Config struct {
	// DSN is the project's client key URL,
	// https://<public key>@<host>/<project id>. Required.
	DSN string
	// Environment and Release are shown on Sentry events; DefaultEnvironment
	// and DefaultRelease when empty.
	Environment string
	Release     string
	// Timeout bounds each delivery; DefaultTimeout when zero. It replaces
	// HTTPClient's own Timeout.
	Timeout time.Duration
	// HTTPClient sends the requests; its Transport (http.DefaultTransport
	// when nil) is used, wrapped to observe each answer.
	HTTPClient *http.Client
}

// Notifier opens and updates incidents in Sentry. It is safe for
// concurrent use.
type Notifier struct {
	dsn         string
	publicKey   string
	secretKey   string
	environment string
	release     string
	timeout     time.Duration
	hc          http.Client
	base        http.RoundTripper
	now         func() time.Time

	mu          sync.Mutex
	pausedUntil time.Time // Sentry asked not to send error events before this
}

var _ responders.Notifier = (*Notifier)(nil)

// New checks cfg and returns a Notifier. Every problem is reported, each
// naming the configuration key to fix; none quotes the DSN.
func New(cfg Config) (*Notifier, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("sentry: "+format, args...))
	}
	n := &Notifier{
		dsn:         strings.TrimSpace(cfg.DSN),
		environment: cfg.Environment,
		release:     cfg.Release,
		timeout:     cfg.Timeout,
		now:         time.Now,
	}
	if n.dsn == "" {
		bad("responders.sentry.dsn is empty; set it to the project's DSN (Project Settings > Client Keys)")
	} else if dsn, err := sentrygo.NewDsn(n.dsn); err != nil {
		// The parse error quotes the DSN, key included: say what is wrong
		// without it.
		bad("responders.sentry.dsn is not a valid DSN; want https://<public key>@<host>/<project id>")
	} else {
		n.publicKey, n.secretKey = dsn.GetPublicKey(), dsn.GetSecretKey()
	}
	if n.timeout < 0 {
		bad("Config.Timeout must not be negative")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if n.environment == "" {
		n.environment = DefaultEnvironment
	}
	if n.release == "" {
		n.release = DefaultRelease
	}
	if n.timeout == 0 {
		n.timeout = DefaultTimeout
	}
	if cfg.HTTPClient != nil {
		n.hc = *cfg.HTTPClient
	}
	n.hc.Timeout = 0 // the per-call context bounds the request
	n.base = n.hc.Transport
	if n.base == nil {
		n.base = http.DefaultTransport
	}
	return n, nil
}

// Notify sends one event for inc and reports whether Sentry accepted it.
func (n *Notifier) Notify(ctx context.Context, inc *responders.Incident) error {
	if inc == nil || inc.ID == "" || inc.Rule == "" {
		return &responders.CallError{System: system, Op: op, Final: true, Msg: "incident has no id or rule"}
	}
	if wait := n.paused(); wait > 0 {
		return &responders.CallError{System: system, Op: op, RetryAfter: min(wait, maxRetryAfter),
			Msg: fmt.Sprintf("not sent: Sentry asked for a pause, %s left", wait.Round(time.Second))}
	}

	return n.send(ctx, newEvent(inc))
}

// Report sends one of Vigil's own errors (a recovered panic, inserts
// failing for minutes), apart from incidents: its own fingerprint, the
// tag kind=internal, level error. fields must not hold secrets.
func (n *Notifier) Report(ctx context.Context, message string, fields map[string]string) error {
	if wait := n.paused(); wait > 0 {
		return &responders.CallError{System: system, Op: op, RetryAfter: min(wait, maxRetryAfter),
			Msg: fmt.Sprintf("not sent: Sentry asked for a pause, %s left", wait.Round(time.Second))}
	}
	ev := sentrygo.NewEvent()
	ev.Level = sentrygo.LevelError
	ev.Message = "[vigil] " + message
	ev.Fingerprint = []string{"vigil-internal", message}
	ev.Tags = map[string]string{"kind": "internal"}
	ev.Logger = "vigil"
	details := sentrygo.Context{}
	for k, v := range fields {
		details[k] = v
	}
	ev.Contexts["error"] = details
	return n.send(ctx, ev)
}

// send delivers one event through a client of its own and reports
// whether Sentry accepted it.
func (n *Notifier) send(ctx context.Context, ev *sentrygo.Event) error {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	rec := &recorder{ctx: ctx, base: n.base}
	hc := n.hc
	hc.Transport = rec

	transport := sentrygo.NewHTTPSyncTransport()
	transport.Timeout = n.timeout
	client, err := sentrygo.NewClient(sentrygo.ClientOptions{
		Dsn:         n.dsn,
		Environment: n.environment,
		Release:     n.release,
		ServerName:  "vigil",
		SampleRate:  1,
		// No breadcrumbs, stack traces, logs, metrics or client reports:
		// only the event built here leaves the process.
		MaxBreadcrumbs:         -1,
		SendDefaultPII:         false,
		DisableMetrics:         true,
		DisableClientReports:   true,
		DisableTelemetryBuffer: true,
		Integrations:           func([]sentrygo.Integration) []sentrygo.Integration { return nil },
		Transport:              transport,
		HTTPClient:             &hc,
	})
	if err != nil {
		return &responders.CallError{System: system, Op: op, Final: true,
			Msg: "cannot build the Sentry client; check responders.sentry.dsn"}
	}
	defer client.Close()

	hub := sentrygo.NewHub(client, sentrygo.NewScope())
	if hub.CaptureEvent(ev) == nil {
		return &responders.CallError{System: system, Op: op, Final: true, Msg: "the Sentry SDK dropped the event"}
	}
	return n.outcome(parent, ctx, rec)
}

// outcome turns what the recorder saw into Notify's result.
func (n *Notifier) outcome(parent, ctx context.Context, rec *recorder) error {
	r := rec.snapshot()
	switch {
	case r.calls == 0:
		// With a fresh transport and a checked DSN this means the SDK could
		// not encode the event: a bug, not a reason to retry.
		return &responders.CallError{System: system, Op: op, Final: true, Msg: "the Sentry SDK did not send the event"}
	case r.err != nil:
		return responders.TransportError(system, op, parent, ctx, n.timeout, r.err, n.trim)
	}

	now := n.now()
	pause := n.notePause(r.status, r.header, now)
	if r.status >= 200 && r.status < 300 {
		return nil
	}
	msg := n.serverMessage(r.body)
	with := func(s string) string {
		if msg == "" {
			return s
		}
		return s + ": " + msg
	}
	ce := responders.HTTPError(system, op, r.status, r.header.Get("Retry-After"), now, msg)
	switch {
	case r.status == http.StatusTooManyRequests:
		ce.RetryAfter = min(pause, maxRetryAfter)
	case r.status == http.StatusUnauthorized || r.status == http.StatusForbidden:
		ce.Msg = with("Sentry refused the key; check responders.sentry.dsn and that the client key is enabled")
	case r.status == http.StatusRequestEntityTooLarge:
		ce.Msg = with("event too large")
	}
	return ce
}

// paused returns how long Sentry asked Vigil to wait, or 0.
func (n *Notifier) paused() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pausedUntil.Sub(n.now())
}

// notePause records a pause Sentry asked for, and returns it: the limits
// of X-Sentry-Rate-Limits that cover error events, or for a 429 without
// them Retry-After, or a minute. Sentry may send limits with a 2xx too;
// they apply to the next event.
func (n *Notifier) notePause(status int, h http.Header, now time.Time) time.Duration {
	pause := rateLimitPause(h.Get("X-Sentry-Rate-Limits"))
	if pause == 0 && status == http.StatusTooManyRequests {
		pause = retryAfter(h.Get("Retry-After"), now)
		if pause == 0 {
			pause = defaultPause
		}
	}
	if pause > 0 {
		n.mu.Lock()
		if until := now.Add(pause); until.After(n.pausedUntil) {
			n.pausedUntil = until
		}
		n.mu.Unlock()
	}
	return pause
}

// rateLimitPause reads X-Sentry-Rate-Limits,
// "<seconds>:<categories>:<scope>[:<reason>], ...", and returns the
// longest wait among limits on all categories, "error" or "default" (the
// category Sentry files message events under).
func rateLimitPause(v string) time.Duration {
	var longest time.Duration
	for _, limit := range strings.Split(v, ",") {
		parts := strings.Split(strings.TrimSpace(limit), ":")
		if len(parts) == 0 || parts[0] == "" {
			continue
		}
		secs, err := strconv.ParseFloat(parts[0], 64)
		if err != nil || secs <= 0 || math.IsInf(secs, 0) {
			continue
		}
		applies := len(parts) < 2 || strings.TrimSpace(parts[1]) == ""
		if !applies {
			for _, c := range strings.Split(parts[1], ";") {
				switch strings.ToLower(strings.TrimSpace(c)) {
				case "error", "default":
					applies = true
				}
			}
		}
		if applies {
			longest = max(longest, time.Duration(math.Ceil(min(secs, 1e6)))*time.Second)
		}
	}
	return longest
}

// retryAfter reads Retry-After without responders.ParseRetryAfter's cap,
// because the pause itself must last as long as Sentry asked.
func retryAfter(v string, now time.Time) time.Duration {
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// serverMessage is Sentry's explanation, {"detail": ...} or text.
func (n *Notifier) serverMessage(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	s := string(body)
	var doc map[string]any
	if json.Unmarshal(body, &doc) == nil {
		if d, ok := doc["detail"].(string); ok {
			s = d
		}
	}
	return n.trim(s)
}

// trim makes s safe to quote: no DSN key, one line, at most maxServerMsg
// bytes.
func (n *Notifier) trim(s string) string {
	for _, k := range []string{n.dsn, n.secretKey, n.publicKey} {
		if k != "" {
			s = strings.ReplaceAll(s, k, "[redacted]")
		}
	}
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	if len(s) > maxServerMsg {
		cut := maxServerMsg - len("...")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// recorder is the RoundTripper under the SDK's transport. The SDK keeps
// the HTTP answer to itself and sends with a context of its own; the
// recorder puts the call's context on the request and notes the answer.
type recorder struct {
	ctx  context.Context
	base http.RoundTripper

	mu     sync.Mutex
	calls  int
	err    error
	status int
	header http.Header
	body   []byte
}

type answer struct {
	calls  int
	err    error
	status int
	header http.Header
	body   []byte
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.base.RoundTrip(req.WithContext(r.ctx))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.err = err
	if err != nil {
		return nil, err
	}
	r.status, r.header, r.body = resp.StatusCode, resp.Header.Clone(), nil
	resp.Body = &capture{ReadCloser: resp.Body, rec: r}
	return resp, nil
}

func (r *recorder) snapshot() answer {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.header
	if h == nil {
		h = http.Header{}
	}
	return answer{calls: r.calls, err: r.err, status: r.status, header: h, body: append([]byte(nil), r.body...)}
}

// capture keeps the first maxCapture bytes of the answer as the SDK reads
// it, for the error message.
type capture struct {
	io.ReadCloser
	rec *recorder
}

func (c *capture) Read(p []byte) (int, error) {
	k, err := c.ReadCloser.Read(p)
	c.rec.mu.Lock()
	if room := maxCapture - len(c.rec.body); room > 0 {
		c.rec.body = append(c.rec.body, p[:min(k, room)]...)
	}
	c.rec.mu.Unlock()
	return k, err
}
