package traffic

import (
	"bytes"
	"compress/gzip"
	"io"
	"runtime"
	"sync"
)

// parallelGzip compresses blocks of its input on several goroutines, each
// block as a gzip member of its own, and writes the members in order. A
// concatenation of gzip members is one valid gzip stream (RFC 1952), read
// whole by gzip.Reader, zcat and `vigil replay`. Single-threaded gzip is
// the slowest part of generating compressed logs.
type parallelGzip struct {
	w       io.Writer
	block   []byte
	pending chan chan []byte // results in input order
	work    chan gzipJob
	done    chan struct{}
	workers sync.WaitGroup
	err     error
	free    sync.Pool
	wrote   bool
}

type gzipJob struct {
	in  []byte
	out chan []byte
}

const gzipBlock = 1 << 20

func newParallelGzip(w io.Writer) *parallelGzip {
	n := max(1, runtime.GOMAXPROCS(0))
	z := &parallelGzip{w: w, pending: make(chan chan []byte, 2*n), work: make(chan gzipJob, n), done: make(chan struct{})}
	z.block = make([]byte, 0, gzipBlock)
	for i := 0; i < n; i++ {
		z.workers.Add(1)
		go z.compress()
	}
	go z.drain()
	return z
}

func (z *parallelGzip) compress() {
	defer z.workers.Done()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	for j := range z.work {
		buf.Reset()
		zw.Reset(&buf)
		zw.Write(j.in)
		zw.Close()
		in := j.in[:0]
		z.free.Put(&in) // a pointer, so Put does not allocate

		j.out <- append([]byte(nil), buf.Bytes()...)
	}
}

func (z *parallelGzip) drain() {
	defer close(z.done)
	for out := range z.pending {
		b := <-out
		if z.err == nil {
			_, z.err = z.w.Write(b)
		}
	}
}

func (z *parallelGzip) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), gzipBlock-len(z.block))
		z.block = append(z.block, p[:k]...)
		p = p[k:]
		if len(z.block) == gzipBlock {
			z.flush()
		}
	}
	return n, nil
}

func (z *parallelGzip) flush() {
	if len(z.block) == 0 && z.wrote {
		return
	}
	z.wrote = true
	out := make(chan []byte, 1)
	z.pending <- out
	z.work <- gzipJob{in: z.block, out: out}
	if b, ok := z.free.Get().(*[]byte); ok {
		z.block = *b
	} else {
		z.block = make([]byte, 0, gzipBlock)
	}
}

// Close compresses what is left (an empty input still makes one empty
// member, a valid gzip file) and waits for every member to be written.
func (z *parallelGzip) Close() error {
	z.flush()
	close(z.work)
	z.workers.Wait()
	close(z.pending)
	<-z.done
	return z.err
}
