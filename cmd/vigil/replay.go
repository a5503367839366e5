package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/replay"
	"github.com/vigil-sec/vigil/rules"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func cmdReplay(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var ruleFiles, reqFiles, auditFiles stringList
	fs.Var(&ruleFiles, "rules", "rule file or directory (repeatable)")
	fs.Var(&reqFiles, "requests", "request log file, JSON lines, optionally .gz (repeatable)")
	fs.Var(&auditFiles, "audit", "audit log file, JSON lines, optionally .gz (repeatable)")
	maxGroups := fs.Int("max-groups", detector.DefaultMaxGroups, "groups tracked per rule before the stalest is evicted")
	lateness := fs.Duration("lateness", detector.DefaultLateness, "how far behind its group's newest event an event is still counted")
	shards := fs.Int("shards", 1, "goroutines evaluating rules (output is the same for any value)")
	dedupWindow := fs.Duration("dedup-window", detector.DefaultDedupWindow, "a record whose id was seen less than this much event time before is a duplicate and skipped; 0 disables")
	merge := fs.Bool("merge", true, "each file is one stream (a host's log, a Kafka partition): merge all files by event time, as the daemon merges partitions; --merge=false reads a source's files one after the other")
	quiet := fs.Bool("q", false, "no summary on stderr")
	nsFile := fs.String("namespaces", "", "YAML map of namespace → data_classification for records that carry none")
	dlFile := fs.String("dead-letters", "", "write every invalid line to this file as JSON lines (source, file, line, reason, original bytes)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: vigil replay --rules PATH [--requests FILE] [--audit FILE]\n\nRuns rules over log files merged in event-time order; prints alerts as JSON\nlines on stdout and a summary on stderr. Invalid lines are counted and skipped\n(all of them written to --dead-letters FILE when given).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if len(ruleFiles) == 0 || fs.NArg() > 0 || len(reqFiles)+len(auditFiles) == 0 {
		fs.Usage()
		return 2
	}
	set, err := rules.LoadFiles(ruleFiles...)
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return 2
	}
	var namespaces map[string]string
	if *nsFile != "" {
		if namespaces, err = loadNamespaces(*nsFile); err != nil {
			fmt.Fprintf(stderr, "vigil replay: %v\n", err)
			return 2
		}
	}
	det := detector.New(set.Rules, detector.Config{MaxGroups: *maxGroups, Lateness: *lateness, Shards: *shards, Namespaces: namespaces,
		DedupWindow: offIfZero(*dedupWindow)})
	defer det.Close()

	opts := replay.Options{Requests: reqFiles, Audit: auditFiles, MergeFiles: *merge}
	var dl *deadLetterFile
	if *dlFile != "" {
		if dl, err = createDeadLetterFile(*dlFile); err != nil {
			fmt.Fprintf(stderr, "vigil replay: %v\n", err)
			return 2
		}
		opts.DeadLetter = dl.write
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	perRule := map[string]uint64{}
	var line []byte
	sum, err := replay.Run(opts, det, func(a *detector.Alert) {
		perRule[a.Rule.ID]++
		line = a.AppendJSON(line[:0])
		line = append(line, '\n')
		out.Write(line)
	})
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if dl != nil {
		if cerr := dl.close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "vigil replay: %v\n", err)
		return 2
	}
	if !*quiet {
		printSummary(stderr, sum, set, perRule, det.Stats())
	}
	return 0
}

func printSummary(w io.Writer, sum *replay.Summary, set *rules.Set, perRule map[string]uint64, stats []detector.RuleStats) {
	rate := float64(sum.Events()+sum.Invalid) / sum.Elapsed.Seconds()
	fmt.Fprintf(w, "events: %d (requests %d, audit %d), invalid lines: %d, alerts: %d, %.0f events/s in %s\n",
		sum.Events(), sum.Requests, sum.Audit, sum.Invalid, sum.Alerts, rate, sum.Elapsed.Round(time.Millisecond))
	for _, il := range sum.InvalidSamples {
		fmt.Fprintf(w, "  invalid %s:%d: %s\n", il.File, il.Line, il.Reason)
	}
	if sum.Invalid > uint64(len(sum.InvalidSamples)) {
		fmt.Fprintf(w, "  … and %d more invalid lines\n", sum.Invalid-uint64(len(sum.InvalidSamples)))
	}
	byRule := map[string]detector.RuleStats{}
	for _, s := range stats {
		byRule[s.Rule] = s
	}
	ids := make([]string, 0, len(set.Rules))
	for _, r := range set.Rules {
		ids = append(ids, r.ID)
	}
	sort.Strings(ids)
	fmt.Fprintf(w, "%-40s %8s %10s %8s %9s %8s\n", "rule", "alerts", "matched", "groups", "evicted", "late")
	for _, id := range ids {
		s := byRule[id]
		fmt.Fprintf(w, "%-40s %8d %10d %8d %9d %8d\n", id, perRule[id], s.Matched, s.Groups, s.Evictions, s.Late)
	}
}

// loadNamespaces reads a namespace classification table: a YAML (or JSON)
// map such as {ns_phi_1: PHI, ns_9: CONFIDENTIAL}.
func loadNamespaces(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]string
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("%s: want a map of namespace to PUBLIC, INTERNAL, CONFIDENTIAL or PHI: %v", path, err)
	}
	for ns, c := range m {
		switch c {
		case "PUBLIC", "INTERNAL", "CONFIDENTIAL", "PHI":
		default:
			return nil, fmt.Errorf("%s: namespace %q: unknown classification %q (use PUBLIC, INTERNAL, CONFIDENTIAL or PHI)", path, ns, c)
		}
	}
	return m, nil
}

// deadLetterFile writes replay's invalid lines as JSON lines: what the
// daemon sends to its dead-letter topic, for files.
type deadLetterFile struct {
	f   *os.File
	w   *bufio.Writer
	err error
}

func createDeadLetterFile(path string) (*deadLetterFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--dead-letters: %w", err)
	}
	return &deadLetterFile{f: f, w: bufio.NewWriter(f)}, nil
}

// deadLetterRecord is one line of the file; raw holds the original line
// when it is valid UTF-8, raw_base64 when it is not.
type deadLetterRecord struct {
	Source    string `json:"source"`
	File      string `json:"file"`
	Line      int    `json:"line"`
	Reason    string `json:"reason"`
	Raw       string `json:"raw,omitempty"`
	RawBase64 string `json:"raw_base64,omitempty"`
}

func (d *deadLetterFile) write(il replay.InvalidLine, raw []byte) {
	if d.err != nil {
		return
	}
	rec := deadLetterRecord{Source: il.Source.String(), File: il.File, Line: il.Line, Reason: il.Reason}
	if utf8.Valid(raw) {
		rec.Raw = string(raw)
	} else {
		rec.RawBase64 = base64.StdEncoding.EncodeToString(raw)
	}
	b, err := json.Marshal(rec)
	if err == nil {
		b = append(b, '\n')
		_, err = d.w.Write(b)
	}
	d.err = err
}

func (d *deadLetterFile) close() error {
	if err := d.w.Flush(); d.err == nil {
		d.err = err
	}
	if err := d.f.Close(); d.err == nil {
		d.err = err
	}
	if d.err != nil {
		return fmt.Errorf("--dead-letters: %w", d.err)
	}
	return nil
}
