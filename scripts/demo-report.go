//go:build ignore

// demo-report turns `vigil replay` alerts (JSON lines on stdin) into one
// readable line each as they arrive, then prints a table per rule and
// checks the alerts against the generator's manifest of attacks.
//
//	vigil replay ... | go run scripts/demo-report.go .cache/demo/attacks.json
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

type alert struct {
	Rule         string            `json:"rule"`
	SeverityName string            `json:"severity_name"`
	Group        map[string]any    `json:"group"`
	Value        float64           `json:"value"`
	Threshold    string            `json:"threshold"`
	At           time.Time         `json:"at"`
	PHI          bool              `json:"phi"`
	Labels       map[string]string `json:"labels"`
	Actions      []string          `json:"actions"`
}

type manifest struct {
	Attacks []struct {
		Name  string            `json:"name"`
		Start time.Time         `json:"start"`
		End   time.Time         `json:"end"`
		Group map[string]string `json:"group"`
		Rules []string          `json:"expected_rules"`
	} `json:"attacks"`
}

var colors = map[string]string{"critical": "\033[1;31m", "high": "\033[31m", "medium": "\033[33m", "low": "\033[36m"}

func main() {
	color := os.Getenv("NO_COLOR") == "" && isTerminal()
	paint := func(sev, s string) string {
		if !color {
			return s
		}
		return colors[sev] + s + "\033[0m"
	}
	type ruleStats struct {
		n          int
		worst      string
		first      time.Time
		severities map[string]int
	}
	perRule := map[string]*ruleStats{}
	var all []alert
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var a alert
		if err := json.Unmarshal(in.Bytes(), &a); err != nil {
			fmt.Println(in.Text())
			continue
		}
		all = append(all, a)
		st := perRule[a.Rule]
		if st == nil {
			st = &ruleStats{first: a.At, severities: map[string]int{}}
			perRule[a.Rule] = st
		}
		st.n++
		st.severities[a.SeverityName]++
		phi := ""
		if a.PHI {
			phi = "  PHI"
		}
		fmt.Printf("%s  %s  %-32s %-46s value %-10s threshold %s%s\n", a.At.Format("15:04:05"),
			paint(a.SeverityName, fmt.Sprintf("%-8s", a.SeverityName)), a.Rule, group(a.Group),
			number(a.Value), a.Threshold, phi)
	}

	ids := make([]string, 0, len(perRule))
	for id := range perRule {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return perRule[ids[i]].first.Before(perRule[ids[j]].first) })
	fmt.Printf("\n%-34s %7s  %-22s %s\n", "rule", "alerts", "severity", "first at")
	for _, id := range ids {
		st := perRule[id]
		var sev []string
		for _, s := range []string{"critical", "high", "medium", "low"} {
			if n := st.severities[s]; n > 0 {
				sev = append(sev, fmt.Sprintf("%s×%d", s, n))
			}
		}
		fmt.Printf("%-34s %7d  %-22s %s\n", id, st.n, strings.Join(sev, " "), st.first.Format("15:04:05"))
	}
	fmt.Printf("%-34s %7d\n", "total", len(all))

	if len(os.Args) < 2 {
		return
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var m manifest
	if err := json.Unmarshal(data, &m); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("\n%-24s %-19s %s\n", "injected attack", "span", "expected rules (✓ caught, ✗ missed)")
	caught, expected := 0, 0
	for _, at := range m.Attacks {
		var marks []string
		for _, r := range at.Rules {
			expected++
			ok := false
			for _, a := range all {
				if a.Rule == r && !a.At.Before(at.Start) && !a.At.After(at.End) {
					ok = true
					break
				}
			}
			if ok {
				caught++
				marks = append(marks, "✓ "+r)
			} else {
				marks = append(marks, "✗ "+r)
			}
		}
		fmt.Printf("%-24s %s-%s  %s\n", at.Name, at.Start.Format("15:04:05"), at.End.Format("15:04:05"),
			strings.Join(marks, ", "))
	}
	fmt.Printf("%d of %d expected detections\n", caught, expected)
}

func group(g map[string]any) string {
	keys := make([]string, 0, len(g))
	for k := range g {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, g[k]))
	}
	return strings.Join(parts, " ")
}

// number shows large values with an SI suffix (bytes, counts), ratios with
// three decimals.
func number(v float64) string {
	switch {
	case v >= 1e9:
		return strconv.FormatFloat(v/1e9, 'f', 2, 64) + "G"
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 1, 64) + "M"
	case v != float64(int64(v)):
		return strconv.FormatFloat(v, 'g', 4, 64)
	}
	return strconv.FormatInt(int64(v), 10)
}

func isTerminal() bool {
	fi, err := os.Stdout.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
