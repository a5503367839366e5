package traffic

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

func TestParallelGzipRoundTrips(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("a line of a log, not very random\n"), 3*gzipBlock/16)
	for _, in := range [][]byte{nil, []byte("one line\n"), big} {
		var out bytes.Buffer
		z := newParallelGzip(&out)
		// Odd write sizes cross block boundaries.
		for p := in; len(p) > 0; {
			k := min(len(p), 77777)
			if _, err := z.Write(p[:k]); err != nil {
				t.Fatal(err)
			}
			p = p[k:]
		}
		if err := z.Close(); err != nil {
			t.Fatal(err)
		}
		zr, err := gzip.NewReader(&out)
		if err != nil {
			t.Fatalf("%d bytes in: %v", len(in), err)
		}
		back, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(back, in) {
			t.Errorf("%d bytes in, %d out, %v", len(in), len(back), err)
		}
	}
}
