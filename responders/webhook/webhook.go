// Package webhook delivers the open_incident action as a signed JSON
// document POSTed to a URL the operator runs (a chat bridge, a paging
// service, a ticketing system).
//
// The operator configures the URL (responders.webhook.url), a shared
// secret for the signature (responders.webhook.secret, from an environment
// variable or a file, never from rule files) and optionally extra headers,
// e.g. an Authorization header the receiver wants. Neither the secret nor
// header values ever appear in an error.
//
// # What the receiver gets
//
// A POST with Content-Type application/json and the body
//
//	{"type":"vigil.incident","version":1,"incident":{...}}
//
// where incident holds the fields of responders.Incident in snake_case.
// Every update of an incident is delivered again with the same incident
// id; X-Vigil-Delivery ("<incident id>-<alerts>") is the same on a retry of
// one update and differs between updates, so receivers can drop
// duplicates. For PHI incidents the group values and client addresses are
// left out, and the evidence query's parameters with them (they repeat the
// group values): group_hash (the hex SHA-256 of the group, the same value
// the Sentry notifier puts in its fingerprint) lets receivers tell groups
// apart, and the full record stays in ClickHouse under the incident id.
//
// # Verifying the signature
//
// X-Vigil-Timestamp holds the Unix time in seconds when the request was
// signed, and X-Vigil-Signature is "sha256=" followed by the hex
// HMAC-SHA256, keyed with the shared secret, of the timestamp, a dot, and
// the raw body:
//
//	sig = "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body))
//
// A receiver recomputes it over the bytes it read, compares in constant
// time (Verify does both), and rejects timestamps more than a few minutes
// from its own clock so a captured request cannot be replayed later.
//
// Each Notify makes exactly one attempt and returns a *responders.CallError;
// retrying is the dispatcher's job. Redirects are not followed: a POST
// redirected with 301-303 would arrive as a GET without its body.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/responders"
)

const (
	// DefaultTimeout bounds one delivery when Config.Timeout is zero.
	DefaultTimeout = 10 * time.Second

	// Header names of a delivery.
	HeaderTimestamp = "X-Vigil-Timestamp"
	HeaderSignature = "X-Vigil-Signature"
	HeaderDelivery  = "X-Vigil-Delivery"

	// DocumentType and DocumentVersion identify the body's schema; the
	// version changes only when a field is removed or changes meaning.
	DocumentType    = "vigil.incident"
	DocumentVersion = 1

	system       = "webhook"
	op           = "POST incident"
	maxAnswer    = 64 << 10
	maxServerMsg = 200
)

// Config configures a Notifier.
type Config struct {
	// URL receives the POSTs; http or https. Required.
	URL string
	// Secret keys the HMAC signature. Required.
	Secret string
	// Timeout bounds each delivery; DefaultTimeout when zero.
	Timeout time.Duration
	// HTTPClient sends the requests; a plain http.Client when nil. Its
	// redirect policy is replaced: redirects are never followed.
	HTTPClient *http.Client
	// Headers are added to every request, e.g. Authorization. They cannot
	// replace Content-Type, Host or the X-Vigil-* headers.
	Headers map[string]string
}

// Notifier posts incidents to the webhook. It is safe for concurrent use.
type Notifier struct {
	url     string
	secret  string
	timeout time.Duration
	hc      *http.Client
	headers http.Header
	now     func() time.Time
}

var _ responders.Notifier = (*Notifier)(nil)

// New checks cfg and returns a Notifier. Every problem is reported, each
// naming the configuration key to fix.
func New(cfg Config) (*Notifier, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("webhook: "+format, args...))
	}
	if cfg.URL == "" {
		bad("responders.webhook.url is empty; set it to the receiver's http or https URL")
	} else if u, err := url.Parse(cfg.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("responders.webhook.url must be an absolute http or https URL")
	} else if u.User != nil {
		bad("responders.webhook.url must not hold credentials; send them in a header (Config.Headers)")
	}
	if cfg.Secret == "" {
		bad("responders.webhook.secret is empty; set it to a long random string shared with the receiver, which uses it to verify X-Vigil-Signature")
	}
	if cfg.Timeout < 0 {
		bad("Config.Timeout must not be negative")
	}
	headers := make(http.Header)
	for name, value := range cfg.Headers {
		canon := textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name))
		switch {
		case !validHeaderName(canon):
			bad("header %q is not a valid header name", name)
		case canon == "Content-Type" || canon == "Content-Length" || canon == "Host" ||
			strings.HasPrefix(canon, "X-Vigil-"):
			bad("header %s is set by Vigil and cannot be configured", canon)
		case strings.ContainsAny(value, "\r\n\x00"):
			// The value itself may be a credential: never quote it.
			bad("the value of header %s holds a line break or NUL", canon)
		default:
			headers.Set(canon, value)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	n := &Notifier{
		url:     cfg.URL,
		secret:  cfg.Secret,
		timeout: cfg.Timeout,
		headers: headers,
		now:     time.Now,
	}
	if n.timeout == 0 {
		n.timeout = DefaultTimeout
	}
	hc := http.Client{}
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	n.hc = &hc
	return n, nil
}

// Notify delivers one update of inc.
func (n *Notifier) Notify(ctx context.Context, inc *responders.Incident) error {
	if inc == nil || inc.ID == "" {
		return &responders.CallError{System: system, Op: op, Final: true, Msg: "incident has no id"}
	}
	body, err := Marshal(inc)
	if err != nil {
		return &responders.CallError{System: system, Op: op, Final: true, Msg: "encoding the incident: " + err.Error()}
	}
	ts := strconv.FormatInt(n.now().Unix(), 10)

	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return &responders.CallError{System: system, Op: op, Final: true, Msg: "cannot build the request; check responders.webhook.url"}
	}
	for name, values := range n.headers {
		req.Header[name] = append([]string(nil), values...)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil")
	req.Header.Set(HeaderTimestamp, ts)
	req.Header.Set(HeaderSignature, Sign(n.secret, ts, body))
	req.Header.Set(HeaderDelivery, inc.ID+"-"+strconv.Itoa(inc.Alerts))

	resp, err := n.hc.Do(req)
	if err != nil {
		return responders.TransportError(system, op, parent, ctx, n.timeout, err, n.redact)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))

	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code >= 300 && code < 400:
		return &responders.CallError{System: system, Op: op, Status: code, Final: true,
			Msg: "the receiver answered with a redirect, which is not followed; set responders.webhook.url to the final URL"}
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return &responders.CallError{System: system, Op: op, Status: code, Final: true,
			Msg: n.with("the receiver refused the request; check responders.webhook.secret and the headers the receiver expects", answer)}
	}
	return responders.HTTPError(system, op, code, resp.Header.Get("Retry-After"), n.now(), n.serverMessage(answer))
}

func (n *Notifier) with(s string, answer []byte) string {
	if m := n.serverMessage(answer); m != "" {
		return s + ": " + m
	}
	return s
}

// serverMessage is the receiver's answer made safe to quote: one line,
// at most maxServerMsg bytes, without the secret or header values.
func (n *Notifier) serverMessage(answer []byte) string {
	answer = bytes.TrimSpace(answer)
	if len(answer) == 0 {
		return ""
	}
	s := string(answer)
	var doc map[string]any
	if json.Unmarshal(answer, &doc) == nil {
		for _, k := range []string{"detail", "message", "error"} {
			if v, ok := doc[k].(string); ok {
				s = v
				break
			}
		}
	}
	s = strings.Join(strings.Fields(strings.ToValidUTF8(n.redact(s), "?")), " ")
	if len(s) > maxServerMsg {
		cut := maxServerMsg - len("...")
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

// redact removes the secret and the configured header values, which may be
// credentials a receiver echoes back.
func (n *Notifier) redact(s string) string {
	s = strings.ReplaceAll(s, n.secret, "[redacted]")
	for _, values := range n.headers {
		for _, v := range values {
			if len(v) >= 4 { // too short to be a credential, too common to replace
				s = strings.ReplaceAll(s, v, "[redacted]")
			}
		}
	}
	if u, err := url.Parse(n.url); err == nil && u.RawQuery != "" {
		s = strings.ReplaceAll(s, u.RawQuery, "[redacted]")
	}
	return s
}

// Marshal returns the body Notify sends for inc. HTML characters are not
// escaped, so a threshold reads "> 50" rather than "\u003e 50".
func Marshal(inc *responders.Incident) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(Document{Type: DocumentType, Version: DocumentVersion, Incident: NewPayload(inc)}); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Sign returns the X-Vigil-Signature value for a body signed at ts.
func Sign(secret, ts string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Errors of Verify.
var (
	ErrBadTimestamp = errors.New("webhook: X-Vigil-Timestamp is not a Unix time in seconds")
	ErrBadSignature = errors.New("webhook: X-Vigil-Signature does not match the body; check that the receiver uses the same secret and the raw body")
)

// Verify checks a delivery's signature: ts is the X-Vigil-Timestamp
// header, body the raw request body, sig the X-Vigil-Signature header. The
// comparison takes constant time. Verify does not judge the timestamp's
// age; receivers should also reject one more than a few minutes away from
// their clock.
func Verify(secret, ts string, body []byte, sig string) error {
	if _, err := strconv.ParseInt(ts, 10, 64); err != nil {
		return ErrBadTimestamp
	}
	if !hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sig)) {
		return ErrBadSignature
	}
	return nil
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}
