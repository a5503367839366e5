package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/vigil-sec/vigil/config"
	"github.com/vigil-sec/vigil/rules"
)

// cmdConfig runs `vigil config check FILE`: the validation `vigil run`
// does at start, configuration and rules, without connecting anywhere.
func cmdConfig(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprint(stderr, "usage: vigil config check FILE\n\nValidates a daemon configuration and the rules it names; exit 1 on problems.\n")
		return 2
	}
	cfg, err := config.Load(args[1])
	if err == nil {
		var set *rules.Set
		if set, err = rules.LoadFiles(cfg.Rules.Paths...); err == nil {
			if err := checkLongRules(cfg, set); err != nil {
				fmt.Fprintln(stdout, err)
				return 1
			}
			// The responders' clients validate what only they understand
			// (admin API templates, Cloudflare ids), without connecting.
			if _, err := buildSystems(cfg, slog.New(slog.DiscardHandler)); err != nil {
				fmt.Fprintln(stdout, err)
				return 1
			}
			fmt.Fprintf(stdout, "ok: %s (%d rules from %d files)\n", args[1], len(set.Rules), len(set.Files))
			return 0
		}
	}
	var list rules.ErrorList
	if errors.As(err, &list) {
		for _, e := range list {
			fmt.Fprintln(stdout, e.Error())
		}
		return 1
	}
	fmt.Fprintln(stdout, err)
	return 1
}
