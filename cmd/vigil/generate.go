package main

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/traffic"
)

func cmdGenerate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", "", "directory to write requests.jsonl, audit.jsonl and attacks.json into (required)")
	start := fs.String("start", traffic.DefaultStart.Format(time.RFC3339), "start of the span, RFC 3339")
	duration := fs.Duration("duration", traffic.DefaultDuration, "length of the span")
	rate := fs.Float64("rate", traffic.DefaultRate, "mean requests per second over a weekday")
	seed := fs.Uint64("seed", 1, "seed: the same seed and flags give the same files")
	attacks := fs.String("attacks", "all", "attacks to inject: all, none, or a comma-separated list of names")
	compress := fs.Bool("gzip", false, "gzip the logs (requests.jsonl.gz, audit.jsonl.gz)")
	invalid := fs.Int("invalid", 0, "lines per mille made invalid in assorted ways, for dead-letter tests")
	quiet := fs.Bool("q", false, "no summary on stderr")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: vigil generate --out DIR [--start RFC3339] [--duration 24h] [--rate 50] [--seed 1]\n"+
			"                      [--attacks all|none|NAME,NAME] [--gzip] [--invalid N]\n\n"+
			"Writes realistic request and audit logs of the API platform with attacks mixed in, and\n"+
			"attacks.json: each attack's time span, group values and the rules expected to fire.\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nattacks: %s\n", strings.Join(traffic.AttackNames(), ", "))
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg := traffic.Config{Duration: *duration, Rate: *rate, Seed: *seed, InvalidPerMille: *invalid}
	t, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		fmt.Fprintf(stderr, "vigil generate: --start: %v\n", err)
		return 2
	}
	cfg.Start = t
	switch *attacks {
	case "all":
		cfg.Attacks = traffic.AttackNames()
	case "none", "":
	default:
		for _, a := range strings.Split(*attacks, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.Attacks = append(cfg.Attacks, a)
			}
		}
	}
	began := time.Now()
	m, err := traffic.WriteDir(cfg, *out, *compress)
	if err != nil {
		fmt.Fprintf(stderr, "vigil generate: %v\n", err)
		return 2
	}
	if *quiet {
		return 0
	}
	elapsed := time.Since(began)
	lines := m.Requests + m.Audit
	fmt.Fprintf(stderr, "%s .. %s: %d request and %d audit lines (%d invalid) in %s, %.0f lines/s\n",
		m.Start.Format(time.RFC3339), m.End.Format(time.RFC3339), m.Requests, m.Audit,
		m.InvalidRequests+m.InvalidAudit, elapsed.Round(time.Millisecond), float64(lines)/elapsed.Seconds())
	for _, a := range m.Attacks {
		fmt.Fprintf(stderr, "  %-22s %s .. %s  expect %s\n", a.Name, a.Start.Format("15:04:05"), a.End.Format("15:04:05"),
			strings.Join(a.Rules, ", "))
	}
	for _, s := range m.Skipped {
		fmt.Fprintf(stderr, "  %-22s skipped: %s\n", s.Name, s.Reason)
	}
	fmt.Fprintf(stderr, "wrote %s\n", filepath.Join(*out, traffic.ManifestFile))
	return 0
}
