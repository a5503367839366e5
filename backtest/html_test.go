package backtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// screenshotEnv names a file to write the report's screenshot to (docs/img/
// backtest-report.png when updating the documentation):
//
//	VIGIL_BACKTEST_SCREENSHOT=$PWD/docs/img/backtest-report.png go test -run HTML ./backtest/
const screenshotEnv = "VIGIL_BACKTEST_SCREENSHOT"

// chromiumPath finds Chromium. In CI (CI set) a missing browser is
// installed with scripts/chromium.sh and the test never skips; elsewhere
// it skips, saying how to install it.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome-stable", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "" {
		t.Skip("chromium not found: run scripts/chromium.sh to install it (in CI, where CI is set, this test installs it and always runs)")
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", "../scripts/chromium.sh")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/chromium.sh: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// chromium runs headless Chromium on page with extra flags and returns
// its stdout and stderr.
func chromium(t *testing.T, bin, page string, flags ...string) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=2000"}, flags...)
	cmd := exec.CommandContext(ctx, bin, append(args, "file://"+page)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	return stdout.String(), stderr.String()
}

// The report renders in a real browser: every rule's section has its
// charts in the DOM with one bar per non-empty bucket, the page logs no
// console error, and it needs nothing from the network.
func TestHTMLReportRendersInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("renders the report in headless Chromium: skipped in -short mode")
	}
	bin := chromiumPath(t)
	g := history(t)
	dir := t.TempDir()
	// The candidate halves auth-key-guessing's threshold.
	orig, err := os.ReadFile("../configs/rules/authentication.yaml")
	if err != nil {
		t.Fatal(err)
	}
	lowered := strings.Replace(string(orig), "threshold: '> 60'", "threshold: '> 30'", 1)
	if lowered == string(orig) {
		t.Fatal("auth-key-guessing's threshold is no longer '> 60': update the test")
	}
	candFile := filepath.Join(dir, "authentication.yaml")
	if err := os.WriteFile(candFile, []byte(lowered), 0o644); err != nil {
		t.Fatal(err)
	}
	cand := loadRules(t, candFile)
	// Name the files as a reader of the screenshot would have them.
	cand.Files = []string{"rules-candidate/authentication.yaml"}
	for _, r := range cand.Rules {
		r.File = cand.Files[0]
	}
	rep := run(t, g, Options{Rules: cand, Baseline: loadRules(t, "../configs/rules/authentication.yaml"), Thresholds: true})

	var html bytes.Buffer
	if err := WriteHTML(&html, rep); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script", " src=", "url(", "@import", `href="http`, "<link"} {
		if strings.Contains(html.String(), bad) {
			t.Errorf("the report is not self-contained: it contains %q", bad)
		}
	}
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, html.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}

	dom, logs := chromium(t, bin, page, "--enable-logging=stderr", "--v=0", "--dump-dom")
	for _, l := range strings.Split(logs, "\n") {
		if (strings.Contains(l, "Uncaught") || strings.Contains(l, "ERROR:CONSOLE")) && strings.Contains(l, "report.html") {
			t.Errorf("console error: %s", l)
		}
	}
	if !strings.Contains(dom, `id="summary"`) {
		t.Fatalf("the DOM has no summary:\n%.2000s", dom)
	}
	for _, r := range rep.Rules {
		sec := section(dom, "rule-"+r.Rule)
		if sec == "" {
			t.Errorf("%s: no section in the DOM", r.Rule)
			continue
		}
		want := nonEmpty(r.Candidate) + nonEmpty(r.Baseline)
		if th := r.Thresholds; th != nil {
			for _, b := range th.Histogram {
				if b.Count > 0 {
					want++
				}
			}
			if !strings.Contains(sec, `class="threshold"`) {
				t.Errorf("%s: the histogram has no threshold line", r.Rule)
			}
		}
		rects, paths := strings.Count(sec, "<rect"), strings.Count(sec, "<path")
		if strings.Count(sec, "<svg") == 0 || rects != want || paths == 0 || rects+paths == 0 {
			t.Errorf("%s: %d <svg>, %d <rect> (want %d), %d <path> in the section", r.Rule, strings.Count(sec, "<svg"), rects, want, paths)
		}
	}
	if sec := section(dom, "rule-auth-key-guessing"); !strings.Contains(sec, "Only in the candidate set") || !strings.Contains(sec, "current &gt; 30") {
		t.Error("auth-key-guessing's section lacks the diff or the threshold label")
	}

	shot := filepath.Join(dir, "report.png")
	if p := os.Getenv(screenshotEnv); p != "" {
		shot = p
	}
	chromium(t, bin, page, "--hide-scrollbars", "--screenshot="+shot, "--window-size=1280,1600")
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) || len(png) < 10000 || len(png) > 500<<10 {
		t.Errorf("screenshot %s: %d bytes, want a PNG between 10 KB and 500 KB", shot, len(png))
	}
}

// section returns the serialized DOM of the <section> with that id.
func section(dom, id string) string {
	i := strings.Index(dom, fmt.Sprintf(`id=%q`, id))
	if i < 0 {
		return ""
	}
	rest := dom[i:]
	if j := strings.Index(rest, "</section>"); j >= 0 {
		return rest[:j]
	}
	return rest
}

func nonEmpty(s *SetResult) int {
	if s == nil {
		return 0
	}
	n := 0
	for _, v := range s.Series {
		if v > 0 {
			n++
		}
	}
	return n
}
