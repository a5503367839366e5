package responders

import (
	"net/netip"
	"time"
)

// Guard names, as recorded in the actions table when one skips an action.
const (
	GuardPaused        = "paused"         // the kill switch is on
	GuardNotConfigured = "not_configured" // no system is configured for this action
	GuardInvalid       = "invalid_target" // the target is not an address or key
	GuardAllowlist     = "allowlist"      // the address or key is allowlisted
	GuardAdminKey      = "admin_key"      // an ADMIN key and the rule does not allow_admin_revoke
	GuardInForce       = "in_force"       // the same action on the same target is still in force
	GuardIncidentCap   = "incident_cap"   // the per-incident cap of this kind is spent
	GuardRateCap       = "rate_cap"       // the per-minute cap of this kind is spent
	GuardBreaker       = "breaker"        // the circuit breaker is open
	GuardNoTarget      = "no_target"      // the incident names nothing to act on
	GuardUnknownOrg    = "unknown_org"    // the namespace's org is unknown and the isolation call needs it
)

// alwaysAllowed are the ranges never blocked whatever the configuration
// says: private networks, loopback, link-local (which holds the cloud
// metadata address 169.254.169.254) and their IPv6 counterparts.
var alwaysAllowed = []string{
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16", "0.0.0.0/8",
	"::1/128", "fe80::/10", "fc00::/7", "::/128",
}

// allowlist holds the ranges and keys no action may touch.
type allowlist struct {
	prefixes []netip.Prefix
	keys     map[string]bool
}

func newAllowlist(cidrs []netip.Prefix, keys []string) allowlist {
	a := allowlist{keys: map[string]bool{}}
	for _, c := range alwaysAllowed {
		a.prefixes = append(a.prefixes, netip.MustParsePrefix(c))
	}
	a.prefixes = append(a.prefixes, cidrs...)
	for _, k := range keys {
		a.keys[k] = true
	}
	return a
}

// blocked reports whether a block of p would touch an allowlisted range.
func (a allowlist) protects(p netip.Prefix) bool {
	for _, q := range a.prefixes {
		if q.Overlaps(p) {
			return true
		}
	}
	return false
}

// slidingCount counts events in the last minute.
type slidingCount struct {
	times []time.Time
}

func (s *slidingCount) count(now time.Time) int {
	cut := now.Add(-time.Minute)
	i := 0
	for i < len(s.times) && !s.times[i].After(cut) {
		i++
	}
	s.times = s.times[i:]
	return len(s.times)
}

func (s *slidingCount) add(now time.Time) { s.times = append(s.times, now) }

// breaker opens when too many actions or too many errors happen within a
// minute, and stays open for a cool-down: a burst of alerts must not turn
// into a burst of blocks, and a failing system must not be hammered.
type breaker struct {
	maxActions, maxErrors int
	cooldown              time.Duration
	actions, errors       slidingCount
	openUntil             time.Time
}

// allow reports whether an action may be sent now, counting it if so; the
// second result is true when this call tripped the breaker.
func (b *breaker) allow(now time.Time) (ok, tripped bool) {
	if now.Before(b.openUntil) {
		return false, false
	}
	if b.actions.count(now) >= b.maxActions {
		b.openUntil = now.Add(b.cooldown)
		return false, true
	}
	b.actions.add(now)
	return true, false
}

// failure counts an error; it reports whether this one tripped the breaker.
func (b *breaker) failure(now time.Time) bool {
	b.errors.add(now)
	if now.Before(b.openUntil) || b.errors.count(now) < b.maxErrors {
		return false
	}
	b.openUntil = now.Add(b.cooldown)
	return true
}

func (b *breaker) isOpen(now time.Time) bool { return now.Before(b.openUntil) }
