package responders

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Action kinds of the response contract (docs/responders.md).
const (
	OpenIncident     = "open_incident"
	RevokeKey        = "revoke_key"
	BlockIP          = "block_ip"
	Watch            = "watch"
	IsolateNamespace = "isolate_namespace"
	// RestoreKey, Unblock and LiftIsolation undo an action; they are
	// recorded like any other action.
	RestoreKey    = "restore_key"
	Unblock       = "unblock_ip"
	LiftIsolation = "lift_isolation"
)

// Incident is what on-call engineers read: one per rule and group while
// the attack goes on. It is written to ClickHouse before any action runs.
type Incident struct {
	ID           string
	Rule         string
	RuleHash     string // content hash of the rule
	RuleFileHash string // content hash of the rule file
	RuleFile     string
	Severity     int // 1 critical … 4 low
	SeverityName string
	PHI          bool
	Status       string // open or resolved
	Source       string // requests or audit
	// Group holds the alert's group values in the rule's order, as
	// "field=value" pairs; GroupJSON is the same as a JSON object.
	Group      []string
	GroupJSON  string
	Orgs       []string
	Namespaces []string
	// NamespaceOrgs maps a namespace of Namespaces to the org the evidence
	// saw it in, so that a namespace's target names its org (NamespaceOf)
	// when the incident spans several orgs.
	NamespaceOrgs map[string]string
	Keys          []string // API key ids
	AdminKeys     []string // the subset of Keys seen with ADMIN permission
	Addresses     []string // client IPs
	FirstEvent    time.Time
	LastEvent     time.Time
	SampleIDs     []string
	// Query selects the contributing events in ClickHouse; its parameters
	// ({name:Type}) are in QueryParams, so it can be run as is with
	// clickhouse-client --param_name=value.
	Query       string
	QueryParams map[string]string
	Threshold   string // the rule's condition as written
	Value       float64
	Alerts      int // alerts joined so far
	AlertKeys   []string
	Labels      map[string]string
	Actions     []string  // the actions planned for it
	Notes       []string  // e.g. that a human must isolate a namespace
	OpenedAt    time.Time // discovery, wall clock
	UpdatedAt   time.Time
	ResolvedAt  time.Time // zero while open
	// PHI clocks of the plan: individuals and HHS must be notified within
	// 60 days of discovery; the post-incident review is due 72 hours after
	// resolution.
	NotificationDue time.Time
	ReviewDue       time.Time
}

// Notifier opens or updates the incident where people see it (the
// open_incident action): Sentry, a webhook.
type Notifier interface {
	Notify(ctx context.Context, inc *Incident) error
}

// KeyAdmin sets an API key's status through the platform's admin API:
// "revoked" to revoke it, "active" to restore it.
type KeyAdmin interface {
	SetKeyStatus(ctx context.Context, keyID, status string) error
}

// Namespace names one namespace of one organization.
type Namespace struct {
	Org, ID string // Org is "" when it is unknown
}

// Target is the one form a namespace takes as an action's target
// (isolate_namespace, lift_isolation, and watch after "namespace:"):
// "org/namespace", or the bare id when the org is unknown. The in-force
// check and the undo commands compare targets as strings, so every path
// must build them here.
func (ns Namespace) Target() string {
	if ns.Org == "" {
		return ns.ID
	}
	return ns.Org + "/" + ns.ID
}

// ParseNamespace reads a namespace target: "org/namespace" or a bare id.
func ParseNamespace(target string) Namespace {
	if org, id, ok := strings.Cut(target, "/"); ok {
		return Namespace{Org: org, ID: id}
	}
	return Namespace{ID: target}
}

// sameNamespace reports whether two namespace targets name one namespace:
// equal, or the same id where one has no org. A bare target is what was
// stored when the org was unknown (and by versions before targets carried
// the org); treating it as the org's namespace keeps an isolation in force
// and lets a lift of either form end it.
func sameNamespace(a, b string) bool {
	if a == b {
		return true
	}
	na, nb := ParseNamespace(a), ParseNamespace(b)
	return na.ID == nb.ID && (na.Org == "" || nb.Org == "")
}

// NamespaceOf names one of the incident's namespaces with its org: the
// group's org_id when the rule groups by it (every event of the incident
// is that org's), else the org the evidence saw it in, else none.
func (inc *Incident) NamespaceOf(id string) Namespace {
	for _, pair := range inc.Group {
		if org, ok := strings.CutPrefix(pair, "org_id="); ok && org != "" {
			return Namespace{Org: org, ID: id}
		}
	}
	return Namespace{Org: inc.NamespaceOrgs[id], ID: id}
}

// Isolator cuts a namespace's access and restores it.
type Isolator interface {
	Isolate(ctx context.Context, ns Namespace) error
	Lift(ctx context.Context, ns Namespace) error
}

// Block is one address range blocked at the edge until a time.
type Block struct {
	Prefix     netip.Prefix // a /32 for IPv4, a /64 for IPv6
	IncidentID string
	Until      time.Time
}

// Comment is the text stored with the block at the edge: it names the
// incident and the expiry, and marks the item as Vigil's.
func (b Block) Comment() string {
	return fmt.Sprintf("vigil incident=%s expires=%s", b.IncidentID, b.Until.UTC().Format(time.RFC3339))
}

// EdgeItem is a block as read back from the edge.
type EdgeItem struct {
	Prefix  netip.Prefix
	Comment string
	ID      string // the edge's own item id
}

// Blocker blocks address ranges at the edge. Implementations batch
// writes and are idempotent: blocking a range already blocked, or
// unblocking one that is not, succeeds without a second write.
type Blocker interface {
	Block(ctx context.Context, blocks []Block) error
	Unblock(ctx context.Context, prefixes []netip.Prefix) error
	// Items lists the ranges Vigil has blocked (items whose comment starts
	// with "vigil "), for reconciliation.
	Items(ctx context.Context) ([]EdgeItem, error)
}

// BlockPrefix returns the range blocked for an address: the address
// itself for IPv4, its /64 for IPv6 (one host usually owns a whole /64).
func BlockPrefix(addr netip.Addr) netip.Prefix {
	addr = addr.Unmap()
	if addr.Is4() {
		return netip.PrefixFrom(addr, 32)
	}
	p, _ := addr.Prefix(64)
	return p
}

// CallError is a failed call to an external system. Its message never
// holds a credential.
type CallError struct {
	System string // cloudflare, admin-api, sentry, webhook
	Op     string // what was attempted, e.g. "PATCH /v1/organizations/api-keys/{key_id}"
	Status int    // HTTP status; 0 when there was no response
	// Final says retrying cannot help (a 4xx other than 408 and 429, or a
	// malformed answer to a request that was understood).
	Final bool
	// RetryAfter is the wait a 429 or 503 asked for; 0 when none.
	RetryAfter time.Duration
	Msg        string
}

func (e *CallError) Error() string {
	s := e.System + ": " + e.Op
	if e.Status != 0 {
		s += fmt.Sprintf(": HTTP %d", e.Status)
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// IsFinal reports whether retrying err cannot help.
func IsFinal(err error) bool {
	var ce *CallError
	return errors.As(err, &ce) && ce.Final
}

// RetryAfter returns the wait err asked for, or 0.
func RetryAfter(err error) time.Duration {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.RetryAfter
	}
	return 0
}

// StatusOf returns the HTTP status of a CallError, or 0.
func StatusOf(err error) int {
	var ce *CallError
	if errors.As(err, &ce) {
		return ce.Status
	}
	return 0
}

// HTTPError builds the CallError for an HTTP answer: 408, 429 and 5xx are
// retryable, other 4xx final. retryAfter is the Retry-After header value
// (seconds or an HTTP date); now is used for the date form.
func HTTPError(system, op string, status int, retryAfter string, now time.Time, msg string) *CallError {
	e := &CallError{System: system, Op: op, Status: status, Msg: msg}
	e.Final = status >= 400 && status < 500 && status != 408 && status != 429
	e.RetryAfter = ParseRetryAfter(retryAfter, now)
	return e
}

// TransportError is the CallError for a request that got no answer: the
// caller gave up (caller ended), the attempt timed out (attempt ended
// after timeout), or the connection failed. The URL of a *url.Error is
// never quoted (its query or userinfo may hold a credential), only the
// cause, passed through clean to remove anything else secret.
func TransportError(system, op string, caller, attempt context.Context, timeout time.Duration, err error, clean func(string) string) *CallError {
	ce := &CallError{System: system, Op: op}
	switch {
	case caller.Err() != nil:
		ce.Msg = "canceled by the caller before an answer arrived"
	case attempt.Err() != nil:
		ce.Msg = fmt.Sprintf("no answer within %s", timeout)
	default:
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		ce.Msg = clean(err.Error())
	}
	return ce
}

// ParseRetryAfter reads a Retry-After header: delay-seconds or an HTTP date.
// It returns 0 for an empty or unreadable value, and caps the wait at 10 minutes.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	var d time.Duration
	var secs int
	if _, err := fmt.Sscanf(v, "%d", &secs); err == nil && secs >= 0 {
		d = time.Duration(secs) * time.Second
	} else if t, err := time.Parse(time.RFC1123, v); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		d = 0
	}
	return min(d, 10*time.Minute)
}

// GroupKey is the canonical text of an incident's group: its "field=value"
// pairs in the rule's order, joined by commas, with "%" and "," inside a
// pair percent-escaped so that no two groups share a key. Sentry
// fingerprints and webhook deliveries use the same text.
func GroupKey(group []string) string {
	esc := strings.NewReplacer("%", "%25", ",", "%2C")
	parts := make([]string, len(group))
	for i, pair := range group {
		parts[i] = esc.Replace(pair)
	}
	return strings.Join(parts, ",")
}

// GroupHash is the hex SHA-256 of GroupKey(group), or "" for no group: it
// stands in for the group values of PHI incidents, so a Sentry issue and a
// webhook delivery of one incident can be matched. Low-entropy values (an
// IP address) can be recovered from it by trying candidates: it keeps
// values out of sight, not out of reach.
func GroupHash(group []string) string {
	if len(group) == 0 {
		return ""
	}
	sum := sha256.Sum256([]byte(GroupKey(group)))
	return hex.EncodeToString(sum[:])
}
