package main

import (
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/vigil-sec/vigil/rules"
	"github.com/vigil-sec/vigil/ruletest"
)

func cmdRulesTest(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil rules test", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: vigil rules test PATH...\n\nRuns rule unit-test files (directories: every *.yaml/*.yml inside; format in\ndocs/rule-tests.md). Prints PASS or FAIL per test with a diff for each failure,\nfile:line:col: message for every problem in a test or rule file, and\n\"N passed, M failed\". Exit status 1 when a test fails or a file has problems.\n")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	files, err := ruletest.Files(fs.Args()...)
	if err != nil {
		fmt.Fprintf(stderr, "vigil rules test: %v\n", err)
		return 2
	}
	var passed, failed, broken int
	for _, path := range files {
		results, err := runTestFile(path)
		if err != nil {
			broken++
			var list rules.ErrorList
			if errors.As(err, &list) {
				for _, e := range list {
					fmt.Fprintln(stdout, e.Error())
				}
			} else {
				fmt.Fprintf(stdout, "%s: %v\n", path, err)
			}
			continue
		}
		for _, r := range results {
			if r.Passed() {
				passed++
			} else {
				failed++
			}
			if err := r.Write(stdout); err != nil {
				fmt.Fprintf(stderr, "vigil rules test: %v\n", err)
				return 2
			}
		}
	}
	fmt.Fprintf(stdout, "%d passed, %d failed\n", passed, failed)
	if broken > 0 {
		fmt.Fprintf(stderr, "%d of %d test file(s) could not run\n", broken, len(files))
	}
	if failed > 0 || broken > 0 {
		return 1
	}
	return 0
}

func runTestFile(path string) ([]*ruletest.Result, error) {
	f, err := ruletest.Load(path)
	if err != nil {
		return nil, err
	}
	return f.Run()
}
