package backtest

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

//go:embed report.html
var reportHTML string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"num":  formatValue,
	"time": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
	"pct":  func(v float64) string { return fmt.Sprintf("%.2f", v) },
	"f1":   func(v float64) string { return fmt.Sprintf("%.1f", v) },
	"anchor": func(id string) string {
		return "rule-" + id
	},
}).Parse(reportHTML))

// WriteHTML writes the report as one self-contained HTML page: inline CSS,
// charts as inline SVG drawn here, no script and no external resource.
func WriteHTML(w io.Writer, rep *Report) error {
	return reportTemplate.Execute(w, newPage(rep))
}

// page is the template's view of a report: the report plus chart geometry.
type page struct {
	*Report
	Rules []rulePage
}

type rulePage struct {
	RuleReport
	Series    *chart
	Histogram *chart
}

// chart is an SVG drawing: bars, lines and labels in a W×H view box.
type chart struct {
	W, H   float64
	Title  string
	Bars   []bar
	Lines  []line
	Labels []label
	Legend []legend
}

type bar struct {
	X, Y, W, H float64
	Class      string
	Tip        string
}

type line struct {
	D     string // path data
	Class string
}

type label struct {
	X, Y   float64
	Text   string
	Anchor string // start, middle, end
	Class  string
}

type legend struct {
	Class, Text string
}

// Chart geometry: plot area inside margins.
const (
	chartW  = 960.0
	chartH  = 180.0
	marginL = 56.0
	marginR = 12.0
	marginT = 14.0
	marginB = 28.0
)

func newPage(rep *Report) page {
	p := page{Report: rep}
	for _, r := range rep.Rules {
		rp := rulePage{RuleReport: r, Series: seriesChart(rep, r)}
		if r.Thresholds != nil && len(r.Thresholds.Histogram) > 0 {
			rp.Histogram = histogramChart(r.Thresholds)
		}
		p.Rules = append(p.Rules, rp)
	}
	return p
}

// seriesChart draws alerts per step: candidate bars, and baseline bars
// beside them when comparing.
func seriesChart(rep *Report, r RuleReport) *chart {
	c := &chart{W: chartW, H: chartH, Title: "alerts per " + stepName(rep.step)}
	var sets [][]int
	var classes []string
	if r.Candidate != nil {
		sets, classes = append(sets, r.Candidate.Series), append(classes, "bar new")
		c.Legend = append(c.Legend, legend{"new", "candidate"})
	}
	if r.Baseline != nil {
		sets, classes = append(sets, r.Baseline.Series), append(classes, "bar old")
		c.Legend = append(c.Legend, legend{"old", "baseline"})
	}
	n, top := 0, 1
	for _, s := range sets {
		n = max(n, len(s))
		for _, v := range s {
			top = max(top, v)
		}
	}
	plotW, plotH := chartW-marginL-marginR, chartH-marginT-marginB
	slot := plotW / float64(max(n, 1))
	for k, s := range sets {
		w := slot * 0.8 / float64(len(sets))
		for i, v := range s {
			if v == 0 {
				continue
			}
			h := math.Max(plotH*float64(v)/float64(top), 1)
			start := rep.From.Add(time.Duration(i) * rep.step)
			c.Bars = append(c.Bars, bar{X: marginL + float64(i)*slot + slot*0.1 + float64(k)*w, Y: marginT + plotH - h, W: w, H: h,
				Class: classes[k], Tip: fmt.Sprintf("%s: %d alerts from %s", legendText(classes[k]), v, start.Format("2006-01-02 15:04Z"))})
		}
	}
	axes(c, plotW, plotH)
	c.Labels = append(c.Labels, label{X: marginL - 6, Y: marginT + 4, Text: fmt.Sprint(top), Anchor: "end", Class: "tick"},
		label{X: marginL - 6, Y: marginT + plotH, Text: "0", Anchor: "end", Class: "tick"})
	// Date ticks: at midnights for hourly bars, about eight for daily ones.
	every := max(1, n/8)
	for i := 0; i < n; i++ {
		t := rep.From.Add(time.Duration(i) * rep.step)
		if rep.step < 24*time.Hour && (t.Hour() != 0 || t.Minute() != 0) || rep.step >= 24*time.Hour && i%every != 0 {
			continue
		}
		x := marginL + float64(i)*slot
		c.Lines = append(c.Lines, line{D: fmt.Sprintf("M%.1f %.1fv4", x, marginT+plotH), Class: "axis"})
		c.Labels = append(c.Labels, label{X: x, Y: chartH - 8, Text: t.Format("Jan 2"), Anchor: "middle", Class: "tick"})
	}
	return c
}

func legendText(class string) string {
	if strings.HasSuffix(class, "old") {
		return "baseline"
	}
	return "candidate"
}

func stepName(d time.Duration) string {
	if d >= 24*time.Hour {
		return "day"
	}
	return "hour"
}

// histogramChart draws the peak distribution on a log scale with the
// current threshold as a vertical line.
func histogramChart(t *Thresholds) *chart {
	c := &chart{W: chartW, H: chartH, Title: "peak " + t.Aggregate + " per group and " + t.Window + " window (windows, log scale)"}
	bins := t.Histogram
	lo, hi := bins[0].Lo, bins[len(bins)-1].Hi
	plotW, plotH := chartW-marginL-marginR, chartH-marginT-marginB
	x := func(v float64) float64 { return marginL + plotW*(v-lo)/(hi-lo) }
	top := 1
	for _, b := range bins {
		top = max(top, b.Count)
	}
	scale := math.Log10(1 + float64(top))
	for _, b := range bins {
		if b.Count == 0 {
			continue
		}
		h := math.Max(plotH*math.Log10(1+float64(b.Count))/scale, 1)
		c.Bars = append(c.Bars, bar{X: x(b.Lo) + 0.5, Y: marginT + plotH - h, W: math.Max(x(b.Hi)-x(b.Lo)-1, 1), H: h, Class: "bar peak",
			Tip: fmt.Sprintf("%s – %s: %d windows", formatValue(b.Lo), formatValue(b.Hi), b.Count)})
	}
	axes(c, plotW, plotH)
	tx := x(t.current)
	c.Lines = append(c.Lines, line{D: fmt.Sprintf("M%.1f %.1fV%.1f", tx, marginT-4, marginT+plotH), Class: "threshold"})
	anchor := "start"
	if tx > chartW*0.75 {
		anchor = "end"
	}
	off := 4.0
	if anchor == "end" {
		off = -4
	}
	c.Labels = append(c.Labels,
		label{X: tx + off, Y: marginT + 8, Text: "current " + t.Current, Anchor: anchor, Class: "threshold-label"},
		label{X: marginL, Y: chartH - 8, Text: formatValue(lo), Anchor: "start", Class: "tick"},
		label{X: chartW - marginR, Y: chartH - 8, Text: formatValue(hi), Anchor: "end", Class: "tick"},
		label{X: marginL - 6, Y: marginT + 4, Text: fmt.Sprint(top), Anchor: "end", Class: "tick"},
		label{X: marginL - 6, Y: marginT + plotH, Text: "0", Anchor: "end", Class: "tick"})
	c.Legend = []legend{{"peak", "windows"}, {"threshold", "current setting"}}
	return c
}

func axes(c *chart, plotW, plotH float64) {
	c.Lines = append(c.Lines, line{D: fmt.Sprintf("M%.1f %.1fV%.1fH%.1f", marginL, marginT, marginT+plotH, marginL+plotW), Class: "axis"})
}
