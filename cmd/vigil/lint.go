package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/vigil-sec/vigil/rules"
)

func cmdRulesLint(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil rules lint", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: vigil rules lint PATH...\n\nChecks rule files (directories: every *.yaml/*.yml inside) and prints\nfile:line:col: message for every problem. Exit status 1 when there are problems.\n")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	set, err := rules.LoadFiles(fs.Args()...)
	if err != nil {
		var list rules.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				fmt.Fprintln(stdout, e.Error())
			}
			fmt.Fprintf(stderr, "%d problem(s) found\n", len(list))
			return 1
		}
		fmt.Fprintf(stderr, "vigil rules lint: %v\n", err)
		return 2
	}
	fmt.Fprintf(stdout, "ok: %d rules in %d files (%s)\n", len(set.Rules), len(set.Files), kindSummary(set))
	return 0
}

func kindSummary(set *rules.Set) string {
	counts := map[string]int{}
	for _, r := range set.Rules {
		counts[r.Kind.String()]++
	}
	var parts []string
	for k, n := range counts {
		parts = append(parts, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return "no rules"
	}
	return strings.Join(parts, ", ")
}
