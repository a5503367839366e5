package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/vigil-sec/vigil/config"
	"github.com/vigil-sec/vigil/internal/yamlpos"
	"github.com/vigil-sec/vigil/metrics"
	"github.com/vigil-sec/vigil/rules"
)

// reloader re-reads the configuration and the rules it names, validates
// them fully, and only then hands them to apply. A bad file changes
// nothing: the running rules stay, every problem is logged with
// file:line:col, and the failed-reload metric is set. Reloads come from
// SIGHUP, POST /-/reload and a change of the rule files.
type reloader struct {
	cfgPath string
	log     *slog.Logger
	m       *metrics.Metrics
	apply   func(cfg *config.Config, set *rules.Set)
	// check, when set, validates what loaded before apply (what the loaders
	// cannot know, e.g. whether long-window rules compile to SQL).
	check func(cfg *config.Config, set *rules.Set) error

	mu   sync.Mutex
	last [32]byte // content hash of the config and rule files last tried
}

// Reload loads and applies; the error lists every problem found.
func (r *reloader) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last, _ = r.fingerprint()
	cfg, err := config.Load(r.cfgPath)
	var set *rules.Set
	if err == nil {
		set, err = rules.LoadFiles(cfg.Rules.Paths...)
	}
	if err == nil && r.check != nil {
		err = r.check(cfg, set)
	}
	if err != nil {
		r.m.Reloads.WithLabelValues("failure").Inc()
		r.m.LastReloadOK.Set(0)
		var list rules.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				r.log.Error("rule reload rejected; the previous rules keep running", "problem", e.Error())
			}
		} else {
			r.log.Error("reload rejected; the previous configuration keeps running", "err", err)
		}
		return err
	}
	r.apply(cfg, set)
	r.m.Reloads.WithLabelValues("success").Inc()
	r.loaded(len(set.Rules))
	r.log.Info("rules reloaded", "rules", len(set.Rules), "files", len(set.Files))
	return nil
}

// loaded records a successful load of n rules.
func (r *reloader) loaded(n int) {
	r.m.LastReloadOK.Set(1)
	r.m.LastReloadTime.Set(float64(time.Now().Unix()))
	r.m.RulesLoaded.Set(float64(n))
}

// fingerprint hashes the configuration file and every rule file it names.
// Hashing contents (not modification times) also sees Kubernetes'
// ConfigMap updates, which swap a symlink.
func (r *reloader) fingerprint() ([32]byte, error) {
	h := sha256.New()
	data, err := os.ReadFile(r.cfgPath)
	if err != nil {
		return [32]byte{}, err
	}
	h.Write(data)
	if cfg, err := config.Load(r.cfgPath); err == nil {
		files, _ := yamlpos.ExpandPaths("rule", cfg.Rules.Paths, false)
		for _, f := range files {
			b, _ := os.ReadFile(f)
			h.Write([]byte(f))
			h.Write(b)
		}
	}
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// watch reloads when the files' contents change, checking every interval.
func (r *reloader) watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		<-ctx.Done()
		return
	}
	r.mu.Lock()
	r.last, _ = r.fingerprint()
	r.mu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sum, err := r.fingerprint()
		r.mu.Lock()
		changed := err == nil && sum != r.last
		r.mu.Unlock()
		if changed {
			r.log.Info("configuration or rule files changed; reloading")
			r.Reload(ctx) //nolint:errcheck // logged and counted by Reload
		}
	}
}
