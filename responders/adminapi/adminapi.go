// Package adminapi calls the platform's admin API for the revoke_key,
// restore_key, isolate_namespace and lift_isolation actions.
//
// The operator configures the API's base URL (responders.admin_api.url)
// and a bearer token (responders.admin_api.token, from an environment
// variable or a file, never from rule files). The token needs the right to
// change the status of API keys of every organization Vigil protects
// (PATCH /v1/organizations/api-keys/{key_id}) and, when isolation is
// configured, to call the configured namespace endpoint; nothing else is
// called, so a token limited to those two scopes is enough.
//
// The plan names no endpoint for namespace isolation, so its method, path
// and body are templates (responders.admin_api.isolate.*) checked when the
// client is built. Without them Client.Isolator returns nil and the caller
// records the action as not configured.
//
// Every call makes exactly one attempt and returns a *responders.CallError;
// retrying with backoff is the dispatcher's job, not this package's. The
// token never appears in an error.
package adminapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-sec/vigil/responders"
)

const (
	// DefaultTimeout bounds one request when Config.Timeout is zero, so a
	// server that accepts the connection and never answers cannot hold a
	// dispatcher worker forever.
	DefaultTimeout = 10 * time.Second

	system = "admin-api"
	keyOp  = "PATCH /v1/organizations/api-keys/{key_id}"

	// Answers are read up to this size: enough for any error document,
	// small enough that a misbehaving server cannot exhaust memory.
	maxAnswer = 64 << 10
	// maxServerMsg caps the server's own words quoted in an error.
	maxServerMsg = 200
)

// Key statuses accepted by SetKeyStatus.
const (
	StatusRevoked = "revoked"
	StatusActive  = "active"
)

// Config configures a Client.
type Config struct {
	// BaseURL is the admin API's root, e.g. https://admin.example.com;
	// paths are appended to it. Required.
	BaseURL string
	// Token is the bearer token. Required; it never appears in errors.
	Token string
	// Timeout bounds each request; DefaultTimeout when zero.
	Timeout time.Duration
	// HTTPClient sends the requests; a plain http.Client when nil.
	HTTPClient *http.Client
	// Isolate configures namespace isolation; nil leaves it unconfigured.
	Isolate *IsolateConfig
}

// IsolateConfig describes the request that isolates a namespace and the
// one that lifts the isolation. Paths and bodies may name the placeholders
// {namespace_id} and {org_id}: in a path they are replaced by the
// path-escaped value, in a body by the JSON-string-escaped value, so in a
// body they belong inside a JSON string ("{namespace_id}").
type IsolateConfig struct {
	// Method is PATCH (default), POST, PUT or DELETE.
	Method string
	// Path is appended to BaseURL, e.g. /v1/namespaces/{namespace_id}.
	// Required.
	Path string
	// Body is the JSON request body, e.g. {"status":"isolated"}; empty
	// sends no body.
	Body string
	// LiftMethod, LiftPath and LiftBody describe the request that restores
	// access; LiftMethod defaults to Method and LiftPath to Path. LiftBody,
	// e.g. {"status":"active"}, is required when Body is set and the lift
	// is not a DELETE.
	LiftMethod string
	LiftPath   string
	LiftBody   string
}

// Client calls the admin API. It is safe for concurrent use.
type Client struct {
	base    string // BaseURL without a trailing slash
	token   string
	timeout time.Duration
	hc      *http.Client
	isolate *request // nil when isolation is not configured
	lift    *request
	now     func() time.Time
}

var (
	_ responders.KeyAdmin = (*Client)(nil)
	_ responders.Isolator = (*Client)(nil)
)

// New checks cfg and returns a Client. Every problem is reported, each
// naming the configuration key to fix.
func New(cfg Config) (*Client, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("admin API: "+format, args...))
	}

	base := strings.TrimRight(strings.TrimSpace(cfg.BaseURL), "/")
	if base == "" {
		bad("responders.admin_api.url is empty; set it to the admin API's root URL, e.g. https://admin.example.com")
	} else if u, err := url.Parse(base); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("responders.admin_api.url must be an absolute http or https URL, e.g. https://admin.example.com")
	} else if u.User != nil {
		bad("responders.admin_api.url must not hold credentials; put the token in responders.admin_api.token")
	} else if u.RawQuery != "" || u.Fragment != "" {
		bad("responders.admin_api.url must not have a query or fragment")
	}
	if cfg.Token == "" {
		bad("responders.admin_api.token is empty; set it to an admin API bearer token allowed to change API keys")
	}
	if cfg.Timeout < 0 {
		bad("Config.Timeout must not be negative")
	}

	c := &Client{
		base:    base,
		token:   cfg.Token,
		timeout: cfg.Timeout,
		hc:      cfg.HTTPClient,
		now:     time.Now,
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	if cfg.Isolate != nil {
		var err error
		c.isolate, c.lift, err = parseIsolate(*cfg.Isolate)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

// Isolator returns c as a responders.Isolator, or nil when isolation is not
// configured, so the caller can record the action as not configured
// instead of calling an endpoint nobody named.
func (c *Client) Isolator() responders.Isolator {
	if c.isolate == nil {
		return nil
	}
	return c
}

// NeedsOrg reports whether the isolation or lift request names the
// namespace's org ({org_id}): the responders then leave a namespace whose
// org is unknown to a human instead of sending a call that cannot work.
func (c *Client) NeedsOrg() bool {
	return c.isolate != nil && (c.isolate.needsOrg || c.lift != nil && c.lift.needsOrg)
}

// SetKeyStatus sets an API key's status: StatusRevoked or StatusActive. A
// 409 answer means the key already had that status; IsAlreadyInState tells
// it apart from other failures.
func (c *Client) SetKeyStatus(ctx context.Context, keyID, status string) error {
	if status != StatusRevoked && status != StatusActive {
		return &responders.CallError{System: system, Op: keyOp, Final: true,
			Msg: fmt.Sprintf("status %q is not %q or %q", status, StatusRevoked, StatusActive)}
	}
	if err := checkID(keyID); err != nil {
		return &responders.CallError{System: system, Op: keyOp, Final: true, Msg: "key id " + err.Error()}
	}
	body, _ := json.Marshal(struct {
		Status string `json:"status"`
	}{status})
	code, answer, err := c.do(ctx, http.MethodPatch, keyOp,
		"/v1/organizations/api-keys/"+url.PathEscape(keyID), body,
		"key not found", "conflict: key already in that state")
	if err != nil {
		return err
	}
	answer = bytes.TrimSpace(answer)
	if len(answer) == 0 {
		return nil
	}
	var got struct {
		Status *string `json:"status"`
	}
	if err := json.Unmarshal(answer, &got); err != nil {
		// The request was understood and probably applied, so repeating
		// it blindly is not the fix; a person should look.
		return &responders.CallError{System: system, Op: keyOp, Status: code, Final: true,
			Msg: "malformed answer (not JSON); the key's status may have changed, check it in the admin API before acting again"}
	}
	if got.Status != nil && *got.Status != status {
		return &responders.CallError{System: system, Op: keyOp, Status: code, Final: true,
			Msg: fmt.Sprintf("the admin API answered status %s, want %q; check the key by hand", quoteTrim(*got.Status), status)}
	}
	return nil
}

// Isolate cuts a namespace's access with the configured request.
func (c *Client) Isolate(ctx context.Context, ns responders.Namespace) error {
	return c.namespaceCall(ctx, c.isolate, ns)
}

// Lift restores a namespace's access with the configured lift request.
func (c *Client) Lift(ctx context.Context, ns responders.Namespace) error {
	return c.namespaceCall(ctx, c.lift, ns)
}

// IsAlreadyInState reports whether err is the admin API's 409: the key or
// namespace already has the status asked for, so the action's effect is
// already in place.
func IsAlreadyInState(err error) bool {
	var ce *responders.CallError
	return errors.As(err, &ce) && ce.System == system && ce.Status == http.StatusConflict
}

func (c *Client) namespaceCall(ctx context.Context, r *request, ns responders.Namespace) error {
	if r == nil {
		return &responders.CallError{System: system, Op: "isolate_namespace", Final: true,
			Msg: "namespace isolation is not configured; set responders.admin_api.isolate.path (and method, body, lift_body)"}
	}
	if err := checkID(ns.ID); err != nil {
		return &responders.CallError{System: system, Op: r.op, Final: true, Msg: "namespace id " + err.Error()}
	}
	if r.needsOrg && ns.Org == "" {
		return &responders.CallError{System: system, Op: r.op, Final: true,
			Msg: "the namespace has no org id, which the configured template needs ({org_id})"}
	}
	path, body := r.expand(ns)
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	_, _, err := c.do(ctx, r.method, r.op, path, b,
		"namespace not found", "conflict: namespace already in that state")
	return err
}

// do sends one request and turns every failure into a CallError. It
// returns the status and the (size-capped) answer of a 2xx.
func (c *Client) do(ctx context.Context, method, op, path string, body []byte, notFound, conflict string) (int, []byte, error) {
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return 0, nil, &responders.CallError{System: system, Op: op, Final: true,
			Msg: "cannot build the request; check responders.admin_api.url"}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "vigil")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, responders.TransportError(system, op, parent, ctx, c.timeout, err, c.redact)
	}
	defer resp.Body.Close()
	answer, readErr := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	// Drain what is left so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))

	code := resp.StatusCode
	if code >= 200 && code < 300 {
		if readErr != nil {
			// The change was probably applied; a retry will say so with 409.
			return code, nil, &responders.CallError{System: system, Op: op, Status: code,
				Msg: "answer cut short: " + c.redact(readErr.Error())}
		}
		return code, answer, nil
	}

	msg := c.serverMessage(answer)
	with := func(s string) string {
		if msg == "" {
			return s
		}
		return s + ": " + msg
	}
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return code, nil, &responders.CallError{System: system, Op: op, Status: code, Final: true,
			Msg: with("token rejected; check responders.admin_api.token and that it may change API keys and namespaces")}
	case http.StatusNotFound:
		return code, nil, &responders.CallError{System: system, Op: op, Status: code, Final: true, Msg: with(notFound)}
	case http.StatusConflict:
		return code, nil, &responders.CallError{System: system, Op: op, Status: code, Final: true, Msg: with(conflict)}
	}
	return code, nil, responders.HTTPError(system, op, code, resp.Header.Get("Retry-After"), c.now(), msg)
}

// serverMessage extracts the server's explanation from an error answer:
// the usual JSON fields, else the text itself, trimmed.
func (c *Client) serverMessage(answer []byte) string {
	answer = bytes.TrimSpace(answer)
	if len(answer) == 0 {
		return ""
	}
	var doc map[string]any
	if json.Unmarshal(answer, &doc) == nil {
		for _, k := range []string{"detail", "message", "error", "title"} {
			switch v := doc[k].(type) {
			case string:
				return trimMsg(c.redact(v))
			case map[string]any:
				if m, ok := v["message"].(string); ok {
					return trimMsg(c.redact(m))
				}
			}
		}
	}
	return trimMsg(c.redact(string(answer)))
}

// redact removes the token, in case a server or proxy echoes the
// Authorization header back.
func (c *Client) redact(s string) string {
	if c.token == "" {
		return s
	}
	return strings.ReplaceAll(s, c.token, "[redacted]")
}

// trimMsg makes s one line of at most maxServerMsg bytes.
func trimMsg(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), " ")
	if len(s) <= maxServerMsg {
		return s
	}
	cut := maxServerMsg - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func quoteTrim(s string) string { return fmt.Sprintf("%q", trimMsg(s)) }

// checkID rejects ids that would address another resource once the path
// is normalized by a proxy.
func checkID(id string) error {
	switch id {
	case "":
		return errors.New("is empty")
	case ".", "..":
		return fmt.Errorf("%q is not a valid id", id)
	}
	return nil
}
