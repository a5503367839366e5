// Package cloudflare carries out the block_ip action at Cloudflare's edge:
// it implements responders.Blocker with the cloudflare-go SDK, whose types
// never leave this package (the API speaks responders.Block,
// responders.EdgeItem and netip.Prefix).
//
// There are two modes:
//
//   - list (the default): blocked ranges are items of an account-level IP
//     List (ListName, default vigil_blocked), and one WAF custom rule in the
//     zone's http_request_firewall_custom phase blocks `ip.src in
//     $vigil_blocked`. The list and the rule are created when missing (by
//     Ensure, or lazily by the first call) and never duplicated; the rule is
//     appended to the zone's entrypoint ruleset without touching the rules
//     already there. Without a ZoneID only the list is managed: the operator
//     then references $vigil_blocked in a rule of their own (in any zone of
//     the account). The token needs Account → Account Filter Lists → Edit,
//     plus Zone → Zone WAF → Edit for the rule.
//   - access_rules: each range is a zone IP Access Rule with mode block
//     ("ip" target for IPv4 addresses, "ip_range" with the /64 for IPv6).
//     The token needs Zone → Firewall Services → Edit.
//
// List writes are asynchronous at Cloudflare: an append or delete returns an
// operation id, and an account may have only one bulk operation pending — a
// second write is refused with 429 until the first finishes. So list writes
// are serialized and each is awaited (polling its status) before the next,
// which also means a Block that returned nil has taken effect. An operation
// still pending when BulkTimeout runs out is awaited by the next call.
//
// Items carrying a comment that starts with "vigil " are Vigil's; Unblock
// and Items ignore all others, so ranges an operator blocked by hand stay.
// Every request, SDK retries included, first waits on a client-side rate
// limiter (RequestsPer5Min), because Cloudflare's limit is per token and
// exceeding it locks the token out for minutes. This package does not
// retry beyond the SDK's MaxRetries: it returns a *responders.CallError and
// the responder's queue decides.
//
// It does not use the legacy v0 SDK nor the retired Firewall Rules API.
package cloudflare

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/vigil-sec/vigil/responders"
)

// Client blocks address ranges at Cloudflare. It is safe for concurrent
// use; calls are serialized.
type Client struct {
	log   *slog.Logger
	store store

	mu     sync.Mutex // serializes set-up, writes and cache refreshes
	loaded bool       // cache holds what the edge held at the last read
	// cache maps every range at the edge (Vigil's or not) to its item, so
	// that Block skips ranges already present without reading the whole
	// list each time. Items refreshes it; a failed write drops it.
	cache map[netip.Prefix]entry
}

var _ responders.Blocker = (*Client)(nil)

// store is one of the two ways of keeping ranges at the edge.
type store interface {
	// setup makes sure what the writes need exists (the list and its WAF
	// rule); it is called before every operation and remembers success.
	setup(ctx context.Context) error
	// list reads every range at the edge.
	list(ctx context.Context) ([]entry, error)
	// add writes new ranges; the entries it returns may lack their id.
	add(ctx context.Context, blocks []responders.Block) ([]entry, error)
	// remove deletes the given items.
	remove(ctx context.Context, entries []entry) error
}

// entry is one range at the edge.
type entry struct {
	prefix  netip.Prefix
	id      string // empty when written but not read back yet
	comment string
}

// New checks cfg and returns a client. It makes no request: call Ensure at
// start to create the list and rule and to check the token.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	a := newAPI(cfg)
	c := &Client{log: cfg.Logger, cache: map[netip.Prefix]entry{}}
	switch cfg.Mode {
	case ModeAccessRules:
		c.store = &accessRuleStore{api: a, zoneID: cfg.ZoneID}
	default:
		c.store = &listStore{
			api:         a,
			log:         cfg.Logger,
			accountID:   cfg.AccountID,
			zoneID:      cfg.ZoneID,
			name:        cfg.ListName,
			description: cfg.RuleDescription,
			pollEvery:   cfg.BulkPollInterval,
			pollFor:     cfg.BulkTimeout,
		}
	}
	return c, nil
}

// Ensure creates what blocking needs when it is missing (in list mode the
// IP list and, with a ZoneID, the WAF rule) and reads the current items,
// which also proves the token works. The daemon calls it at start; Block,
// Unblock and Items do the same lazily.
func (c *Client) Ensure(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.prepare(ctx)
}

// Block adds the ranges not yet at the edge, each with b.Comment(). An
// IPv4 block must be a single address; an IPv6 one is widened to its /64.
func (c *Client) Block(ctx context.Context, blocks []responders.Block) error {
	todo := make([]responders.Block, 0, len(blocks))
	seen := make(map[netip.Prefix]bool, len(blocks))
	for _, b := range blocks {
		p, err := edgePrefix(b.Prefix)
		if err != nil {
			return invalid("block", err)
		}
		if !seen[p] {
			seen[p] = true
			b.Prefix = p
			todo = append(todo, b)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.prepare(ctx); err != nil {
		return err
	}
	todo = slices.DeleteFunc(todo, func(b responders.Block) bool {
		_, ok := c.cache[b.Prefix]
		return ok
	})
	if len(todo) == 0 {
		return nil
	}
	added, err := c.store.add(ctx, todo)
	if err != nil {
		// Part of the batch may have been written: read the edge again
		// before the next write instead of guessing.
		c.loaded = false
		return err
	}
	for _, e := range added {
		c.cache[e.prefix] = e
	}
	c.log.Info("cloudflare: blocked", "ranges", len(added))
	return nil
}

// Unblock deletes Vigil's items for the given ranges. Ranges not at the
// edge, or blocked there by someone else, are left alone.
func (c *Client) Unblock(ctx context.Context, prefixes []netip.Prefix) error {
	want := make(map[netip.Prefix]bool, len(prefixes))
	for _, p := range prefixes {
		p, err := edgePrefix(p)
		if err != nil {
			return invalid("unblock", err)
		}
		want[p] = true
	}
	if len(want) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.prepare(ctx); err != nil {
		return err
	}
	gone, idMissing := c.vigilEntries(want)
	if idMissing {
		// Appends do not return item ids; read them.
		if _, err := c.refresh(ctx); err != nil {
			return err
		}
		gone, _ = c.vigilEntries(want)
	}
	if len(gone) == 0 {
		return nil
	}
	if err := c.store.remove(ctx, gone); err != nil {
		c.loaded = false
		return err
	}
	for _, e := range gone {
		delete(c.cache, e.prefix)
	}
	c.log.Info("cloudflare: unblocked", "ranges", len(gone))
	return nil
}

// Items reads the edge and returns Vigil's items (comment "vigil …").
func (c *Client) Items(ctx context.Context) ([]responders.EdgeItem, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.store.setup(ctx); err != nil {
		return nil, err
	}
	entries, err := c.refresh(ctx)
	if err != nil {
		return nil, err
	}
	var items []responders.EdgeItem
	for _, e := range entries {
		if isVigil(e.comment) {
			items = append(items, responders.EdgeItem{Prefix: e.prefix, Comment: e.comment, ID: e.id})
		}
	}
	return items, nil
}

// prepare runs the store's set-up and fills the cache if needed.
func (c *Client) prepare(ctx context.Context) error {
	if err := c.store.setup(ctx); err != nil {
		return err
	}
	if c.loaded {
		return nil
	}
	_, err := c.refresh(ctx)
	return err
}

// refresh replaces the cache with what the edge holds.
func (c *Client) refresh(ctx context.Context) ([]entry, error) {
	entries, err := c.store.list(ctx)
	if err != nil {
		c.loaded = false
		return nil, err
	}
	clear(c.cache)
	for _, e := range entries {
		c.cache[e.prefix] = e
	}
	c.loaded = true
	return entries, nil
}

// vigilEntries returns the cached items of Vigil for the wanted ranges,
// and whether one of them has no known id yet.
func (c *Client) vigilEntries(want map[netip.Prefix]bool) (found []entry, idMissing bool) {
	for p := range want {
		e, ok := c.cache[p]
		if !ok || !isVigil(e.comment) {
			continue
		}
		found = append(found, e)
		idMissing = idMissing || e.id == ""
	}
	return found, idMissing
}

func isVigil(comment string) bool { return strings.HasPrefix(comment, "vigil ") }

// edgePrefix is the range written for p: a single IPv4 address, or the /64
// holding an IPv6 range (Cloudflare lists take no IPv6 prefix longer than
// /64, and one host usually owns the whole /64).
func edgePrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid range %v", p)
	}
	a, bits := p.Addr(), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	if a.Is4() {
		if bits != 32 {
			return netip.Prefix{}, fmt.Errorf("%v is a range; only single IPv4 addresses (/32) are blocked", p)
		}
		return netip.PrefixFrom(a, 32), nil
	}
	if bits < 64 {
		return netip.Prefix{}, fmt.Errorf("%v is wider than a /64; block single hosts' /64s", p)
	}
	return netip.PrefixFrom(a, 64).Masked(), nil
}

// edgeValue is how Cloudflare is given the range: an IPv4 address bare,
// an IPv6 range as CIDR.
func edgeValue(p netip.Prefix) string {
	if p.Addr().Is4() {
		return p.Addr().String()
	}
	return p.String()
}

// parseEdgeValue reads an address or CIDR as Cloudflare returns it. A bare
// address is a full-length prefix.
func parseEdgeValue(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}

// invalid is the error for a range that cannot be blocked: retrying the
// same call cannot help.
func invalid(op string, err error) error {
	return &responders.CallError{System: system, Op: op, Final: true, Msg: err.Error()}
}
