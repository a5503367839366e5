package main

import (
	"fmt"
	"io"
)

func cmdRulesTest(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "vigil rules test: not yet")
	return 2
}
