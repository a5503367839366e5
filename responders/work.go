package responders

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime/debug"
	"time"
)

// incidentOf names the incident of a job's i-th target: a merged block
// job carries targets of several incidents.
func (j *job) incidentOf(i int) string {
	if i < len(j.blocks) && j.blocks[i].IncidentID != "" {
		return j.blocks[i].IncidentID
	}
	return j.inc.ID
}

// maxBlockBatch bounds the blocks merged into one call; the Cloudflare
// client chunks its writes further.
const maxBlockBatch = 1000

// blockWork sends block jobs, merging those waiting into one call: a
// burst of alerts becomes one list write, not one write per address
// (the edge's API has a rate limit and one bulk operation at a time).
func (r *Responder) blockWork(ctx context.Context) {
	for j := range r.blockJobs {
		merged := j
		merged.targets = append([]string(nil), j.targets...)
		merged.blocks = append([]Block(nil), j.blocks...)
	drain:
		for len(merged.blocks) < maxBlockBatch {
			select {
			case more, ok := <-r.blockJobs:
				if !ok {
					break drain
				}
				merged.targets = append(merged.targets, more.targets...)
				merged.blocks = append(merged.blocks, more.blocks...)
			default:
				break drain
			}
		}
		r.safeSend(ctx, merged)
	}
}

// work sends jobs until the job channel closes.
func (r *Responder) work(ctx context.Context) {
	for j := range r.jobs {
		r.safeSend(ctx, j)
	}
}

// safeSend is send with a panic turned into a failed action.
func (r *Responder) safeSend(ctx context.Context, j job) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("responders: panic while sending an action", "action", j.kind, "incident", j.inc.ID,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			r.forget(ctx, j)
		}
	}()
	r.send(ctx, j)
}

// send makes the calls of one job with bounded retries, recording each
// attempt. Retries honour a 429's Retry-After; a final answer (4xx) ends
// them at once. The kill switch is read before every attempt: a job
// queued, waiting for a retry or resumed at start when it is turned on
// must not call out. An operator's undo is never guarded.
func (r *Responder) send(ctx context.Context, j job) {
	if j.kind == BlockIP {
		defer func() {
			r.mu.Lock()
			for _, t := range j.targets {
				delete(r.sending, t)
			}
			r.mu.Unlock()
		}()
	}
	wait := r.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		if r.paused.Load() && j.kind != RestoreKey && j.kind != LiftIsolation {
			r.skipPaused(ctx, j, attempt)
			return
		}
		detail, err := r.call(ctx, j)
		now := r.cfg.Now().UTC()
		if err == nil {
			recs := make([]ActionRecord, 0, len(j.targets))
			for i, t := range j.targets {
				rec := ActionRecord{At: now, IncidentID: j.incidentOf(i), Kind: j.kind, Target: t, Outcome: Succeeded, Attempt: attempt, Detail: detail}
				if j.kind == BlockIP {
					rec.ExpiresAt = j.blocks[i].Until
				}
				recs = append(recs, rec)
			}
			r.Stats.Actions.Add(uint64(len(recs)))
			r.writeLog(ctx, recs)
			return
		}
		final := IsFinal(err) || attempt >= r.cfg.MaxAttempts || ctx.Err() != nil
		outcome := Retried
		if final {
			outcome = Failed
		}
		recs := make([]ActionRecord, 0, len(j.targets))
		for i, t := range j.targets {
			recs = append(recs, ActionRecord{At: now, IncidentID: j.incidentOf(i), Kind: j.kind, Target: t, Outcome: outcome, Attempt: attempt, Error: err.Error()})
		}
		r.mu.Lock()
		tripped := r.brk.failure(now)
		r.mu.Unlock()
		if tripped {
			if rec, ok := r.raise(GuardBreaker+":errors", j.inc.ID, now); ok {
				recs = append(recs, rec)
			}
		}
		if final {
			r.Stats.Failed.Add(uint64(len(j.targets)))
			r.log.Error("action failed", "action", j.kind, "incident", j.inc.ID, "attempts", attempt, "err", err)
			r.forget(ctx, j)
			r.writeLog(ctx, recs)
			return
		}
		r.writeLog(ctx, recs)
		d := wait
		if ra := RetryAfter(err); ra > 0 {
			d = ra
		}
		wait = min(2*wait, r.cfg.RetryMax)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}

// call makes one attempt of a job. The detail describes a success.
func (r *Responder) call(ctx context.Context, j job) (string, error) {
	switch j.kind {
	case OpenIncident:
		n := r.sys.Notifiers[j.targets[0]]
		if n == nil {
			return "", &CallError{System: j.targets[0], Op: "notify", Final: true, Msg: "not configured"}
		}
		return "", n.Notify(ctx, &j.inc)
	case GuardAlert:
		var errs []error
		for _, name := range sortedNames(r.sys.Notifiers) {
			errs = append(errs, r.sys.Notifiers[name].Notify(ctx, &j.inc))
		}
		return "", errors.Join(errs...)
	case RevokeKey, RestoreKey:
		status := "revoked"
		if j.kind == RestoreKey {
			status = "active"
		}
		err := r.sys.Keys.SetKeyStatus(ctx, j.targets[0], status)
		if StatusOf(err) == 409 {
			return "key was already " + status + " (HTTP 409)", nil
		}
		return "", err
	case IsolateNamespace, LiftIsolation:
		ns := ParseNamespace(j.targets[0])
		var err error
		if j.kind == IsolateNamespace {
			err = r.sys.Isolator.Isolate(ctx, ns)
		} else {
			err = r.sys.Isolator.Lift(ctx, ns)
		}
		if StatusOf(err) == 409 {
			return "namespace was already in that state (HTTP 409)", nil
		}
		return "", err
	case BlockIP:
		return "", r.sys.Blocker.Block(ctx, j.blocks)
	}
	return "", &CallError{System: "vigil", Op: j.kind, Final: true, Msg: "unknown action"}
}

// skipPaused records a job the kill switch stopped before its attempt
// as skipped. The record carries the attempt number: it ends the planned
// action (see LatestActions), so neither a refresh nor a restart takes it
// for one still in force or to be re-sent.
func (r *Responder) skipPaused(ctx context.Context, j job, attempt int) {
	now := r.cfg.Now().UTC()
	recs := make([]ActionRecord, 0, len(j.targets))
	for i, t := range j.targets {
		recs = append(recs, ActionRecord{At: now, IncidentID: j.incidentOf(i), Kind: j.kind, Target: t, Outcome: Skipped,
			Guard: GuardPaused, Attempt: attempt, Detail: "responders are paused (vigil respond resume)"})
	}
	r.Stats.Skipped.Add(uint64(len(recs)))
	r.log.Warn("action not sent: responders are paused", "action", j.kind, "incident", j.inc.ID, "attempt", attempt)
	r.forget(ctx, j)
	r.writeLog(ctx, recs)
}

// forget drops the in-force mark of a job that was not applied (it failed
// for good or the kill switch stopped it), so a later alert may try
// again. A block's ledger row is rewritten with its own blocked_at, the
// ledger's key, so that it replaces the active row: otherwise a restart
// would put the block at the edge and count it as an offense.
func (r *Responder) forget(ctx context.Context, j job) {
	var recs []BlockRecord
	r.mu.Lock()
	for i, t := range j.targets {
		if j.kind == BlockIP {
			// Only this job's block: expiry may have ended it meanwhile.
			if b, ok := r.blocks[t]; ok && i < len(j.blocks) && b.ExpiresAt.Equal(j.blocks[i].Until) {
				b.Status = BlockNotApplied
				recs = append(recs, b)
				delete(r.blocks, t)
			}
			continue
		}
		delete(r.inForce, j.kind+"\x1f"+t)
	}
	r.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	if err := r.retry(ctx, "write block ledger", func(ctx context.Context) error { return r.store.WriteBlocks(ctx, recs) }); err != nil {
		r.log.Error("block ledger not updated: blocks that were not applied stay active there until they expire", "blocks", len(recs), "err", err)
	}
}

// writeLog appends to the action log, retrying while ctx lives.
func (r *Responder) writeLog(ctx context.Context, recs []ActionRecord) {
	if err := r.retry(ctx, "write action log", func(ctx context.Context) error { return r.store.WriteActions(ctx, recs) }); err != nil {
		r.log.Error("action log not written", "records", len(recs), "err", err)
		return
	}
	r.counted(recs)
}

// expire ends the watches and removes the blocks whose time is up: blocks
// from the edge and then from the ledger, which makes this happen on time
// across restarts.
func (r *Responder) expire(ctx context.Context) {
	r.lapseWatches()
	now := r.cfg.Now().UTC()
	r.mu.Lock()
	var due []BlockRecord
	for _, b := range r.blocks {
		if !b.ExpiresAt.After(now) {
			due = append(due, b)
		}
	}
	r.mu.Unlock()
	if len(due) == 0 {
		return
	}
	if r.sys.Blocker != nil {
		prefixes := make([]netip.Prefix, 0, len(due))
		for _, b := range due {
			if p, err := netip.ParsePrefix(b.Prefix); err == nil {
				prefixes = append(prefixes, p)
			}
		}
		if err := r.sys.Blocker.Unblock(ctx, prefixes); err != nil {
			r.log.Warn("unblocking expired blocks failed; retrying at the next pass", "blocks", len(due), "err", err)
			return
		}
	}
	recs := make([]ActionRecord, 0, len(due))
	for i := range due {
		recs = append(recs, ActionRecord{At: now, IncidentID: due[i].IncidentID, Kind: Unblock, Target: due[i].Prefix, Outcome: Succeeded,
			Detail: "block expired at " + due[i].ExpiresAt.Format(time.RFC3339)})
		due[i].Status = BlockRemoved
	}
	if r.retry(ctx, "write block ledger", func(ctx context.Context) error { return r.store.WriteBlocks(ctx, due) }) != nil {
		return
	}
	r.mu.Lock()
	for _, b := range due {
		if cur, ok := r.blocks[b.Prefix]; ok && cur.BlockedAt.Equal(b.BlockedAt) {
			delete(r.blocks, b.Prefix)
		}
	}
	r.mu.Unlock()
	r.Stats.Unblocked.Add(uint64(len(due)))
	r.writeLog(ctx, recs)
}

// reconcile reads the edge back and repairs drift: blocks in force that
// someone removed are added again, Vigil items with no block in force are
// removed. The ledger is read too: a block an operator removed is not in
// force any more and must not come back.
func (r *Responder) reconcile(ctx context.Context) (err error) {
	if r.sys.Blocker == nil || r.paused.Load() || r.dryRun.Load() {
		return nil
	}
	items, err := r.sys.Blocker.Items(ctx)
	if err != nil {
		r.log.Warn("reading the edge's blocks failed; reconciling at the next pass", "err", err)
		return err
	}
	// After the edge: an unblock writes the ledger before the edge, so a
	// range found missing here is seen removed in the ledger.
	if _, err := r.refreshBlocks(ctx); err != nil {
		r.log.Warn("reading the block ledger failed; reconciling at the next pass", "err", err)
		return err
	}
	now := r.cfg.Now().UTC()
	atEdge := map[string]bool{}
	var extra []netip.Prefix
	r.mu.Lock()
	r.edgeItems = len(items)
	for _, it := range items {
		atEdge[it.Prefix.String()] = true
		if _, ok := r.blocks[it.Prefix.String()]; !ok && !r.sending[it.Prefix.String()] {
			extra = append(extra, it.Prefix)
		}
	}
	var missing []Block
	for _, b := range r.blocks {
		p, err := netip.ParsePrefix(b.Prefix)
		if err != nil || atEdge[b.Prefix] || !b.ExpiresAt.After(now) || r.sending[b.Prefix] {
			continue // in place, expiring anyway, or still being sent
		}
		missing = append(missing, Block{Prefix: p, IncidentID: b.IncidentID, Until: b.ExpiresAt})
	}
	r.mu.Unlock()
	var recs []ActionRecord
	if len(missing) > 0 {
		if berr := r.sys.Blocker.Block(ctx, missing); berr != nil {
			r.log.Warn("re-adding blocks removed at the edge failed", "blocks", len(missing), "err", berr)
			err = berr
		} else {
			for _, b := range missing {
				recs = append(recs, ActionRecord{At: now, IncidentID: b.IncidentID, Kind: BlockIP, Target: b.Prefix.String(),
					Outcome: Succeeded, Detail: "re-added by reconcile: removed at the edge while in force", ExpiresAt: b.Until})
			}
		}
	}
	if len(extra) > 0 {
		if uerr := r.sys.Blocker.Unblock(ctx, extra); uerr != nil {
			r.log.Warn("removing stale blocks at the edge failed", "blocks", len(extra), "err", uerr)
			err = uerr
		} else {
			for _, p := range extra {
				recs = append(recs, ActionRecord{At: now, Kind: Unblock, Target: p.String(), Outcome: Succeeded,
					Detail: "removed by reconcile: no block in force"})
			}
		}
	}
	if len(recs) > 0 {
		r.Stats.Drift.Add(uint64(len(recs)))
		r.cfg.Metrics.EdgeDrift.Add(float64(len(recs)))
		r.log.Warn("edge drift repaired", "readded", len(missing), "removed", len(extra))
		r.writeLog(ctx, recs)
	}
	return err
}

// reconcileAtStart is reconcile with the action retries: a block a crash
// left in the ledger but not at the edge should not wait for the first
// tick, and the edge may still be finishing the dead process's last write.
func (r *Responder) reconcileAtStart(ctx context.Context) {
	if r.retryN(ctx, "reconcile at start", r.cfg.MaxAttempts, r.reconcile) == nil {
		r.confirmBlocks(ctx)
	}
}

// confirmBlocks records as succeeded the blocks a crash left planned that
// the edge has (reconcile just made sure every block in force is there),
// so that the action log says what happened.
func (r *Responder) confirmBlocks(ctx context.Context) {
	if r.sys.Blocker == nil || r.paused.Load() || r.dryRun.Load() {
		return
	}
	latest, err := r.store.LatestActions(ctx, []string{BlockIP})
	if err != nil {
		r.log.Warn("reading blocks left planned by a restart failed", "err", err)
		return
	}
	now := r.cfg.Now().UTC()
	var recs []ActionRecord
	r.mu.Lock()
	for _, a := range latest {
		if b, ok := r.blocks[a.Target]; ok && a.Outcome == Planned && b.ExpiresAt.After(now) {
			recs = append(recs, ActionRecord{At: now, IncidentID: a.IncidentID, Kind: BlockIP, Target: a.Target,
				Outcome: Succeeded, Detail: "at the edge after a restart", ExpiresAt: b.ExpiresAt})
		}
	}
	r.mu.Unlock()
	r.writeLog(ctx, recs)
}

// resume re-sends the actions a crash left planned without an outcome.
// Revoking a revoked key or isolating an isolated namespace answers 409,
// recorded as already applied, so nothing is applied twice. A notification
// of an open incident is sent again: at worst the notifier gets the update
// twice (Sentry files it under the same issue, by fingerprint). Blocks are
// the reconcile pass's.
func (r *Responder) resume(ctx context.Context) {
	unsent, err := r.store.UnsentNotifications(ctx, r.cfg.Now().Add(-7*24*time.Hour))
	if err != nil {
		r.log.Warn("reading notifications a restart cut off failed; they are not sent again", "err", err)
	}
	r.mu.Lock()
	var jobs []job
	for _, a := range r.inForce {
		if a.Outcome == Planned && (a.Kind == RevokeKey || a.Kind == IsolateNamespace) {
			jobs = append(jobs, job{kind: a.Kind, targets: []string{a.Target}, inc: Incident{ID: a.IncidentID}})
		}
	}
	byID := make(map[string]*Incident, len(r.open))
	for _, inc := range r.open {
		byID[inc.ID] = inc
	}
	for _, a := range unsent {
		if inc := byID[a.IncidentID]; inc != nil {
			jobs = append(jobs, job{kind: OpenIncident, targets: []string{a.Target}, inc: *inc})
		}
	}
	r.mu.Unlock()
	for _, j := range jobs {
		r.log.Info("re-checking an action left without outcome by a restart", "action", j.kind, "incident", j.inc.ID)
		select {
		case r.jobs <- j:
		case <-ctx.Done():
			return
		}
	}
}

// Undo runs an operator's command — restore_key, lift_isolation or
// unblock_ip — synchronously, recorded like any action. It is never
// guarded: an operator undoing an action knows what they do.
func (r *Responder) Undo(ctx context.Context, kind, target, incidentID string) error {
	now := r.cfg.Now().UTC()
	switch kind {
	case RestoreKey:
		if r.sys.Keys == nil {
			return errors.New("responders.admin_api is not configured")
		}
	case LiftIsolation:
		if r.sys.Isolator == nil {
			return errors.New("responders.admin_api.isolate is not configured")
		}
		var err error
		if target, err = r.liftTarget(ctx, target, incidentID); err != nil {
			return err
		}
	case Unblock:
		if r.sys.Blocker == nil {
			return errors.New("responders.cloudflare is not configured")
		}
		addr, err := netip.ParseAddr(target)
		p := netip.Prefix{}
		if err == nil {
			p = BlockPrefix(addr)
		} else if p, err = netip.ParsePrefix(target); err != nil {
			return errors.New("unblock: " + target + " is not an address or range")
		}
		// The ledger first: a running daemon that then finds the range gone
		// from the edge reads it as removed, not as drift to repair. Each
		// active row is rewritten with its own key (prefix, blocked_at) so
		// it is replaced; a range that was not blocked gets no row (a row
		// would count as an offense).
		blocks, err := r.store.ActiveBlocks(ctx)
		if err != nil {
			return fmt.Errorf("nothing unblocked: reading the block ledger failed; run the command again: %w", err)
		}
		var removed []BlockRecord
		for _, b := range blocks {
			if b.Prefix == p.String() {
				b.Status = BlockRemoved
				removed = append(removed, b)
			}
		}
		if err := r.store.WriteBlocks(ctx, removed); err != nil {
			return fmt.Errorf("nothing unblocked: writing the block ledger failed; run the command again: %w", err)
		}
		if err := r.sys.Blocker.Unblock(ctx, []netip.Prefix{p}); err != nil {
			r.writeLog(ctx, []ActionRecord{{At: now, IncidentID: incidentID, Kind: kind, Target: p.String(), Outcome: Failed, Error: err.Error(), Detail: "operator command"}})
			return fmt.Errorf("the block ledger says unblocked (a running daemon removes it at its next reconcile), but the edge refused; run the command again: %w", err)
		}
		return r.store.WriteActions(ctx, []ActionRecord{{At: now, IncidentID: incidentID, Kind: kind, Target: p.String(), Outcome: Succeeded, Detail: "operator command"}})
	default:
		return errors.New("unknown operator command " + kind)
	}
	if err := r.store.WriteActions(ctx, []ActionRecord{{At: now, IncidentID: incidentID, Kind: kind, Target: target, Outcome: Planned, Detail: "operator command"}}); err != nil {
		return err
	}
	before := r.Stats.Failed.Load()
	r.send(ctx, job{kind: kind, targets: []string{target}, inc: Incident{ID: incidentID}})
	if r.Stats.Failed.Load() != before {
		return errors.New(kind + " " + target + " failed; see `vigil incidents show " + incidentID + "`")
	}
	return nil
}

// liftTarget puts a namespace given to `vigil namespaces lift` in target
// form: a bare id takes its org from the incident, as the isolation did,
// so that the lift's record matches the isolation's and ends it.
func (r *Responder) liftTarget(ctx context.Context, target, incidentID string) (string, error) {
	ns := ParseNamespace(target)
	if ns.ID == "" {
		return "", errors.New("lift: give the namespace as NAMESPACE or ORG/NAMESPACE")
	}
	if ns.Org != "" {
		return target, nil
	}
	inc, err := r.store.Incident(ctx, incidentID)
	if err != nil {
		return "", fmt.Errorf("nothing lifted: reading incident %s for the namespace's org failed; run the command again, or give the namespace as ORG/%s: %w", incidentID, ns.ID, err)
	}
	if inc != nil {
		ns = inc.NamespaceOf(ns.ID)
	}
	if ns.Org == "" && r.needsOrg() {
		return "", fmt.Errorf("nothing lifted: incident %s does not name the org of namespace %s, which responders.admin_api.isolate needs; give it as ORG/%s", incidentID, ns.ID, ns.ID)
	}
	return ns.Target(), nil
}
