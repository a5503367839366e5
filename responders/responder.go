package responders

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-sec/vigil/metrics"
	"github.com/vigil-sec/vigil/rules"
)

// Config tunes the response pipeline; zero values take the defaults of
// docs/responders.md.
type Config struct {
	// DryRun records every planned action as dry_run and calls nothing.
	DryRun bool
	// Paused is the configured kill switch; `vigil respond pause` sets the
	// one in ClickHouse, and either pauses every action.
	Paused bool
	// Database is the ClickHouse database named in incidents' evidence queries.
	Database string
	// QueueSize bounds the alerts waiting for triage (default 10000). When
	// it is full the newest alert is not queued but counted; it is still in
	// the alerts table and is triaged by the next catch-up pass.
	QueueSize int
	// Workers send actions concurrently (default 4).
	Workers int
	// AllowCIDRs and AllowKeys are never actioned, on top of the built-in
	// private, loopback, link-local and metadata ranges.
	AllowCIDRs []netip.Prefix
	AllowKeys  []string
	// PerMinute and PerIncident cap actions of each kind.
	PerMinute   map[string]int
	PerIncident map[string]int
	// The breaker opens for BreakerCooldown when more than BreakerActions
	// actions are sent, or BreakerErrors fail, within a minute.
	BreakerActions  int
	BreakerErrors   int
	BreakerCooldown time.Duration
	// BlockTTL is the first block of an address; each earlier block of it
	// within OffenderMemory doubles it, up to BlockTTLMax.
	BlockTTL, BlockTTLMax, OffenderMemory time.Duration
	// WatchTTL is how long enhanced logging lasts (the plan: 30 days).
	WatchTTL time.Duration
	// MaxAttempts bounds the tries of one action; retries wait from
	// RetryMin doubling to RetryMax, or what a 429 asked for.
	MaxAttempts        int
	RetryMin, RetryMax time.Duration
	// ExpiryInterval is how often due unblocks run; ReconcileInterval how
	// often the edge is read back and repaired; ControlInterval how often
	// the kill switch is read; RefreshInterval how often what operators
	// change from another process (restores, lifts, unblocks, resolved
	// incidents) is read back (default 1m).
	ExpiryInterval, ReconcileInterval, ControlInterval, RefreshInterval time.Duration
	// CatchUp is how far back stored alerts without an incident are
	// triaged at start (default 24h).
	CatchUp time.Duration
	// PollInterval, when set, repeats the catch-up that often: the alerts
	// come from the alerts table rather than Enqueue. That is how the one
	// responder of several keyed replicas sees the alerts of all of them.
	PollInterval time.Duration
	Logger       *slog.Logger
	// Metrics counts incidents, actions, guard skips and drift; nil keeps
	// them unregistered.
	Metrics *metrics.Metrics
	Now     func() time.Time
}

// DefaultPerMinute and DefaultPerIncident are the caps that Config's
// zero values take, and the configuration's defaults.
func DefaultPerMinute() map[string]int {
	return map[string]int{OpenIncident: 60, RevokeKey: 10, BlockIP: 60, Watch: 120, IsolateNamespace: 5}
}

func DefaultPerIncident() map[string]int {
	return map[string]int{OpenIncident: 100, RevokeKey: 5, BlockIP: 50, Watch: 20, IsolateNamespace: 3}
}

func (c *Config) fill() {
	set := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	setD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&c.QueueSize, 10000)
	set(&c.Workers, 4)
	set(&c.BreakerActions, 100)
	set(&c.BreakerErrors, 20)
	set(&c.MaxAttempts, 5)
	setD(&c.BreakerCooldown, 5*time.Minute)
	setD(&c.BlockTTL, 24*time.Hour)
	setD(&c.BlockTTLMax, 30*24*time.Hour)
	setD(&c.OffenderMemory, 90*24*time.Hour)
	setD(&c.WatchTTL, 30*24*time.Hour)
	setD(&c.RetryMin, time.Second)
	setD(&c.RetryMax, time.Minute)
	setD(&c.ExpiryInterval, 30*time.Second)
	setD(&c.ReconcileInterval, 5*time.Minute)
	setD(&c.ControlInterval, 5*time.Second)
	setD(&c.RefreshInterval, time.Minute)
	setD(&c.CatchUp, 24*time.Hour)
	if c.Database == "" {
		c.Database = "vigil"
	}
	caps := func(m map[string]int, d map[string]int) map[string]int {
		out := map[string]int{}
		for k, v := range d {
			out[k] = v
		}
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	c.PerMinute = caps(c.PerMinute, DefaultPerMinute())
	c.PerIncident = caps(c.PerIncident, DefaultPerIncident())
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Metrics == nil {
		c.Metrics = metrics.New(nil, "")
	}
}

// Systems are the external systems actions call; a nil one makes its
// actions skipped as not_configured.
type Systems struct {
	Notifiers map[string]Notifier // by name: sentry, webhook
	Keys      KeyAdmin
	Isolator  Isolator
	Blocker   Blocker
}

// Stats count what the responders did.
type Stats struct {
	Alerts, Dropped, Incidents, Actions, Skipped, Failed, Drift, Unblocked atomic.Uint64
}

// Responder triages alerts into incidents and runs their actions.
type Responder struct {
	cfg       Config
	store     Store
	sys       Systems
	rules     func(id string) *rules.Rule
	log       *slog.Logger
	queue     chan Alert
	jobs      chan job
	blockJobs chan job // one sender, so block writes can be merged
	Stats     Stats

	catchUp   atomic.Bool // alerts were dropped: run a catch-up pass
	paused    atomic.Bool // the kill switch in effect (config or ClickHouse)
	cfgPaused atomic.Bool // the configured kill switch (responders.paused)
	dryRun    atomic.Bool

	allow allowlist

	mu        sync.Mutex           // guards everything below
	open      map[string]*Incident // rule|group → open incident
	inForce   map[string]ActionRecord
	blocks    map[string]BlockRecord // prefix → active block
	perMinute map[string]*slidingCount
	perInc    map[string]int // incident|kind → actions planned
	brk       breaker
	raised    map[string]time.Time // guard alert → when last raised
	sending   map[string]bool      // block prefixes whose call is under way
	edgeItems int                  // Vigil's items at the edge at the last reconcile; -1 before
	seen      map[string]bool      // alert keys triaged, so a redelivered alert is absorbed
	seenOrder []string
	watched   map[string]bool // watch targets exported as vigil_responders_watch_active
}

// maxSeen bounds the alert keys remembered; older ones are still found in
// ClickHouse by the catch-up pass, which skips alerts an incident holds.
const maxSeen = 100000

// remember records an alert key as triaged. Callers hold r.mu.
func (r *Responder) remember(key string) {
	if r.seen[key] {
		return
	}
	r.seen[key] = true
	r.seenOrder = append(r.seenOrder, key)
	if len(r.seenOrder) > maxSeen {
		old := r.seenOrder[:maxSeen/2]
		for _, k := range old {
			delete(r.seen, k)
		}
		r.seenOrder = append([]string(nil), r.seenOrder[maxSeen/2:]...)
	}
}

// job is one action to send: a kind, its targets and the incident.
type job struct {
	kind    string
	targets []string
	inc     Incident // a copy, as it was when the action was planned
	blocks  []Block
}

// New builds a responder. lookup returns the current rule of an id (nil
// when it is gone); it is called from the triage goroutine only.
func New(cfg Config, store Store, sys Systems, lookup func(id string) *rules.Rule) *Responder {
	cfg.fill()
	r := &Responder{
		cfg: cfg, store: store, sys: sys, rules: lookup, log: cfg.Logger,
		queue: make(chan Alert, cfg.QueueSize), jobs: make(chan job, cfg.Workers*16), blockJobs: make(chan job, maxBlockBatch),
		open: map[string]*Incident{}, inForce: map[string]ActionRecord{}, blocks: map[string]BlockRecord{},
		perMinute: map[string]*slidingCount{}, perInc: map[string]int{}, raised: map[string]time.Time{}, seen: map[string]bool{}, sending: map[string]bool{}, edgeItems: -1, watched: map[string]bool{},
		allow: newAllowlist(cfg.AllowCIDRs, cfg.AllowKeys),
		brk:   breaker{maxActions: cfg.BreakerActions, maxErrors: cfg.BreakerErrors, cooldown: cfg.BreakerCooldown},
	}
	r.dryRun.Store(cfg.DryRun)
	r.cfgPaused.Store(cfg.Paused)
	return r
}

// SetSwitches applies a reloaded configuration's dry_run and paused.
func (r *Responder) SetSwitches(dryRun, paused bool) {
	r.dryRun.Store(dryRun)
	r.cfgPaused.Store(paused)
	if paused {
		r.paused.Store(true)
	}
}

// Enqueue hands an alert over without waiting: the data path must never
// wait on the responders. A full queue drops the alert from memory only;
// the catch-up pass finds it in the alerts table.
func (r *Responder) Enqueue(a Alert) {
	select {
	case r.queue <- a:
	default:
		r.Stats.Dropped.Add(1)
		r.cfg.Metrics.QueueDropped.Inc()
		r.catchUp.Store(true)
	}
}

// Gauges is the responders' state at one moment, for metrics.
type Gauges struct {
	Queue, OpenIncidents, ActiveBlocks int
	EdgeItems                          int // -1 until the edge was read
	BreakerOpen, Paused                bool
}

// Gauges reads the current state; safe from any goroutine.
func (r *Responder) Gauges() Gauges {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Gauges{Queue: len(r.queue), OpenIncidents: len(r.open), ActiveBlocks: len(r.blocks), EdgeItems: r.edgeItems,
		BreakerOpen: r.brk.isOpen(r.cfg.Now()), Paused: r.paused.Load()}
}

// counted updates the metrics for action records once they are written.
func (r *Responder) counted(recs []ActionRecord) {
	for _, a := range recs {
		r.cfg.Metrics.Actions.WithLabelValues(a.Kind, a.Outcome).Inc()
		if a.Outcome == Skipped {
			r.cfg.Metrics.GuardSkips.WithLabelValues(a.Guard).Inc()
		}
	}
}

// Run loads the state of earlier runs, triages what they left behind, and
// then serves the queue until ctx ends.
func (r *Responder) Run(ctx context.Context) error {
	if err := r.retry(ctx, "load responder state", r.load); err != nil {
		return err
	}
	var wg sync.WaitGroup
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	for range r.cfg.Workers {
		wg.Add(1)
		go func() { defer wg.Done(); r.work(wctx) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); r.blockWork(wctx) }()
	defer func() {
		close(r.jobs)
		close(r.blockJobs)
		wg.Wait()
		stopWorkers()
		// A keyed replica that stops leading shares the registry with the
		// next leader's responder: the watches are that one's to export.
		r.mu.Lock()
		r.exportWatches(nil)
		r.mu.Unlock()
	}()
	r.resume(ctx)
	r.expire(ctx)
	// Blocks are written to the ledger before the edge is called, so a
	// crash in between leaves a block in force that the edge lacks:
	// repair that now rather than at the first reconcile tick.
	r.reconcileAtStart(ctx)
	r.catchUp.Store(true)

	expiry := time.NewTicker(r.cfg.ExpiryInterval)
	defer expiry.Stop()
	reconcile := time.NewTicker(r.cfg.ReconcileInterval)
	defer reconcile.Stop()
	control := time.NewTicker(r.cfg.ControlInterval)
	defer control.Stop()
	var poll <-chan time.Time
	if r.cfg.PollInterval > 0 {
		t := time.NewTicker(r.cfg.PollInterval)
		defer t.Stop()
		poll = t.C
	}
	lastRefresh := time.Now()
	for {
		if r.catchUp.Swap(false) {
			r.runCatchUp(ctx, true)
		}
		select {
		case <-ctx.Done():
			return nil
		case a := <-r.queue:
			r.handle(ctx, a)
		case <-poll:
			r.runCatchUp(ctx, false)
		case <-expiry.C:
			r.expire(ctx)
		case <-reconcile.C:
			_ = r.reconcile(ctx) // logged; the next tick tries again
		case <-control.C:
			if time.Since(lastRefresh) >= r.cfg.RefreshInterval && r.refresh(ctx) == nil {
				lastRefresh = time.Now()
			}
			if p, err := r.store.Paused(ctx); err == nil {
				p = p || r.cfgPaused.Load()
				if r.paused.Swap(p) != p {
					r.log.Warn("responders kill switch changed", "paused", p)
				}
			}
		}
	}
}

// load reads open incidents, actions in force and active blocks.
func (r *Responder) load(ctx context.Context) error {
	now := r.cfg.Now()
	incs, err := r.store.OpenIncidents(ctx, now.Add(-openIncidentAge))
	if err != nil {
		return err
	}
	blocks, err := r.store.ActiveBlocks(ctx)
	if err != nil {
		return err
	}
	paused, err := r.store.Paused(ctx)
	if err != nil {
		return err
	}
	r.paused.Store(paused || r.cfgPaused.Load())
	r.mu.Lock()
	for _, inc := range incs {
		r.open[inc.Rule+"\x1f"+strings.Join(inc.Group, "\x1f")] = inc
		for _, k := range inc.AlertKeys {
			r.remember(k)
		}
	}
	for _, b := range blocks {
		r.blocks[b.Prefix] = b
	}
	r.mu.Unlock()
	if err := r.refreshInForce(ctx); err != nil {
		return err
	}
	r.log.Info("responders loaded", "open_incidents", len(incs), "in_force", len(r.inForce), "active_blocks", len(blocks), "paused", paused)
	return nil
}

// refresh re-reads what an operator's commands (another process) change:
// the action log for a restore or lift, the block ledger for an unblock.
// An unblock is followed by a reconcile pass, which also refreshes the
// edge client's view of the range, so a new block of it is written.
func (r *Responder) refresh(ctx context.Context) error {
	if err := r.refreshInForce(ctx); err != nil {
		return err
	}
	if err := r.refreshOpen(ctx); err != nil {
		return err
	}
	dropped, err := r.refreshBlocks(ctx)
	if err != nil {
		return err
	}
	if dropped {
		_ = r.reconcile(ctx) // logged; the next tick tries again
	}
	return nil
}

// refreshOpen forgets the incidents that are no longer open in ClickHouse
// (an operator resolved them, or they went a week without an update), so
// that a later alert of their rule and group opens a new incident instead
// of reopening a resolved one and losing its review clock. Incidents
// updated since the read began are kept: their write may not be visible
// yet.
func (r *Responder) refreshOpen(ctx context.Context) error {
	began := r.cfg.Now().UTC()
	incs, err := r.store.OpenIncidents(ctx, began.Add(-openIncidentAge))
	if err != nil {
		return err
	}
	open := make(map[string]bool, len(incs))
	for _, inc := range incs {
		open[inc.ID] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, inc := range r.open {
		if !open[inc.ID] && inc.UpdatedAt.Before(began) {
			delete(r.open, key)
		}
	}
	return nil
}

// openIncidentAge is how long an open incident without an update is
// still joined by new alerts of its rule and group.
const openIncidentAge = 7 * 24 * time.Hour

// refreshBlocks drops the blocks the ledger no longer holds active (an
// operator's unblock) and reports whether it dropped any. Only blocks
// whose ledger row was written before the read are judged: a block still
// being sent may have its row written after it.
func (r *Responder) refreshBlocks(ctx context.Context) (bool, error) {
	r.mu.Lock()
	settled := make(map[string]time.Time, len(r.blocks))
	for p, b := range r.blocks {
		if !r.sending[p] {
			settled[p] = b.BlockedAt
		}
	}
	r.mu.Unlock()
	blocks, err := r.store.ActiveBlocks(ctx)
	if err != nil {
		return false, err
	}
	active := make(map[string]bool, len(blocks))
	for _, b := range blocks {
		active[b.Prefix] = true
	}
	dropped := false
	r.mu.Lock()
	defer r.mu.Unlock()
	for p, at := range settled {
		if cur, ok := r.blocks[p]; ok && !active[p] && cur.BlockedAt.Equal(at) {
			delete(r.blocks, p)
			dropped = true
		}
	}
	return dropped, nil
}

// refreshInForce rebuilds the actions in force from the action log, so
// that an operator's restore or lift (another process) is seen.
func (r *Responder) refreshInForce(ctx context.Context) error {
	latest, err := r.store.LatestActions(ctx, []string{RevokeKey, RestoreKey, IsolateNamespace, LiftIsolation, Watch})
	if err != nil {
		return err
	}
	now := r.cfg.Now()
	inForce := map[string]ActionRecord{}
	// A revoke is in force unless a later restore lifted it; the same for
	// isolation. A planned record without an outcome (a crash while it was
	// being sent) counts as in force: the target is checked, not hit twice.
	// A lift ends the isolation of the same namespace whether either was
	// recorded with its org or bare (sameNamespace).
	restores := map[string]ActionRecord{}
	lifts := map[string][]ActionRecord{} // by namespace id
	for _, a := range latest {
		if a.Outcome != Succeeded {
			continue
		}
		switch a.Kind {
		case RestoreKey:
			restores[a.Target] = a
		case LiftIsolation:
			id := ParseNamespace(a.Target).ID
			lifts[id] = append(lifts[id], a)
		}
	}
	undone := func(a ActionRecord) bool {
		switch a.Kind {
		case RevokeKey:
			u, ok := restores[a.Target]
			return ok && u.At.After(a.At)
		case IsolateNamespace:
			for _, u := range lifts[ParseNamespace(a.Target).ID] {
				if sameNamespace(u.Target, a.Target) && u.At.After(a.At) {
					return true
				}
			}
		}
		return false
	}
	for _, a := range latest {
		if a.Outcome == Failed || a.Outcome == Skipped { // not applied
			continue
		}
		switch a.Kind {
		case RestoreKey, LiftIsolation:
			continue
		case Watch:
			if !a.ExpiresAt.After(now) {
				continue
			}
		}
		if undone(a) {
			continue
		}
		inForce[a.Kind+"\x1f"+a.Target] = a
	}
	r.mu.Lock()
	r.inForce = inForce
	r.exportWatches(inForce)
	r.mu.Unlock()
	return nil
}

// exportWatches makes vigil_responders_watch_active show the watches of
// inForce that have not lapsed: 1 for each, no series for the others, so
// a scrape names exactly what the platform must log verbosely. A nil map
// removes every series. Callers hold r.mu.
func (r *Responder) exportWatches(inForce map[string]ActionRecord) {
	now := r.cfg.Now()
	active := map[string]bool{}
	for _, a := range inForce {
		if a.Kind == Watch && a.ExpiresAt.After(now) {
			active[a.Target] = true
		}
	}
	for t := range r.watched {
		if !active[t] {
			kind, target := watchLabels(t)
			r.cfg.Metrics.WatchActive.DeleteLabelValues(kind, target)
		}
	}
	for t := range active {
		if !r.watched[t] {
			kind, target := watchLabels(t)
			r.cfg.Metrics.WatchActive.WithLabelValues(kind, target).Set(1)
		}
	}
	r.watched = active
}

// watchLabels splits a watch target, "key:ID" or "namespace:ORG/NS".
func watchLabels(target string) (kind, id string) {
	kind, id, _ = strings.Cut(target, ":")
	return kind, id
}

// lapseWatches drops the watches whose time is up, from what is in force
// and from the metric.
func (r *Responder) lapseWatches() {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, a := range r.inForce {
		if a.Kind == Watch && !a.ExpiresAt.After(now) {
			delete(r.inForce, k)
		}
	}
	r.exportWatches(r.inForce)
}

// runCatchUp triages stored alerts that no incident holds, then (with
// replan) plans incidents a stop left without actions.
func (r *Responder) runCatchUp(ctx context.Context, replan bool) {
	pending, err := r.store.PendingAlerts(ctx, r.cfg.Now().Add(-r.cfg.CatchUp))
	if err != nil {
		r.log.Warn("catch-up of stored alerts failed; retrying later", "err", err)
		r.catchUp.Store(true)
		return
	}
	n := 0
	for _, p := range pending {
		rule := r.rules(rulePrefix(p.Key))
		a, err := ParseAlert(p.Key, p.JSON, rule)
		if err != nil {
			r.log.Warn("stored alert unreadable; skipped", "key", p.Key, "err", err)
			continue
		}
		r.handle(ctx, a) // skips rules that are now in shadow mode
		n++
	}
	if n > 0 && replan {
		r.log.Info("triaged stored alerts that had no incident", "alerts", n)
	}
	if replan {
		r.replan(ctx)
	}
}

// replan plans the actions of alerts a stop left without any: the
// incident was written with the alert (so it is not pending) but the
// daemon stopped before the alert's plan was, whether the alert opened
// the incident or joined it with new targets.
func (r *Responder) replan(ctx context.Context) {
	unplanned, err := r.store.UnplannedAlerts(ctx, r.cfg.Now().Add(-r.cfg.CatchUp))
	if err != nil {
		r.log.Warn("reading incidents without actions failed; retrying at the next catch-up", "err", err)
		return
	}
	for _, p := range unplanned {
		rule := r.rules(rulePrefix(p.Key))
		a, err := ParseAlert(p.Key, p.JSON, rule)
		if err != nil || rule == nil || rule.Shadow || len(a.Actions) == 0 {
			continue
		}
		r.mu.Lock()
		inc := r.open[a.Rule+"\x1f"+strings.Join(a.groupStrings(), "\x1f")]
		r.mu.Unlock()
		if inc == nil || !slices.Contains(inc.AlertKeys, p.Key) {
			continue
		}
		r.log.Info("planning the actions of an incident a restart left without any", "incident", inc.ID, "alert", p.Key)
		r.plan(ctx, inc, a, rule)
	}
}

// rulePrefix returns the rule id at the start of an alert key.
func rulePrefix(key string) string {
	id, _, _ := strings.Cut(key, "\x1f")
	return id
}

// handle triages one alert: join or open the incident, gather evidence,
// write the incident, and only then plan its actions.
func (r *Responder) handle(ctx context.Context, a Alert) {
	defer func() {
		// A bug must not stop the response to every later alert.
		if p := recover(); p != nil {
			r.log.Error("responders: panic while triaging an alert; it is retried at the next start", "alert", a.Key,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	rule := r.rules(a.Rule)
	if rule != nil && rule.Shadow {
		return
	}
	r.Stats.Alerts.Add(1)
	ev, err := r.evidence(ctx, a)
	if err != nil {
		return // ctx ended; the alert is triaged by the next start's catch-up
	}
	inc, isNew, dup := r.triage(a, rule, ev)
	if dup {
		return
	}
	if err := r.retry(ctx, "write incident "+inc.ID, func(ctx context.Context) error { return r.store.WriteIncident(ctx, inc) }); err != nil {
		return
	}
	if isNew {
		r.Stats.Incidents.Add(1)
		r.cfg.Metrics.IncidentsOpened.WithLabelValues(inc.SeverityName).Inc()
		r.log.Warn("incident opened", "incident", inc.ID, "rule", inc.Rule, "severity", inc.SeverityName, "phi", inc.PHI)
	}
	r.plan(ctx, inc, a, rule)
}

func (r *Responder) evidence(ctx context.Context, a Alert) (Evidence, error) {
	var ev Evidence
	err := r.retry(ctx, "read evidence", func(ctx context.Context) error {
		var err error
		ev, err = r.store.Evidence(ctx, a.Source, a.SampleIDs, a.WindowStart.Add(-time.Hour), a.At.Add(time.Minute))
		return err
	})
	return ev, err
}

// triage joins the alert to the open incident of its rule and group when
// the alert's window began within the cooldown after that incident's last
// alert (the activity went on), else opens a new incident. dup reports an
// alert the incident already holds.
func (r *Responder) triage(a Alert, rule *rules.Rule, ev Evidence) (inc *Incident, isNew, dup bool) {
	now := r.cfg.Now().UTC()
	key := a.Rule + "\x1f" + strings.Join(a.groupStrings(), "\x1f")
	cooldown := a.WindowEnd.Sub(a.WindowStart)
	if rule != nil && rule.Cooldown > 0 {
		cooldown = rule.Cooldown
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen[a.Key] {
		return nil, false, true
	}
	r.remember(a.Key)
	// The incident's first event is the alert window's start, except for
	// new_value, whose window is the remember period before the one event
	// that fired.
	first := a.WindowStart
	if rule != nil && rule.Kind == rules.NewValue {
		first = a.At
	}
	inc = r.open[key]
	if inc == nil || a.WindowStart.After(inc.LastEvent.Add(cooldown)) {
		isNew = true
		sum := sha256.Sum256([]byte(key + "\x1f" + a.Key))
		inc = &Incident{
			ID: "inc_" + hex.EncodeToString(sum[:8]), Rule: a.Rule, Status: "open", Source: a.Source,
			Group: a.groupStrings(), GroupJSON: a.groupJSON(), FirstEvent: first, OpenedAt: now,
			Threshold: a.Threshold, Labels: a.Labels, QueryParams: map[string]string{},
		}
		r.open[key] = inc
	}
	if rule != nil {
		inc.RuleHash, inc.RuleFileHash, inc.RuleFile = rule.Hash, rule.FileHash, rule.File
	}
	if isNew || a.Severity < inc.Severity {
		inc.Severity = a.Severity
		inc.SeverityName = rules.Severity(a.Severity).Name()
	}
	inc.PHI = inc.PHI || a.PHI
	if inc.PHI && inc.NotificationDue.IsZero() {
		inc.NotificationDue = inc.OpenedAt.Add(60 * 24 * time.Hour)
	}
	if first.Before(inc.FirstEvent) {
		inc.FirstEvent = first
	}
	if a.At.After(inc.LastEvent) {
		inc.LastEvent = a.At
	}
	inc.Value = a.Value
	inc.Alerts++
	inc.AlertKeys = append(inc.AlertKeys, a.Key)
	inc.SampleIDs = union(inc.SampleIDs, a.SampleIDs, 50)
	inc.Orgs = union(inc.Orgs, ev.Orgs, 100)
	inc.Namespaces = union(inc.Namespaces, ev.Namespaces, 100)
	inc.Keys = union(inc.Keys, ev.Keys, 100)
	inc.AdminKeys = union(inc.AdminKeys, ev.AdminKeys, 100)
	inc.Addresses = union(inc.Addresses, ev.Addresses, 100)
	for _, g := range a.Group {
		switch g.Field {
		case "org_id":
			inc.Orgs = union(inc.Orgs, []string{g.Value}, 100)
		case "namespace":
			inc.Namespaces = union(inc.Namespaces, []string{g.Value}, 100)
		case "api_key_id":
			inc.Keys = union(inc.Keys, []string{g.Value}, 100)
		case "ip":
			inc.Addresses = union(inc.Addresses, []string{g.Value}, 100)
		}
	}
	// The first org seen for a namespace stays: its target must not change
	// while an isolation of it may be in force.
	for _, ns := range inc.Namespaces {
		if org := ev.NamespaceOrgs[ns]; org != "" && inc.NamespaceOrgs[ns] == "" {
			if inc.NamespaceOrgs == nil {
				inc.NamespaceOrgs = map[string]string{}
			}
			inc.NamespaceOrgs[ns] = org
		}
	}
	inc.Actions = union(inc.Actions, a.Actions, 10)
	inc.Query, inc.QueryParams = evidenceQuery(r.cfg.Database, a, inc, rule)
	if slices.Contains(a.Actions, IsolateNamespace) {
		inc.Notes = union(inc.Notes, r.isolationNotes(inc, a), 10)
	}
	inc.UpdatedAt = now
	cp := *inc
	cp.NamespaceOrgs = maps.Clone(inc.NamespaceOrgs) // the workers read the copy while triage writes on
	return &cp, isNew, false
}

// isolationNotes tells the people reading the incident which namespaces
// Vigil will not isolate, so that a human does: isolation is not
// configured, or the call needs an org that the incident does not name
// (the plan records those as skipped, not_configured or unknown_org).
func (r *Responder) isolationNotes(inc *Incident, a Alert) []string {
	targets := r.targets(IsolateNamespace, inc, a)
	if len(targets) == 0 {
		return nil
	}
	if r.sys.Isolator == nil {
		return []string{"namespace isolation is not configured: a human must isolate " + strings.Join(targets, ", ") +
			" (responders.admin_api.isolate)"}
	}
	if !r.needsOrg() {
		return nil
	}
	var bare []string
	for _, t := range targets {
		if ParseNamespace(t).Org == "" {
			bare = append(bare, t)
		}
	}
	if len(bare) == 0 {
		return nil
	}
	return []string{"the org of " + strings.Join(bare, ", ") + " is unknown and responders.admin_api.isolate needs {org_id}: " +
		"a human must isolate " + strings.Join(bare, ", ")}
}

// evidenceQuery selects the contributing events: the rule's source table,
// the incident's time span, the group's values. The rule's filter is an
// expr expression, not SQL, so it is given as a comment.
func evidenceQuery(db string, a Alert, inc *Incident, rule *rules.Rule) (string, map[string]string) {
	table := "request_events"
	if a.Source == "audit" {
		table = "audit_events"
	}
	params := map[string]string{
		"from": inc.FirstEvent.UTC().Format("2006-01-02 15:04:05.000"),
		"to":   inc.LastEvent.UTC().Format("2006-01-02 15:04:05.000"),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SELECT * FROM %s.%s FINAL WHERE ts >= {from:DateTime64(3)} AND ts <= {to:DateTime64(3)}", db, table)
	for i, g := range a.Group {
		name := fmt.Sprintf("g%d", i)
		params[name] = g.Value
		fmt.Fprintf(&b, " AND toString(%s) = {%s:String}", g.Field, name)
	}
	b.WriteString(" ORDER BY ts")
	if rule != nil && rule.WhereText != "" {
		b.WriteString(" -- rule filter: " + strings.Join(strings.Fields(rule.WhereText), " "))
	}
	return b.String(), params
}

func union(dst, add []string, max int) []string {
	for _, v := range add {
		if v == "" || slices.Contains(dst, v) {
			continue
		}
		if len(dst) >= max {
			break
		}
		dst = append(dst, v)
	}
	return dst
}

// retry runs f until it succeeds or ctx ends, with backoff; for writes
// that must happen before anything else may (the incident, the planned
// record of an action).
func (r *Responder) retry(ctx context.Context, what string, f func(context.Context) error) error {
	return r.retryN(ctx, what, 0, f)
}

// retryN is retry for at most attempts calls (0: no bound); a wait the
// other side asked for (Retry-After) replaces the backoff.
func (r *Responder) retryN(ctx context.Context, what string, attempts int, f func(context.Context) error) error {
	wait := r.cfg.RetryMin
	for attempt := 1; ; attempt++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempts > 0 && attempt >= attempts {
			return err
		}
		r.log.Warn("responders: "+what+" failed; retrying", "attempt", attempt, "err", err)
		d := wait
		if ra := RetryAfter(err); ra > 0 {
			d = ra
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
		}
		wait = min(2*wait, r.cfg.RetryMax)
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
