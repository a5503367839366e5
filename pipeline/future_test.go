package pipeline

import (
	"testing"
	"time"
)

func TestFutureReasonNamesTheFieldAndLimit(t *testing.T) {
	ts := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	if got, want := futureReason(ts, time.Hour), `field "ts": 2200-01-01T00:00:00Z is more than 1h0m0s ahead of the clock`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
