package responders

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/rules"
)

// GuardAlert is the kind recorded when a cap or the breaker trips: the
// guard raises an alert about itself (logged at error level, sent to the
// notifiers, written to the action log).
const GuardAlert = "guard_alert"

// Raised is the outcome of a guard alert.
const Raised = "raised"

// targets returns what an action of kind acts on for an incident: the
// group's value of the field when the rule groups by it, else what the
// evidence names. Namespaces are in their target form, with their org
// (Namespace.Target).
func (r *Responder) targets(kind string, inc *Incident, a Alert) []string {
	pick := func(field string, fromEvidence []string) []string {
		if v := a.value(field); v != "" {
			return []string{v}
		}
		return fromEvidence
	}
	namespaces := func() []string {
		ids := pick("namespace", inc.Namespaces)
		out := make([]string, len(ids))
		for i, id := range ids {
			out[i] = inc.NamespaceOf(id).Target()
		}
		return out
	}
	switch kind {
	case OpenIncident:
		return sortedNames(r.sys.Notifiers)
	case RevokeKey:
		return pick("api_key_id", inc.Keys)
	case BlockIP:
		return pick("ip", inc.Addresses)
	case IsolateNamespace:
		return namespaces()
	case Watch:
		var out []string
		for _, k := range pick("api_key_id", inc.Keys) {
			out = append(out, "key:"+k)
		}
		for _, ns := range namespaces() {
			out = append(out, "namespace:"+ns)
		}
		return out
	}
	return nil
}

// needsOrg reports whether the isolation calls name the namespace's org
// ({org_id} in responders.admin_api.isolate): then a namespace whose org
// is unknown cannot be isolated, nor lifted, by Vigil.
func (r *Responder) needsOrg() bool {
	n, ok := r.sys.Isolator.(interface{ NeedsOrg() bool })
	return ok && n.NeedsOrg()
}

// inForceOn returns the action of kind in force on target. A namespace
// target also matches the same namespace stored without its org, and a
// bare one the namespace with any org (sameNamespace). Callers hold r.mu.
func (r *Responder) inForceOn(kind, target string, now time.Time) (ActionRecord, bool) {
	valid := func(a ActionRecord) bool {
		// A watch lapses at its expiry, even before the expiry pass drops it.
		return kind != Watch || a.ExpiresAt.After(now)
	}
	if a, ok := r.inForce[kind+"\x1f"+target]; ok {
		return a, valid(a)
	}
	prefix := ""
	if kind == Watch {
		prefix = "namespace:"
	} else if kind != IsolateNamespace {
		return ActionRecord{}, false
	}
	ns, ok := strings.CutPrefix(target, prefix)
	if !ok {
		return ActionRecord{}, false
	}
	if n := ParseNamespace(ns); n.Org != "" {
		a, ok := r.inForce[kind+"\x1f"+prefix+n.ID]
		return a, ok && valid(a)
	}
	// A bare target (org unknown) is rare: scanning is cheap enough.
	for _, a := range r.inForce {
		if other, ok := strings.CutPrefix(a.Target, prefix); ok && a.Kind == kind && sameNamespace(ns, other) && valid(a) {
			return a, true
		}
	}
	return ActionRecord{}, false
}

func sortedNames(m map[string]Notifier) []string {
	set := map[string]bool{}
	for k := range m {
		set[k] = true
	}
	return sortedKeys(set)
}

// plan runs the guards over every action of the alert, records what they
// decided, and hands what may be sent to the workers. Everything that
// will be sent is recorded as planned first, so a crash cannot lose the
// fact that a call may have gone out.
func (r *Responder) plan(ctx context.Context, inc *Incident, a Alert, rule *rules.Rule) {
	now := r.cfg.Now().UTC()
	dry := r.dryRun.Load() || (rule != nil && rule.DryRun)
	var recs []ActionRecord
	var ledger []BlockRecord
	var jobs []job
	var raise []string
	record := func(kind, target, outcome, guard, detail string) {
		recs = append(recs, ActionRecord{At: now, IncidentID: inc.ID, Kind: kind, Target: target, Outcome: outcome, Guard: guard, Detail: detail})
	}
	// The ledger is read before taking the lock: no ClickHouse round trip
	// while the workers and /metrics wait for it.
	offenses := map[string]int{}
	if !dry && slices.Contains(a.Actions, BlockIP) {
		for _, t := range r.targets(BlockIP, inc, a) {
			if addr, err := netip.ParseAddr(t); err == nil {
				if p := BlockPrefix(addr); !r.allow.protects(p) {
					offenses[p.String()] = r.offense(ctx, p.String(), now)
				}
			}
		}
	}
	r.mu.Lock()
	for _, kind := range a.Actions {
		targets := r.targets(kind, inc, a)
		if len(targets) == 0 {
			guard := GuardNoTarget
			if kind == OpenIncident {
				guard = GuardNotConfigured
			}
			record(kind, "", Skipped, guard, "")
			continue
		}
		var blockJob *job
		for _, t := range targets {
			g, prefix, detail := r.check(kind, t, inc, rule, dry, now)
			if g == GuardIncidentCap || g == GuardRateCap || g == GuardBreaker {
				raise = append(raise, g+":"+kind)
			}
			switch {
			case g != "":
				record(kind, t, Skipped, g, detail)
				r.Stats.Skipped.Add(1)
			case dry:
				record(kind, t, DryRun, "", detail)
			case kind == Watch:
				until := now.Add(r.cfg.WatchTTL)
				rec := ActionRecord{At: now, IncidentID: inc.ID, Kind: kind, Target: t, Outcome: Succeeded,
					Detail: "enhanced logging until " + until.Format(time.RFC3339), ExpiresAt: until}
				recs = append(recs, rec)
				r.inForce[kind+"\x1f"+t] = rec
				if !r.watched[t] {
					r.watched[t] = true
					r.cfg.Metrics.WatchActive.WithLabelValues(watchLabels(t)).Set(1)
				}
				r.Stats.Actions.Add(1)
			case kind == BlockIP:
				offense := max(offenses[prefix.String()], 1)
				ttl := min(r.cfg.BlockTTL<<min(offense-1, 20), r.cfg.BlockTTLMax)
				b := BlockRecord{Prefix: prefix.String(), IncidentID: inc.ID, BlockedAt: now, ExpiresAt: now.Add(ttl), Offense: offense, Status: BlockActive}
				r.blocks[b.Prefix] = b
				r.sending[b.Prefix] = true
				ledger = append(ledger, b)
				recs = append(recs, ActionRecord{At: now, IncidentID: inc.ID, Kind: kind, Target: b.Prefix, Outcome: Planned,
					Detail: "offense " + itoa(offense) + ", blocked for " + ttl.String(), ExpiresAt: b.ExpiresAt})
				if blockJob == nil {
					blockJob = &job{kind: kind, inc: *inc}
				}
				blockJob.targets = append(blockJob.targets, b.Prefix)
				blockJob.blocks = append(blockJob.blocks, Block{Prefix: prefix, IncidentID: inc.ID, Until: b.ExpiresAt})
			default:
				rec := ActionRecord{At: now, IncidentID: inc.ID, Kind: kind, Target: t, Outcome: Planned, Detail: detail}
				recs = append(recs, rec)
				if kind != OpenIncident {
					r.inForce[kind+"\x1f"+t] = rec
				}
				jobs = append(jobs, job{kind: kind, targets: []string{t}, inc: *inc})
			}
		}
		if blockJob != nil {
			jobs = append(jobs, *blockJob)
		}
	}
	r.mu.Unlock()
	for _, g := range raise {
		if rec, ok := r.raise(g, inc.ID, now); ok {
			recs = append(recs, rec)
			if !dry { // a dry run calls nothing, not even the notifiers
				jobs = append(jobs, job{kind: GuardAlert, targets: []string{g}, inc: guardIncident(g, rec, now)})
			}
		}
	}
	if len(ledger) > 0 {
		if r.retry(ctx, "write block ledger", func(ctx context.Context) error { return r.store.WriteBlocks(ctx, ledger) }) != nil {
			return
		}
	}
	for i := range recs {
		recs[i].AlertKey = a.Key
	}
	if r.retry(ctx, "write action log", func(ctx context.Context) error { return r.store.WriteActions(ctx, recs) }) != nil {
		return
	}
	r.counted(recs)
	for _, j := range jobs {
		ch := r.jobs
		if j.kind == BlockIP {
			ch = r.blockJobs
		}
		select {
		case ch <- j:
		case <-ctx.Done():
			return // planned records without an outcome are re-checked at the next start
		}
	}
}

// check runs the guards in order for one target (docs/responders.md): it
// returns the guard that stops the action ("" when none does), the block
// range for block_ip, and a detail for the record. A dry run shows what
// would be done, so revoke_key and block_ip do not need their system
// configured for it; isolate_namespace is skipped as not configured even
// then, because the spec makes it a human's job until it is configured.
// Callers hold r.mu.
func (r *Responder) check(kind, target string, inc *Incident, rule *rules.Rule, dry bool, now time.Time) (string, netip.Prefix, string) {
	var prefix netip.Prefix
	if r.paused.Load() {
		return GuardPaused, prefix, "responders are paused (vigil respond resume)"
	}
	switch kind {
	case RevokeKey:
		if r.sys.Keys == nil && !dry {
			return GuardNotConfigured, prefix, "responders.admin_api is not configured"
		}
		if r.allow.keys[target] {
			return GuardAllowlist, prefix, "key is in responders.allowlist.keys"
		}
		if slices.Contains(inc.AdminKeys, target) && (rule == nil || !rule.AllowAdminRevoke) {
			return GuardAdminKey, prefix, "ADMIN key; the rule does not set allow_admin_revoke: true"
		}
	case IsolateNamespace:
		if r.sys.Isolator == nil {
			return GuardNotConfigured, prefix, "responders.admin_api.isolate is not configured: a human must isolate this namespace"
		}
		if ParseNamespace(target).Org == "" && r.needsOrg() {
			return GuardUnknownOrg, prefix, "the namespace's org is unknown and responders.admin_api.isolate needs {org_id}: a human must isolate this namespace"
		}
	case BlockIP:
		if r.sys.Blocker == nil && !dry {
			return GuardNotConfigured, prefix, "responders.cloudflare is not configured"
		}
		addr, err := netip.ParseAddr(target)
		if err != nil {
			return GuardInvalid, prefix, "not an IP address"
		}
		prefix = BlockPrefix(addr)
		if r.allow.protects(prefix) {
			return GuardAllowlist, prefix, "address is internal, link-local, metadata or in responders.allowlist.cidrs"
		}
		if b, ok := r.blocks[prefix.String()]; ok {
			return GuardInForce, prefix, "blocked until " + b.ExpiresAt.Format(time.RFC3339) + " by " + b.IncidentID
		}
	case Watch:
		if strings.HasPrefix(target, "key:") && r.allow.keys[strings.TrimPrefix(target, "key:")] {
			return GuardAllowlist, prefix, "key is in responders.allowlist.keys"
		}
	}
	if kind != OpenIncident && kind != BlockIP {
		if a, ok := r.inForceOn(kind, target, now); ok {
			return GuardInForce, prefix, "already applied by " + a.IncidentID
		}
	}
	ik := inc.ID + "\x1f" + kind
	if r.perInc[ik] >= r.cfg.PerIncident[kind] {
		return GuardIncidentCap, prefix, "at most " + itoa(r.cfg.PerIncident[kind]) + " per incident (responders.caps.per_incident)"
	}
	pm := r.perMinute[kind]
	if pm == nil {
		pm = &slidingCount{}
		r.perMinute[kind] = pm
	}
	if pm.count(now) >= r.cfg.PerMinute[kind] {
		return GuardRateCap, prefix, "at most " + itoa(r.cfg.PerMinute[kind]) + " per minute (responders.caps.per_minute)"
	}
	if !dry && kind != Watch {
		if ok, _ := r.brk.allow(now); !ok {
			return GuardBreaker, prefix, "circuit breaker open until " + r.brk.openUntil.Format(time.RFC3339)
		}
	}
	r.perInc[ik]++
	pm.add(now)
	return "", prefix, ""
}

// offense returns which block of this range the next one is (1 = first),
// from the ledger; on a read error it assumes a first offense.
func (r *Responder) offense(ctx context.Context, prefix string, now time.Time) int {
	n, err := r.store.Offenses(ctx, prefix, now.Add(-r.cfg.OffenderMemory))
	if err != nil {
		r.log.Warn("block ledger unreadable; using the base block TTL", "err", err)
		return 1
	}
	return n + 1
}

// raise records a guard alert at most once per minute per guard and kind.
func (r *Responder) raise(g, incidentID string, now time.Time) (ActionRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if last, ok := r.raised[g]; ok && now.Sub(last) < time.Minute {
		return ActionRecord{}, false
	}
	r.raised[g] = now
	guard, kind, _ := strings.Cut(g, ":")
	r.log.Error("responders guard tripped: actions are being skipped", "guard", guard, "action", kind, "incident", incidentID)
	return ActionRecord{At: now, IncidentID: incidentID, Kind: GuardAlert, Target: g, Outcome: Raised, Guard: guard,
		Detail: kind + " actions skipped by " + guard}, true
}

// guardIncident is what the notifiers receive about a tripped guard.
func guardIncident(g string, rec ActionRecord, now time.Time) Incident {
	return Incident{ID: "guard_" + strings.ReplaceAll(g, ":", "_") + "_" + now.Format("20060102T1504"), Rule: "vigil-guard",
		Severity: 2, SeverityName: "high", Status: "open", Group: []string{"guard=" + g}, GroupJSON: `{}`,
		FirstEvent: now, LastEvent: now, OpenedAt: now, UpdatedAt: now, Notes: []string{rec.Detail}}
}

func itoa(n int) string { return strconv.Itoa(n) }
