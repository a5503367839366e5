package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/config"
	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/responders"
	"github.com/vigil-sec/vigil/responders/adminapi"
	"github.com/vigil-sec/vigil/responders/cloudflare"
	"github.com/vigil-sec/vigil/responders/sentry"
	"github.com/vigil-sec/vigil/responders/webhook"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

// respondersConfig maps the responders section onto responders.Config.
func respondersConfig(cfg *config.Config, log *slog.Logger) responders.Config {
	r := cfg.Responders
	return responders.Config{
		DryRun: r.DryRun, Paused: r.Paused, Database: cfg.ClickHouse.Database, QueueSize: r.QueueSize, Workers: r.Workers,
		AllowCIDRs: r.Allowlist.Prefixes(), AllowKeys: r.Allowlist.Keys,
		PerMinute: r.Caps.PerMinute, PerIncident: r.Caps.PerIncident,
		BreakerActions: r.Breaker.MaxActions, BreakerErrors: r.Breaker.MaxErrors, BreakerCooldown: r.Breaker.Cooldown.D(),
		BlockTTL: r.Blocks.TTL.D(), BlockTTLMax: r.Blocks.MaxTTL.D(), OffenderMemory: r.Blocks.OffenderMemory.D(),
		WatchTTL: r.WatchTTL.D(), MaxAttempts: r.Retries.MaxAttempts, RetryMin: r.Retries.Min.D(), RetryMax: r.Retries.Max.D(),
		ExpiryInterval: r.Blocks.ExpiryInterval.D(), ReconcileInterval: r.Blocks.ReconcileInterval.D(),
		Logger: log,
	}
}

// policy is the detector's severity table with the configured severities
// in place of the defaults; a severity left out keeps its default.
func policy(cfg *config.Config) detector.Policy {
	p := detector.DefaultPolicy()
	for name, actions := range cfg.Responders.Policy {
		if sev, ok := rules.ParseSeverity(name); ok {
			p[sev] = append([]string{}, actions...)
		}
	}
	return p
}

// buildSystems builds a client for every external system configured;
// the ones left out make their actions skipped as not_configured.
func buildSystems(cfg *config.Config, log *slog.Logger) (responders.Systems, error) {
	r := cfg.Responders
	sys := responders.Systems{Notifiers: map[string]responders.Notifier{}}
	var errs []error
	if dsn := r.Sentry.DSN.Reveal(); dsn != "" {
		n, err := sentry.New(sentry.Config{DSN: dsn, Environment: r.Sentry.Environment, Release: "vigil@" + version})
		errs = append(errs, err)
		if err == nil {
			sys.Notifiers["sentry"] = n
		}
	}
	if r.Webhook.URL != "" {
		n, err := webhook.New(webhook.Config{URL: r.Webhook.URL, Secret: r.Webhook.Secret.Reveal()})
		errs = append(errs, err)
		if err == nil {
			sys.Notifiers["webhook"] = n
		}
	}
	if r.AdminAPI.URL != "" {
		acfg := adminapi.Config{BaseURL: r.AdminAPI.URL, Token: r.AdminAPI.Token.Reveal()}
		if iso := r.AdminAPI.Isolate; iso.Path != "" {
			acfg.Isolate = &adminapi.IsolateConfig{Method: iso.Method, Path: iso.Path, Body: iso.Body,
				LiftMethod: iso.LiftMethod, LiftPath: iso.LiftPath, LiftBody: iso.LiftBody}
		}
		c, err := adminapi.New(acfg)
		errs = append(errs, err)
		if err == nil {
			sys.Keys = c
			if acfg.Isolate != nil {
				sys.Isolator = c
			}
		}
	}
	if tok := r.Cloudflare.APIToken.Reveal(); tok != "" {
		retries := r.Cloudflare.MaxRetries
		if retries == 0 {
			retries = -1 // 0 in the config means none; 0 in cloudflare.Config means its default
		}
		c, err := cloudflare.New(cloudflare.Config{APIToken: tok, BaseURL: r.Cloudflare.BaseURL, AccountID: r.Cloudflare.AccountID,
			ZoneID: r.Cloudflare.ZoneID, Mode: r.Cloudflare.Mode, ListName: r.Cloudflare.ListName, MaxRetries: retries,
			RequestsPer5Min: r.Cloudflare.RequestsPer5Min, Logger: log})
		errs = append(errs, err)
		if err == nil {
			sys.Blocker = c
		}
	}
	return sys, errors.Join(errs...)
}

// openConfigStore loads a config and connects to its ClickHouse database,
// for the operator commands.
func openConfigStore(path string) (*config.Config, *storage.Store, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	scfg, err := storageConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := storage.Open(ctx, scfg)
	return cfg, store, err
}

// cmdIncidents is `vigil incidents list|show|resolve`.
func cmdIncidents(args []string, stdout, stderr io.Writer) int {
	const use = "usage: vigil incidents list [--status open|resolved] [--limit N] --config FILE\n" +
		"       vigil incidents show ID --config FILE\n       vigil incidents resolve ID --config FILE\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, use)
		return 2
	}
	fs := flag.NewFlagSet("vigil incidents "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file")
	status := fs.String("status", "", "only incidents with this status (open or resolved)")
	limit := fs.Int("limit", 50, "at most this many incidents")
	if err := fs.Parse(reorder(args[1:])); err != nil {
		return 2
	}
	if *cfgPath == "" || (args[0] != "list" && fs.NArg() != 1) {
		fmt.Fprint(stderr, use)
		return 2
	}
	if *status != "" && *status != "open" && *status != "resolved" {
		fmt.Fprintf(stderr, "vigil incidents list: --status %q: use open or resolved\n", *status)
		return 2
	}
	_, store, err := openConfigStore(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer store.Close()
	ctx := context.Background()
	switch args[0] {
	case "list":
		incs, err := store.Incidents(ctx, *status, *limit)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%-20s  %-8s  %-8s  %-3s  %-32s  %-20s  %6s  %s\n", "ID", "STATUS", "SEVERITY", "PHI", "RULE", "OPENED", "ALERTS", "GROUP")
		for _, inc := range incs {
			phi := "-"
			if inc.PHI {
				phi = "yes"
			}
			fmt.Fprintf(stdout, "%-20s  %-8s  %-8s  %-3s  %-32s  %-20s  %6d  %s\n", inc.ID, inc.Status, inc.SeverityName, phi, inc.Rule,
				inc.OpenedAt.Format(time.RFC3339), inc.Alerts, strings.Join(inc.Group, " "))
		}
		return 0
	case "show":
		inc, err := store.Incident(ctx, fs.Arg(0))
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		if inc == nil {
			fmt.Fprintf(stderr, "no incident %q (vigil incidents list shows them)\n", fs.Arg(0))
			return 1
		}
		acts, err := store.Actions(ctx, inc.ID)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		printIncident(stdout, inc, acts)
		return 0
	case "resolve":
		inc, err := store.Incident(ctx, fs.Arg(0))
		if err != nil || inc == nil {
			fmt.Fprintf(stderr, "no incident %q: %v\n", fs.Arg(0), err)
			return 1
		}
		if inc.Status == "resolved" { // resolving again must not move the review clock
			fmt.Fprintf(stdout, "%s was resolved at %s; post-incident review due %s\n", inc.ID,
				inc.ResolvedAt.Format(time.RFC3339), inc.ReviewDue.Format(time.RFC3339))
			return 0
		}
		now := time.Now().UTC()
		inc.Status, inc.ResolvedAt, inc.UpdatedAt = "resolved", now, now
		inc.ReviewDue = now.Add(72 * time.Hour)
		if err := store.WriteIncident(ctx, inc); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "%s resolved; post-incident review due %s\n", inc.ID, inc.ReviewDue.Format(time.RFC3339))
		return 0
	}
	fmt.Fprint(stderr, use)
	return 2
}

func printIncident(w io.Writer, inc *responders.Incident, acts []responders.ActionRecord) {
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(w, "%-18s %s\n", k+":", v)
		}
	}
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.Format(time.RFC3339)
	}
	line("incident", inc.ID)
	line("status", inc.Status)
	line("severity", fmt.Sprintf("%d %s", inc.Severity, inc.SeverityName))
	line("phi", fmt.Sprint(inc.PHI))
	line("rule", inc.Rule+" ("+inc.RuleFile+", rule "+inc.RuleHash+", file "+inc.RuleFileHash+")")
	line("threshold", inc.Threshold)
	line("group", strings.Join(inc.Group, " "))
	line("orgs", strings.Join(inc.Orgs, ", "))
	// In target form (org/namespace), as `vigil namespaces lift` takes them.
	namespaces := make([]string, len(inc.Namespaces))
	for i, ns := range inc.Namespaces {
		namespaces[i] = inc.NamespaceOf(ns).Target()
	}
	line("namespaces", strings.Join(namespaces, ", "))
	line("keys", strings.Join(inc.Keys, ", "))
	line("admin keys", strings.Join(inc.AdminKeys, ", "))
	line("addresses", strings.Join(inc.Addresses, ", "))
	line("events", ts(inc.FirstEvent)+" … "+ts(inc.LastEvent))
	line("opened", ts(inc.OpenedAt))
	line("resolved", ts(inc.ResolvedAt))
	line("notify by", ts(inc.NotificationDue))
	line("review by", ts(inc.ReviewDue))
	line("alerts", fmt.Sprint(inc.Alerts))
	line("samples", strings.Join(inc.SampleIDs, ", "))
	line("actions", strings.Join(inc.Actions, ", "))
	for _, n := range inc.Notes {
		line("note", n)
	}
	line("evidence query", inc.Query)
	for _, k := range sortedParamNames(inc.QueryParams) {
		fmt.Fprintf(w, "  --param_%s=%q\n", k, inc.QueryParams[k])
	}
	if len(acts) > 0 {
		fmt.Fprintln(w, "action log:")
		for _, a := range acts {
			extra := a.Detail
			if a.Guard != "" {
				extra = "guard=" + a.Guard + " " + extra
			}
			if a.Error != "" {
				extra += " error=" + a.Error
			}
			fmt.Fprintf(w, "  %s  %-17s %-20s %-9s #%d %s\n", a.At.Format("2006-01-02T15:04:05.000Z"), a.Kind, a.Target, a.Outcome, a.Attempt, strings.TrimSpace(extra))
		}
	}
}

func sortedParamNames(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// cmdUndo is `vigil keys restore`, `vigil namespaces lift` and `vigil ips unblock`.
func cmdUndo(kind, name string, args []string, stdout, stderr io.Writer) int {
	use := fmt.Sprintf("usage: vigil %s TARGET --incident ID --config FILE\n", name)
	fs := flag.NewFlagSet("vigil "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file")
	incident := fs.String("incident", "", "the incident this undoes (recorded with the action)")
	if err := fs.Parse(reorder(args)); err != nil {
		return 2
	}
	if *cfgPath == "" || *incident == "" || fs.NArg() != 1 {
		fmt.Fprint(stderr, use)
		return 2
	}
	cfg, store, err := openConfigStore(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer store.Close()
	log := newLogger(cfg.Log, stderr)
	sys, err := buildSystems(cfg, log)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	rcfg := respondersConfig(cfg, log)
	rcfg.MaxAttempts = min(rcfg.MaxAttempts, 3)
	r := responders.New(rcfg, store, sys, func(string) *rules.Rule { return nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := r.Undo(ctx, kind, fs.Arg(0), *incident); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s %s done; recorded for %s\n", kind, fs.Arg(0), *incident)
	return 0
}

// cmdRespond is `vigil respond pause|resume|status`: the kill switch, for
// every daemon writing to the configured database.
func cmdRespond(args []string, stdout, stderr io.Writer) int {
	const use = "usage: vigil respond pause|resume|status --config FILE\n"
	if len(args) == 0 {
		fmt.Fprint(stderr, use)
		return 2
	}
	fs := flag.NewFlagSet("vigil respond", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *cfgPath == "" {
		fmt.Fprint(stderr, use)
		return 2
	}
	cfg, store, err := openConfigStore(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	defer store.Close()
	ctx := context.Background()
	switch args[0] {
	case "pause", "resume":
		if err := store.SetPaused(ctx, args[0] == "pause"); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "responders %sd; running daemons pick it up within seconds\n", args[0])
		return 0
	case "status":
		p, err := store.Paused(ctx)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		switch {
		case p:
			fmt.Fprintln(stdout, "responders paused (vigil respond resume)")
		case cfg.Responders.Paused:
			// The daemons started from this file are paused whatever the
			// shared switch says.
			fmt.Fprintf(stdout, "responders paused by responders.paused in %s (the shared switch is off)\n", *cfgPath)
		default:
			fmt.Fprintln(stdout, "responders active")
		}
		return 0
	}
	fmt.Fprint(stderr, use)
	return 2
}

// reorder moves flags before positional arguments, so `show ID --config F`
// works like `show --config F ID`.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			flags = append(flags, a)
			if !strings.Contains(a, "=") && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}
