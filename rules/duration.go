package rules

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a Go duration ("90s", "1h30m") that may also use "d"
// for days ("90d", "1d12h"). Rules count time in event time, so a day is
// always 24 hours. Negative and zero durations are rejected by callers that
// need a positive one.
func ParseDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	// Split off a leading "<n>d" part, the only unit Go does not know.
	var days time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i >= 0 {
		n, err := strconv.ParseFloat(s[:i], 64)
		if err != nil || n < 0 || strings.ContainsAny(s[:i], "+-eE") {
			return 0, fmt.Errorf("invalid duration %q (use e.g. 90s, 5m, 1h30m, 7d)", s)
		}
		if n > 100000 {
			return 0, fmt.Errorf("duration %q is too long", s)
		}
		days = time.Duration(n * float64(24*time.Hour))
		rest = s[i+1:]
		if rest == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(rest)
	if err != nil || strings.HasPrefix(rest, "-") || strings.HasPrefix(rest, "+") {
		return 0, fmt.Errorf("invalid duration %q (use e.g. 90s, 5m, 1h30m, 7d)", s)
	}
	return days + d, nil
}

// FormatDuration is the inverse of ParseDuration for whole days, and Go's
// format otherwise; used in docs and messages.
func FormatDuration(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}
