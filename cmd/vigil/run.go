package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	oklog "github.com/oklog/run"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vigil-sec/vigil/config"
	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
	"github.com/vigil-sec/vigil/ingest"
	"github.com/vigil-sec/vigil/longrules"
	"github.com/vigil-sec/vigil/metrics"
	"github.com/vigil-sec/vigil/opshttp"
	"github.com/vigil-sec/vigil/pipeline"
	"github.com/vigil-sec/vigil/responders"
	"github.com/vigil-sec/vigil/responders/sentry"
	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/storage"
)

// cmdRun is the daemon: `vigil run --config FILE`. Every long-running part
// is an actor of one run.Group, so the first to stop stops the others in
// order and the process exits with its error.
func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (see configs/vigil.example.yaml)")
	printAlerts := fs.Bool("print-alerts", false, "also print each alert as a JSON line on stdout")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *cfgPath == "" || fs.NArg() > 0 {
		fmt.Fprint(stderr, "usage: vigil run --config FILE [--print-alerts]\n")
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	log := newLogger(cfg.Log, stderr)
	// Vigil's own errors also go to Sentry when a DSN is set, apart from
	// incidents (tag kind=internal).
	if dsn := cfg.Responders.Sentry.DSN.Reveal(); dsn != "" {
		rep, err := sentry.New(sentry.Config{DSN: dsn, Environment: cfg.Responders.Sentry.Environment, Release: "vigil@" + version})
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		fwd, stop := newErrorForwarder(log.Handler(), rep)
		defer stop()
		log = slog.New(fwd)
	}
	set, err := rules.LoadFiles(cfg.Rules.Paths...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	if err := runDaemon(*cfgPath, cfg, set, log, stdout, *printAlerts); err != nil {
		log.Error("vigil stopped", "err", err)
		return 1
	}
	return 0
}

func runDaemon(cfgPath string, cfg *config.Config, set *rules.Set, log *slog.Logger, stdout io.Writer, printAlerts bool) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := checkLongRules(cfg, set); err != nil {
		return err
	}
	log.Info("vigil starting", "version", version, "rules", len(set.Rules), "clickhouse", cfg.ClickHouse.Addr, "brokers", cfg.Kafka.Brokers)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg, version)
	scfg, err := storageConfig(cfg)
	if err != nil {
		return err
	}
	store, err := openStore(ctx, scfg, log)
	if err != nil {
		return err
	}
	defer store.Close()

	kTLS, err := tlsConfig(cfg.Kafka.TLS)
	if err != nil {
		return fmt.Errorf("kafka.tls: %w", err)
	}
	topics := map[string]event.Source{}
	if cfg.Kafka.Topics.Requests != "" {
		topics[cfg.Kafka.Topics.Requests] = event.Requests
	}
	if cfg.Kafka.Topics.Audit != "" {
		topics[cfg.Kafka.Topics.Audit] = event.Audit
	}
	icfg := ingest.Config{
		Brokers: cfg.Kafka.Brokers, GroupID: cfg.Kafka.GroupID, ClientID: cfg.Kafka.ClientID, Topics: topics,
		DeadLetterTopic: cfg.Kafka.DeadLetterTopic, TLS: kTLS, SASLMechanism: cfg.Kafka.SASL.Mechanism,
		SASLUser: cfg.Kafka.SASL.Username, SASLPassword: cfg.Kafka.SASL.Password.Reveal(), Logger: log,
		SessionTimeout: cfg.Kafka.SessionTimeout.D(), HeartbeatInterval: cfg.Kafka.HeartbeatInterval.D(),
		RebalanceTimeout: cfg.Kafka.RebalanceTimeout.D(),
	}
	var dlq pipeline.DeadLetterSink
	if cfg.Kafka.DeadLetterTopic != "" {
		w, err := ingest.NewDeadLetterWriter(icfg)
		if err != nil {
			return err
		}
		defer w.Close()
		dlq = w
	}

	// The rules the responders look up; swapped whole on reload.
	var ruleByID atomic.Pointer[map[string]*rules.Rule]
	indexRules := func(set *rules.Set) {
		byID := make(map[string]*rules.Rule, len(set.Rules))
		for _, r := range set.Rules {
			byID[r.ID] = r
		}
		ruleByID.Store(&byID)
	}
	indexRules(set)

	// Responders: alerts become incidents in ClickHouse, then actions run
	// behind the guards. The queue never blocks the data path.
	var (
		resp     *responders.Responder
		newResp  func() *responders.Responder
		keyed    = cfg.Scaling.Keyed()
		respLead atomic.Pointer[responders.Responder] // keyed: this replica's while it leads
		// The dry-run and pause switches as last reloaded, for responders
		// a later leadership term creates.
		dryRun, paused atomic.Bool
	)
	dryRun.Store(cfg.Responders.DryRun)
	paused.Store(cfg.Responders.Paused)
	if cfg.Responders.Enabled {
		sys, err := buildSystems(cfg, log)
		if err != nil {
			return err
		}
		if e, ok := sys.Blocker.(interface{ Ensure(context.Context) error }); ok {
			// Create the IP list and the WAF rule now, so a bad token or
			// scope shows at start rather than at the first attack.
			ectx, ecancel := context.WithTimeout(ctx, time.Minute)
			if err := e.Ensure(ectx); err != nil {
				log.Error("cloudflare set-up failed; block_ip will retry it at the first block", "err", err)
			}
			ecancel()
		}
		rcfg := respondersConfig(cfg, log)
		rcfg.Metrics = m
		if keyed {
			// One replica responds for all, reading their alerts from
			// ClickHouse: rate caps and the breaker hold for the fleet.
			rcfg.PollInterval = time.Second
		}
		newResp = func() *responders.Responder {
			r := responders.New(rcfg, store, sys, func(id string) *rules.Rule { return (*ruleByID.Load())[id] })
			r.SetSwitches(dryRun.Load(), paused.Load())
			return r
		}
		if !keyed {
			resp = newResp()
		}
		log.Info("responders ready", "dry_run", cfg.Responders.DryRun, "paused", cfg.Responders.Paused, "elected", keyed,
			"notifiers", len(sys.Notifiers), "admin_api", sys.Keys != nil, "isolation", sys.Isolator != nil, "cloudflare", sys.Blocker != nil)
	}
	// Rules whose window outgrows memory run as ClickHouse queries
	// (docs/long-window-rules.md); the detector gets the others.
	limit := cfg.Detector.MemoryWindowLimit.D()
	inMem, long := longrules.Split(set.Rules, limit)
	var (
		line    []byte
		alertMu sync.Mutex // onAlert runs for the pipeline and for long-window rules
	)
	onAlert := func(a *detector.Alert) {
		alertMu.Lock()
		defer alertMu.Unlock()
		log.Info("alert", "rule", a.Rule.ID, "severity", a.Severity.Name(), "phi", a.PHI, "value", a.Value, "at", detector.FormatTime(a.At))
		if printAlerts {
			line = append(a.AppendJSON(line[:0]), '\n')
			stdout.Write(line)
		}
		if resp != nil && !a.Rule.Shadow {
			resp.Enqueue(responders.FromDetector(a))
		}
	}
	plCfg := pipeline.Config{
		BatchSize: cfg.ClickHouse.BatchSize, BatchInterval: cfg.ClickHouse.BatchInterval.D(),
		MaxBuffered: cfg.ClickHouse.MaxBuffered, Inserts: cfg.ClickHouse.Inserts, ReorderSlack: offIfZero(cfg.Detector.ReorderSlack.D()), Logger: log, Metrics: m,
		OnAlert: onAlert,
	}
	var (
		pl        *pipeline.Pipeline // the detecting pipeline
		pls       []*pipeline.Pipeline
		consumers []*ingest.Consumer
		elect     func(ctx context.Context) error
		longRules atomic.Pointer[[]*rules.Rule] // the long-window rules, for each new runner
		longLead  atomic.Pointer[longrules.Runner]
	)
	longRules.Store(&long)
	newLong := func() *longrules.Runner {
		return longrules.NewRunner(longrules.RunnerConfig{Store: store, Database: cfg.ClickHouse.Database, Rules: *longRules.Load(),
			Interval: cfg.Detector.LongWindowInterval.D(),
			Policy:   policy(cfg), Namespaces: cfg.Namespaces, Logger: log.With("component", "longrules"),
			Emit: func(a *detector.Alert) { storeLongAlert(ctx, store, m, log, a); onAlert(a) }})
	}
	if keyed {
		k, err := startKeyed(ctx, cfg, inMem, icfg, plCfg, store, dlq, log)
		if err != nil {
			return err
		}
		defer k.close()
		pl, pls, consumers = k.detect, []*pipeline.Pipeline{k.route, k.detect}, k.consumers
		// One replica, elected through the group protocol, runs what must
		// run once for the fleet: the responders and the long-window rules.
		elect = func(ctx context.Context) error {
			return ingest.Elect(ctx, icfg, k.electGroup, k.electTopic, func(ctx context.Context) {
				log.Info("this replica now leads: it runs the responders and the long-window rules for the fleet")
				var wg sync.WaitGroup
				if newResp != nil {
					r := newResp()
					respLead.Store(r)
					wg.Go(func() {
						if err := r.Run(ctx); err != nil {
							log.Error("responders stopped", "err", err)
						}
					})
				}
				lr := newLong() // a new term reads cooldowns back from ClickHouse
				longLead.Store(lr)
				wg.Go(func() {
					if err := lr.Run(ctx); err != nil {
						log.Error("long-window rules stopped", "err", err)
					}
				})
				wg.Wait()
				respLead.Store(nil)
				longLead.Store(nil)
				log.Info("this replica no longer leads")
			})
		}
	} else {
		consumer, err := ingest.NewConsumer(icfg)
		if err != nil {
			return err
		}
		defer consumer.Close()
		det := detector.New(inMem, detectorConfig(cfg))
		defer det.Close()
		pl = pipeline.New(plCfg, consumer, store, dlq, det)
		pls, consumers = []*pipeline.Pipeline{pl}, []*ingest.Consumer{consumer}
		longLead.Store(newLong()) // one replica: it always evaluates the long-window rules
		// Continue where the last run stopped: replay the committed history of
		// the rules' lookback so windows, baselines and cooldowns are whole.
		if lb := detector.Lookback(inMem, cfg.Detector.Lateness.D(), cfg.Detector.RebuildLookback.D()); lb > 0 {
			committed, err := consumer.GroupCommitted(ctx)
			if err != nil {
				return err
			}
			began := time.Now()
			n, err := pl.Rebuild(ctx, store, committed, lb)
			if err != nil {
				return fmt.Errorf("rebuilding detection state: %w", err)
			}
			log.Info("detection state rebuilt from ClickHouse", "events", n, "lookback", lb.String(), "took", time.Since(began).Round(time.Millisecond).String())
		}
	}
	consumer := consumers[0]
	reg.MustRegister(stateCollector(pl, resp, func() bool { return !keyed || longLead.Load() != nil }, respLead.Load, consumers...))
	rl := &reloader{cfgPath: cfgPath, log: log, m: m, check: checkLongRules, apply: func(newCfg *config.Config, newSet *rules.Set) {
		inMem, long := longrules.Split(newSet.Rules, newCfg.Detector.MemoryWindowLimit.D())
		for _, p := range pls {
			p.Reload(inMem)
		}
		longRules.Store(&long)
		if lr := longLead.Load(); lr != nil {
			if err := lr.Replace(long); err != nil { // checked before apply: not expected
				log.Error("long-window rules not reloaded", "err", err)
			}
		}
		indexRules(newSet)
		dryRun.Store(newCfg.Responders.DryRun)
		paused.Store(newCfg.Responders.Paused)
		if resp != nil {
			resp.SetSwitches(newCfg.Responders.DryRun, newCfg.Responders.Paused)
		}
		if r := respLead.Load(); r != nil {
			r.SetSwitches(newCfg.Responders.DryRun, newCfg.Responders.Paused)
		}
	}}
	rl.loaded(len(set.Rules))

	log.Info("vigil running", "topics", topics, "group", cfg.Kafka.GroupID, "database", cfg.ClickHouse.Database)
	var g oklog.Group
	if cfg.Ops.Addr != "" {
		ops, err := opshttp.New(opshttp.Config{Addr: cfg.Ops.Addr, AllowCIDRs: cfg.Ops.Prefixes(),
			BasicAuthUser: cfg.Ops.BasicAuthUser, BasicAuthPassword: cfg.Ops.BasicAuthPassword.Reveal(),
			TLSCertFile: cfg.Ops.TLSCertFile, TLSKeyFile: cfg.Ops.TLSKeyFile, Logger: log},
			opshttp.Handlers{
				Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
				Ready: func(ctx context.Context) error {
					if err := store.Ping(ctx); err != nil {
						return errors.New("clickhouse not reachable")
					}
					if _, err := consumer.Lag(ctx); err != nil {
						return errors.New("kafka not reachable")
					}
					return nil
				},
				Reload: rl.Reload,
			})
		if err != nil {
			return fmt.Errorf("ops: %w", err)
		}
		octx, ocancel := context.WithCancel(ctx)
		g.Add(func() error { return ops.Run(octx) }, func(error) { ocancel() })
		log.Info("operations listener", "addr", cfg.Ops.Addr, "endpoints", "/metrics /healthz /readyz /-/reload")
	}
	{
		wctx, wcancel := context.WithCancel(ctx)
		g.Add(func() error { rl.watch(wctx, cfg.Ops.WatchInterval.D()); return nil }, func(error) { wcancel() })
	}
	{
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		stop := make(chan struct{})
		g.Add(func() error {
			for {
				select {
				case <-hup:
					rl.Reload(ctx) //nolint:errcheck // logged and counted by Reload
				case <-stop:
					return nil
				}
			}
		}, func(error) { signal.Stop(hup); close(stop) })
	}
	for _, p := range pls {
		pctx, pcancel := context.WithCancel(ctx)
		g.Add(func() error { return p.Run(pctx) }, func(error) { pcancel() })
	}
	if elect != nil {
		ectx, ecancel := context.WithCancel(ctx)
		g.Add(func() error { return elect(ectx) }, func(error) { ecancel() })
	} else {
		lr := longLead.Load()
		lctx, lcancel := context.WithCancel(ctx)
		g.Add(func() error { return lr.Run(lctx) }, func(error) { lcancel() })
	}
	if resp != nil {
		rctx, rcancel := context.WithCancel(ctx)
		g.Add(func() error { return resp.Run(rctx) }, func(error) { rcancel() })
	}
	{
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
		stop := make(chan struct{})
		g.Add(func() error {
			select {
			case s := <-sig:
				log.Info("stopping: draining in-flight batches", "signal", s.String())
			case <-stop:
			}
			return nil
		}, func(error) { signal.Stop(sig); close(stop) })
	}
	err = g.Run()
	log.Info("vigil stopped", "reorder_forced", pl.Stats.ReorderForced.Load(), "consumed", pl.Stats.Consumed.Load(), "stored", pl.Stats.Stored.Load(),
		"invalid", pl.Stats.Invalid.Load(), "alerts", pl.Stats.Alerts.Load())
	return err
}

// checkLongRules rejects a rule set with a long-window rule that cannot
// run in ClickHouse, naming each (file:line) and the fix.
func checkLongRules(cfg *config.Config, set *rules.Set) error {
	_, long := longrules.Split(set.Rules, cfg.Detector.MemoryWindowLimit.D())
	if _, err := longrules.CompileAll(long, cfg.ClickHouse.Database); err != nil {
		return fmt.Errorf("%w\n(rules whose window exceeds detector.memory_window_limit run as ClickHouse queries: simplify their where, or raise the limit to evaluate them in memory)", err)
	}
	return nil
}

// storeLongAlert stores an alert of a long-window rule before anything
// else sees it: its cooldown is read back from the alerts table, and keyed
// replicas' responders read alerts from there. Transient failures are
// retried until ctx ends.
func storeLongAlert(ctx context.Context, store *storage.Store, m *metrics.Metrics, log *slog.Logger, a *detector.Alert) {
	for attempt := 0; ; attempt++ {
		err := store.InsertAlerts(ctx, []*detector.Alert{a})
		if err == nil {
			break
		}
		if !storage.IsRetryable(err) || ctx.Err() != nil {
			log.Error("storing a long-window alert failed", "rule", a.Rule.ID, "err", err)
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(min(time.Duration(attempt+1)*time.Second, 30*time.Second)):
		}
	}
	if a.Rule.Shadow {
		m.ShadowAlerts.WithLabelValues(a.Rule.ID, a.Severity.Name()).Inc()
	} else {
		m.Alerts.WithLabelValues(a.Rule.ID, a.Severity.Name()).Inc()
	}
}

// storageConfig is the ClickHouse part of cfg, for the daemon and the CLI.
func storageConfig(cfg *config.Config) (storage.Config, error) {
	chTLS, err := tlsConfig(cfg.ClickHouse.TLS)
	if err != nil {
		return storage.Config{}, fmt.Errorf("clickhouse.tls: %w", err)
	}
	return storage.Config{
		Addr: cfg.ClickHouse.Addr, Database: cfg.ClickHouse.Database, Username: cfg.ClickHouse.Username,
		Password: cfg.ClickHouse.Password.Reveal(), TLS: chTLS,
		RequestsTTL: cfg.ClickHouse.Retention.Requests.D(), AuditTTL: cfg.ClickHouse.Retention.Audit.D(),
		Cluster: cfg.ClickHouse.Cluster, Shards: cfg.ClickHouse.Shards,
	}, nil
}

// openStore connects to ClickHouse, waiting with backoff while it is not
// up yet (a daemon started beside its database should not crash-loop).
func openStore(ctx context.Context, cfg storage.Config, log *slog.Logger) (*storage.Store, error) {
	wait := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		s, err := storage.Open(ctx, cfg)
		if err == nil {
			return s, nil
		}
		if !storage.IsRetryable(err) || attempt >= 30 {
			return nil, err
		}
		log.Warn("clickhouse not reachable yet; retrying", "attempt", attempt, "err", err)
		time.Sleep(wait)
		wait = min(2*wait, 10*time.Second)
	}
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func tlsConfig(c config.TLS) (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	t := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("ca_file holds no PEM certificate")
		}
		t.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, err
		}
		t.Certificates = []tls.Certificate{cert}
	}
	return t, nil
}

// detectorConfig is the detector's part of cfg, the same for the daemon
// and the backtest.
func detectorConfig(cfg *config.Config) detector.Config {
	return detector.Config{MaxGroups: cfg.Detector.MaxGroups, Lateness: cfg.Detector.Lateness.D(),
		DedupWindow: offIfZero(cfg.Detector.DedupWindow.D()),
		Namespaces:  cfg.Namespaces, Shards: cfg.Detector.ShardCount(), Policy: policy(cfg)}
}

// offIfZero maps a config duration where 0 means "off" to the libraries'
// convention, where 0 means their default and negative means off.
func offIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}
