package deploy

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"sort"
	"strings"
)

// assets are the dashboards and Prometheus files MetricNames reads.
//
//go:embed grafana/*.json prometheus/*.yaml
var assets embed.FS

var metricNameRE = regexp.MustCompile(`\bvigil_[a-z0-9_]+`)

// histogramSuffixes are the series a histogram is scraped as, besides its
// name: MetricNames reports the histogram's own name instead.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// MetricNames returns, sorted, every distinct Vigil metric name
// (vigil_[a-z0-9_]+) mentioned in the embedded grafana/*.json and
// prometheus/*.yaml files (the dashboard, the alerting rules and their unit
// tests), with the histogram suffixes _bucket, _sum and _count stripped. A
// test of the daemon compares it with a live /metrics scrape, so that the
// dashboard and the alerts never name a metric the daemon does not export.
func MetricNames() ([]string, error) {
	seen := map[string]bool{}
	err := fs.WalkDir(assets, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(path)
		if err != nil {
			return fmt.Errorf("deploy: %w", err)
		}
		for _, name := range metricNameRE.FindAllString(string(b), -1) {
			seen[stripHistogramSuffix(name)] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(seen) == 0 {
		return nil, fmt.Errorf("deploy: no vigil_ metric name in the embedded assets")
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

func stripHistogramSuffix(name string) string {
	for _, s := range histogramSuffixes {
		if base, ok := strings.CutSuffix(name, s); ok {
			return base
		}
	}
	return name
}
