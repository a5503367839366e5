// Package replay runs rules over JSON-lines log files (plain or gzip) in
// event-time order with the same detector as the daemon. It reads files
// only; it knows nothing of Kafka or ClickHouse.
package replay

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
)

// Options says what to replay.
type Options struct {
	Requests []string // request log files, read in order
	Audit    []string // audit log files, read in order
	// MaxInvalidSamples is how many invalid lines the summary describes
	// (all are counted). Default 5.
	MaxInvalidSamples int
	// BatchSize is how many events go to the detector at once. Default 1024.
	BatchSize int
	// DeadLetter, when set, receives every invalid line with its original
	// bytes (valid only during the call; a line over the length limit
	// comes without them), as the daemon's dead-letter topic would.
	DeadLetter func(il InvalidLine, raw []byte)
	// MergeFiles treats each file as one Kafka partition's log: every file
	// is its own stream in the merge by event time (ties go to requests
	// files, then to the file given first), which is how the daemon merges
	// the partitions of its topics. By default a source's files are read
	// one after the other as a single stream.
	MergeFiles bool
}

// InvalidLine is one line that failed to decode.
type InvalidLine struct {
	Source event.Source
	File   string
	Line   int
	Reason string
}

// Summary describes a finished replay.
type Summary struct {
	Requests uint64
	Audit    uint64
	Invalid  uint64
	// InvalidSamples are the first invalid lines, in reading order.
	InvalidSamples []InvalidLine
	Alerts         uint64
	Elapsed        time.Duration
}

// Events is the number of valid events replayed.
func (s *Summary) Events() uint64 { return s.Requests + s.Audit }

// slot owns one line's bytes and the decoder whose scratch space its
// event's strings may point into, so a batch of events stays valid until
// the detector is done with it.
type slot struct {
	line []byte
	dec  event.Decoder
	ev   event.Event
}

// Run replays the files through det, calling emit for each alert in order.
func Run(opts Options, det *detector.Detector, emit func(*detector.Alert)) (*Summary, error) {
	if opts.MaxInvalidSamples == 0 {
		opts.MaxInvalidSamples = 5
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 1024
	}
	started := time.Now()
	sum := &Summary{}
	invalid := func(il InvalidLine, raw []byte) {
		sum.Invalid++
		if len(sum.InvalidSamples) < opts.MaxInvalidSamples {
			sum.InvalidSamples = append(sum.InvalidSamples, il)
		}
		if opts.DeadLetter != nil {
			opts.DeadLetter(il, raw)
		}
	}
	streams := []*stream{
		{src: event.Requests, files: opts.Requests, invalid: invalid},
		{src: event.Audit, files: opts.Audit, invalid: invalid},
	}
	if opts.MergeFiles {
		streams = streams[:0]
		for _, f := range opts.Requests {
			streams = append(streams, &stream{src: event.Requests, files: []string{f}, invalid: invalid})
		}
		for _, f := range opts.Audit {
			streams = append(streams, &stream{src: event.Audit, files: []string{f}, invalid: invalid})
		}
	}
	// The batch holds BatchSize slots; each stream holds a lookahead and a spare.
	pool := make([]*slot, 0, opts.BatchSize+2*len(streams))
	for i := 0; i < cap(pool); i++ {
		pool = append(pool, &slot{})
	}
	take := func() *slot {
		s := pool[len(pool)-1]
		pool = pool[:len(pool)-1]
		return s
	}
	defer func() {
		for _, s := range streams {
			s.close()
		}
	}()
	for _, s := range streams {
		if err := s.fill(take); err != nil {
			return sum, err
		}
	}

	batch := make([]event.Event, 0, opts.BatchSize)
	used := make([]*slot, 0, opts.BatchSize)
	countAlert := func(a *detector.Alert) {
		sum.Alerts++
		emit(a)
	}
	flush := func() {
		det.ProcessBatch(batch, countAlert)
		batch = batch[:0]
		pool = append(pool, used...)
		used = used[:0]
	}
	for {
		// Merge by event time; on a tie the earlier stream (requests
		// first) goes first, so the order is fully determined by the input.
		var next *stream
		for _, s := range streams {
			if s.next != nil && (next == nil || s.next.ev.TS < next.next.ev.TS) {
				next = s
			}
		}
		if next == nil {
			break
		}
		sl := next.next
		batch = append(batch, sl.ev)
		used = append(used, sl)
		if next.src == event.Requests {
			sum.Requests++
		} else {
			sum.Audit++
		}
		next.next = nil
		if len(batch) == cap(batch) {
			flush()
		}
		if err := next.fill(take); err != nil {
			return sum, err
		}
	}
	if len(batch) > 0 {
		flush()
	}
	sum.Elapsed = time.Since(started)
	return sum, nil
}

// stream reads one source's files line by line, decoding into slots.
type stream struct {
	src     event.Source
	files   []string
	invalid func(InvalidLine, []byte)

	cur    *os.File
	rd     *bufio.Reader
	name   string
	lineNo int
	next   *slot
	spare  *slot // a slot whose line was invalid, reused for the next line
	buf    []byte
}

// maxLine is the longest line kept for decoding; longer ones are invalid.
const maxLine = 1 << 20

// fill decodes the stream's next valid event into a fresh slot; s.next is
// nil at the end of the stream.
func (s *stream) fill(take func() *slot) error {
	for {
		if s.rd == nil {
			if len(s.files) == 0 {
				return nil
			}
			if err := s.open(s.files[0]); err != nil {
				return err
			}
			s.files = s.files[1:]
		}
		line, tooLong, err := s.readLine()
		if err == io.EOF {
			s.close()
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		s.lineNo++
		if tooLong {
			s.invalid(InvalidLine{s.src, s.name, s.lineNo, fmt.Sprintf("line longer than %d bytes", maxLine)}, nil)
			continue
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue // blank lines are not records
		}
		sl := s.spare
		if sl == nil {
			sl = take()
		}
		s.spare = nil
		sl.line = append(sl.line[:0], line...)
		if err := sl.dec.Decode(s.src, sl.line, &sl.ev); err != nil {
			s.invalid(InvalidLine{s.src, s.name, s.lineNo, err.Error()}, sl.line)
			s.spare = sl // reuse it for the next line
			continue
		}
		s.next = sl
		return nil
	}
}

func (s *stream) open(name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	s.cur, s.name, s.lineNo = f, name, 0
	br := bufio.NewReaderSize(f, 256<<10)
	magic, _ := br.Peek(2)
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			f.Close()
			return fmt.Errorf("%s: %w", name, err)
		}
		br = bufio.NewReaderSize(zr, 256<<10)
	}
	s.rd = br
	return nil
}

func (s *stream) close() {
	if s.cur != nil {
		s.cur.Close()
	}
	s.cur, s.rd = nil, nil
}

// readLine returns the next line without its newline. A line longer than
// maxLine is consumed and reported as tooLong.
func (s *stream) readLine() (line []byte, tooLong bool, err error) {
	s.buf = s.buf[:0]
	for {
		part, err := s.rd.ReadSlice('\n')
		if len(s.buf)+len(part) <= maxLine+1 {
			s.buf = append(s.buf, part...)
		} else {
			tooLong = true
		}
		switch {
		case err == nil:
			return bytes.TrimRight(s.buf, "\r\n"), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == io.EOF:
			if len(s.buf) == 0 && !tooLong {
				return nil, false, io.EOF
			}
			return bytes.TrimRight(s.buf, "\r\n"), tooLong, nil
		default:
			return nil, false, err
		}
	}
}
