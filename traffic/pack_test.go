package traffic

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/replay"
	"github.com/vigil-sec/vigil/rules"
)

// The shipped rule pack (configs/rules) against generated traffic: a benign
// day must raise no alert, and each injected attack must raise the alerts
// its manifest expects, inside its time span and for its group, and
// nothing else.

// slow reports whether the pack tests must use less traffic: with -short,
// and under the race detector, which slows the detector down about
// thirty-fold.
func slow() bool { return testing.Short() || raceEnabled }

// benignDay is a weekday at the default (realistic) rate, about 5.5
// million events; in slow mode the same day at a twelfth of the rate.
func benignDay() Config {
	if slow() {
		return Config{Seed: 7, Rate: 4}
	}
	return Config{Seed: 7}
}

// attackDay is a weekday with every attack; in slow mode the 12 busiest
// hours at a sixth of the rate (the outage rule needs 200 search requests
// in 2 minutes).
func attackDay() Config {
	if slow() {
		return Config{Seed: 11, Rate: 8, Start: DefaultStart.Add(8 * time.Hour),
			Duration: 12 * time.Hour, Attacks: AttackNames()}
	}
	return Config{Seed: 11, Attacks: AttackNames()}
}

// demo is what `make demo` generates: 30 busy minutes with every attack.
func demo() Config {
	return Config{Seed: 1, Start: DefaultStart.Add(14 * time.Hour), Duration: 30 * time.Minute, Attacks: AttackNames()}
}

type seenAlert struct {
	rule  string
	at    time.Time
	group map[string]string
	text  string
}

// replayPack generates cfg into a temporary directory and replays it
// through every rule file in configs/rules.
func replayPack(t *testing.T, cfg Config) (*Manifest, []seenAlert) {
	t.Helper()
	dir := t.TempDir()
	began := time.Now()
	m, err := WriteDir(cfg, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	generated := time.Since(began)
	set, err := rules.LoadFiles("../configs/rules")
	if err != nil {
		t.Fatal(err)
	}
	det := detector.New(set.Rules, detector.Config{})
	defer det.Close()
	var alerts []seenAlert
	sum, err := replay.Run(replay.Options{
		Requests: []string{filepath.Join(dir, RequestsFile)},
		Audit:    []string{filepath.Join(dir, AuditFile)},
	}, det, func(a *detector.Alert) {
		g := map[string]string{}
		for _, v := range a.Group {
			g[v.Field.Name] = v.Value
		}
		alerts = append(alerts, seenAlert{rule: a.Rule.ID, at: time.Unix(0, a.At).UTC(), group: g,
			text: string(a.AppendJSON(nil))})
	})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Invalid != 0 {
		t.Errorf("%d invalid lines, first: %+v", sum.Invalid, sum.InvalidSamples)
	}
	t.Logf("%d requests + %d audit events at %g/s over %s: generated in %s, replayed through %d rules in %s",
		m.Requests, m.Audit, m.Rate, m.End.Sub(m.Start), generated.Round(time.Millisecond), len(set.Rules),
		sum.Elapsed.Round(time.Millisecond))
	return m, alerts
}

func TestPackQuietOnBenignDay(t *testing.T) {
	t.Parallel()
	_, alerts := replayPack(t, benignDay())
	for _, a := range alerts {
		t.Errorf("benign traffic raised an alert: %s", a.text)
	}
}

func TestPackCatchesAttacks(t *testing.T) {
	t.Parallel()
	checkAttacks(t, attackDay())
}

func TestPackCatchesAttacksInDemo(t *testing.T) {
	t.Parallel()
	checkAttacks(t, demo())
}

// checkAttacks replays cfg and requires, for each attack, an alert of each
// rule it expects, inside its span and for its group values, and no alert
// that no attack explains.
func checkAttacks(t *testing.T, cfg Config) {
	m, alerts := replayPack(t, cfg)
	if len(m.Skipped) > 0 {
		t.Errorf("attacks skipped: %+v", m.Skipped)
	}
	if len(m.Attacks) != len(AttackNames()) {
		t.Errorf("manifest lists %d attacks, want %d", len(m.Attacks), len(AttackNames()))
	}
	explained := make([]bool, len(alerts))
	for _, at := range m.Attacks {
		for _, rule := range at.Rules {
			found := false
			for i, a := range alerts {
				if a.rule == rule && within(a, at) && groupMatches(a, at) {
					found, explained[i] = true, true
				}
			}
			if !found {
				t.Errorf("attack %s (%s .. %s, group %v) raised no %s alert", at.Name,
					at.Start.Format(time.TimeOnly), at.End.Format(time.TimeOnly), at.Group, rule)
			}
		}
	}
	for i, a := range alerts {
		if !explained[i] {
			t.Errorf("alert outside the attacks' spans, rules or groups: %s%s", a.text, nearest(a, m.Attacks))
		}
	}
}

func within(a seenAlert, at Attack) bool { return !a.at.Before(at.Start) && !a.at.After(at.End) }

// groupMatches: every group field the attack names has the attack's value.
func groupMatches(a seenAlert, at Attack) bool {
	for f, v := range a.group {
		if want, ok := at.Group[f]; ok && want != v {
			return false
		}
	}
	return true
}

func nearest(a seenAlert, attacks []Attack) string {
	var parts []string
	for _, at := range attacks {
		if slices.Contains(at.Rules, a.rule) {
			parts = append(parts, fmt.Sprintf("%s %s..%s %v", at.Name, at.Start.Format(time.TimeOnly),
				at.End.Format(time.TimeOnly), at.Group))
		}
	}
	if len(parts) == 0 {
		return " (no attack expects this rule)"
	}
	return " (attacks expecting it: " + strings.Join(parts, "; ") + ")"
}
