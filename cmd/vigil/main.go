// Command vigil detects attacks in API request and audit logs. This file
// only dispatches subcommands; each lives in its own file.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/vigil-sec/vigil/responders"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `vigil — streaming detection and response for API request and audit logs

Usage:
  vigil run --config FILE [--print-alerts]
  vigil replay --rules PATH [--rules PATH ...] [--requests FILE ...] [--audit FILE ...]
  vigil backtest --config FILE --rules PATH... [--baseline PATH...] --from T [--to T] [--json] [--html FILE] [--fail-on-new-alerts N] [--thresholds]
  vigil rules lint PATH...
  vigil rules test PATH...
  vigil generate --out DIR [--start RFC3339] [--duration 24h] [--rate 50] [--seed 1] [--attacks all|none|NAME,...] [--gzip]
  vigil config check FILE
  vigil incidents list|show ID|resolve ID --config FILE
  vigil keys restore KEY --incident ID --config FILE
  vigil namespaces lift [ORG/]NAMESPACE --incident ID --config FILE
  vigil ips unblock ADDRESS --incident ID --config FILE
  vigil respond pause|resume|status --config FILE
  vigil dev broker [--addr HOST:PORT] [--data DIR] [--topic NAME=PARTITIONS ...]
  vigil dev produce [--brokers ADDR] [--requests FILE] [--audit FILE] [--rate N]
  vigil version

Run 'vigil COMMAND -h' for a command's flags. Documentation: docs/ in the repository.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit status:
// 0 success, 1 a check failed (lint findings, failing tests), 2 usage or I/O errors.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "replay":
		return cmdReplay(args[1:], stdout, stderr)
	case "backtest":
		return cmdBacktest(args[1:], stdout, stderr)
	case "rules":
		if len(args) < 2 {
			fmt.Fprint(stderr, "usage: vigil rules lint|test PATH...\n")
			return 2
		}
		switch args[1] {
		case "lint":
			return cmdRulesLint(args[2:], stdout, stderr)
		case "test":
			return cmdRulesTest(args[2:], stdout, stderr)
		}
		fmt.Fprintf(stderr, "vigil rules: unknown command %q (use lint or test)\n", args[1])
		return 2
	case "config":
		return cmdConfig(args[1:], stdout, stderr)
	case "dev":
		return cmdDev(args[1:], stdout, stderr)
	case "incidents":
		return cmdIncidents(args[1:], stdout, stderr)
	case "keys", "namespaces", "ips":
		undo := map[string][2]string{"keys": {"restore", responders.RestoreKey}, "namespaces": {"lift", responders.LiftIsolation},
			"ips": {"unblock", responders.Unblock}}[args[0]]
		if len(args) < 2 || args[1] != undo[0] {
			fmt.Fprintf(stderr, "usage: vigil %s %s TARGET --incident ID --config FILE\n", args[0], undo[0])
			return 2
		}
		return cmdUndo(undo[1], args[0]+" "+undo[0], args[2:], stdout, stderr)
	case "respond":
		return cmdRespond(args[1:], stdout, stderr)
	case "generate":
		return cmdGenerate(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintf(stdout, "vigil %s\n", version)
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "vigil: unknown command %q\n\n%s", args[0], usage)
	return 2
}
