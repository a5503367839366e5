package yamlpos

import (
	"strconv"

	"gopkg.in/yaml.v3"
)

// ScalarPosition returns the position in the file — 1-based line, and
// column counted in runes as yaml.v3 counts them — of the rune at offset
// off (counted in runes) of scalar n's Value. src is the raw file n was
// parsed from.
//
// A scalar's Value is not a copy of its text: quotes and escapes are
// removed, block scalars lose their indentation, and line breaks are
// folded into spaces. To map an offset back, the scalar's text is
// re-read from n.Line/n.Column, rebuilding the value the way yaml.v3's
// scanner does while noting where each rune of it comes from. If the
// rebuilt value differs from n.Value (a case this code does not model,
// such as an explicit indentation indicator `|2`), or off is outside
// the value, it returns the start of the scalar, n.Line and n.Column: a
// position that is vaguer but never wrong. An offset just past the end
// of the value is placed just after its last rune.
func ScalarPosition(src []byte, n *yaml.Node, off int) (line, col int) {
	want := []rune(n.Value)
	if n.Kind != yaml.ScalarNode || off < 0 || off > len(want) || len(want) == 0 {
		return n.Line, n.Column
	}
	s := &scalarScan{src: []rune(string(src)), line: 1, col: 1, want: len(want)}
	if len(s.src) > 0 && s.src[0] == '\uFEFF' {
		s.i++ // yaml.v3 skips a byte order mark without counting it
	}
	for !s.eof() && (s.line < n.Line || s.line == n.Line && s.col < n.Column) {
		s.next()
	}
	if s.line != n.Line || s.col != n.Column {
		return n.Line, n.Column
	}
	// The node starts at its anchor or tag, if it has them (`&a !!str 'x'`).
	for s.cur() == '&' || s.cur() == '!' {
		for !s.eof() && !s.blank() && !s.isBreak() {
			s.next()
		}
		for s.blank() || s.isBreak() {
			s.next()
		}
	}
	switch s.cur() {
	case '|', '>':
		s.block()
	case '\'', '"':
		s.flow(s.cur())
	default:
		s.flow(0)
	}
	if s.failed || string(s.out) != n.Value {
		return n.Line, n.Column
	}
	if off == len(want) {
		p := s.pos[off-1]
		return p.line, p.col + 1
	}
	return s.pos[off].line, s.pos[off].col
}

// TextOffset converts a 1-based line and column (in runes) inside text, as
// an expression compiler reports them, to a rune offset into text. A
// column past the end of its line is taken as the line's end; a position
// past the end of text as its end.
func TextOffset(text string, line, col int) int {
	off, l := 0, 1
	rs := []rune(text)
	for off < len(rs) && l < line {
		if rs[off] == '\n' {
			l++
		}
		off++
	}
	for c := 1; c < col && off < len(rs) && rs[off] != '\n'; c++ {
		off++
	}
	return off
}

type filePos struct{ line, col int }

// scalarScan re-reads a scalar from the raw file. out is the value being
// rebuilt, pos[i] where out[i] comes from.
type scalarScan struct {
	src       []rune
	i         int
	line, col int
	want      int // runes in the value: reading stops there
	out       []rune
	pos       []filePos
	failed    bool
}

func (s *scalarScan) eof() bool { return s.i >= len(s.src) }

func (s *scalarScan) peek(k int) rune {
	if s.i+k < len(s.src) {
		return s.src[s.i+k]
	}
	return 0
}

func (s *scalarScan) cur() rune     { return s.peek(0) }
func (s *scalarScan) here() filePos { return filePos{s.line, s.col} }
func (s *scalarScan) blank() bool   { return s.cur() == ' ' || s.cur() == '\t' }
func (s *scalarScan) isBreak() bool { return !s.eof() && isBreak(s.cur()) }

// isBreak lists what YAML 1.1 (and so yaml.v3) takes as line breaks.
func isBreak(r rune) bool {
	return r == '\n' || r == '\r' || r == '\u0085' || r == '\u2028' || r == '\u2029'
}

func (s *scalarScan) emit(r rune, p filePos) {
	s.out = append(s.out, r)
	s.pos = append(s.pos, p)
}

// next moves past one rune, a line break (\r\n counts as one) included.
func (s *scalarScan) next() {
	if s.isBreak() {
		s.readBreak()
		return
	}
	s.i++
	s.col++
}

// readBreak moves past a line break and returns what it stands for in a
// value: \n, except for the Unicode line and paragraph separators, which
// yaml.v3 keeps. It returns 0 at the end of the file.
func (s *scalarScan) readBreak() rune {
	r := s.cur()
	if !s.isBreak() {
		return 0
	}
	s.i++
	if r == '\r' && s.cur() == '\n' {
		s.i++
	}
	s.line, s.col = s.line+1, 1
	if r == '\u2028' || r == '\u2029' {
		return r
	}
	return '\n'
}

// flow rebuilds a plain (quote 0), single- or double-quoted scalar. Where
// a plain scalar ends (a comment, `: `, a flow indicator, less
// indentation) does not matter: reading stops once the value is complete.
func (s *scalarScan) flow(quote rune) {
	if quote != 0 {
		s.next()
	}
	for !s.eof() && len(s.out) < s.want {
		escapedBreak := false
	chunk: // the runes up to the next blank or line break
		for !s.eof() && !s.blank() && !s.isBreak() && len(s.out) < s.want {
			r, p := s.cur(), s.here()
			switch {
			case quote == '\'' && r == '\'' && s.peek(1) == '\'':
				s.emit('\'', p) // '' is an escaped quote
				s.i += 2
				s.col += 2
			case quote != 0 && r == quote:
				return // the closing quote
			case quote == '"' && r == '\\' && isBreak(s.peek(1)):
				s.next() // a \ at the end of a line joins it to the next
				s.readBreak()
				escapedBreak = true
				break chunk
			case quote == '"' && r == '\\':
				if !s.escape() {
					return
				}
			default:
				s.emit(r, p)
				s.next()
			}
		}
		if len(s.out) < s.want {
			s.fold(escapedBreak)
		}
	}
}

// fold reads the blanks and line breaks between two chunks of a plain or
// quoted scalar and emits what they stand for: blanks inside a line stay;
// around a line break they go, and the break becomes a space, or, if
// empty lines follow, one newline for each empty line.
func (s *scalarScan) fold(leading bool) {
	var blanks []rune
	var blankPos []filePos
	var lead rune // the first line break, 0 if none (or escaped)
	var leadPos filePos
	var trail []rune // the breaks of empty lines after it
	var trailPos []filePos
	for s.blank() || s.isBreak() {
		p := s.here()
		switch {
		case s.blank() && !leading:
			blanks = append(blanks, s.cur())
			blankPos = append(blankPos, p)
			s.next()
		case s.blank():
			s.next() // indentation and blanks at the end of a line
		case !leading:
			blanks, blankPos = nil, nil
			lead, leadPos, leading = s.readBreak(), p, true
		default:
			trail = append(trail, s.readBreak())
			trailPos = append(trailPos, p)
		}
	}
	switch {
	case !leading:
		trail, trailPos = blanks, blankPos
	case lead == '\n' && len(trail) == 0:
		trail, trailPos = []rune{' '}, []filePos{leadPos}
	case lead != '\n' && lead != 0:
		trail, trailPos = append([]rune{lead}, trail...), append([]filePos{leadPos}, trailPos...)
	}
	for i, r := range trail {
		s.emit(r, trailPos[i])
	}
}

var simpleEscapes = map[rune]rune{
	'0': 0, 'a': '\a', 'b': '\b', 't': '\t', '\t': '\t', 'n': '\n', 'v': '\v', 'f': '\f', 'r': '\r',
	'e': 0x1b, ' ': ' ', '"': '"', '/': '/', '\\': '\\', 'N': 0x85, '_': 0xa0, 'L': 0x2028, 'P': 0x2029,
}

// escape reads a \ escape of a double-quoted scalar; the rune it stands
// for is placed at the backslash.
func (s *scalarScan) escape() bool {
	p := s.here()
	c := s.peek(1)
	if r, ok := simpleEscapes[c]; ok {
		s.emit(r, p)
		s.i += 2
		s.col += 2
		return true
	}
	digits := map[rune]int{'x': 2, 'u': 4, 'U': 8}[c]
	if digits == 0 || s.i+2+digits > len(s.src) {
		s.failed = true
		return false
	}
	v, err := strconv.ParseUint(string(s.src[s.i+2:s.i+2+digits]), 16, 32)
	if err != nil {
		s.failed = true
		return false
	}
	s.emit(rune(v), p)
	s.i += 2 + digits
	s.col += 2 + digits
	return true
}

// block rebuilds a literal (|) or folded (>) block scalar, following
// yaml.v3's yaml_parser_scan_block_scalar.
func (s *scalarScan) block() {
	folded := s.cur() == '>'
	s.next()
	chomp := 0 // -1 strip, 0 clip, +1 keep
	for ; s.cur() == '+' || s.cur() == '-' || s.cur() >= '0' && s.cur() <= '9'; s.next() {
		if s.cur() != '+' && s.cur() != '-' {
			// An explicit indentation counts from the parent's
			// indentation, which the node does not record.
			s.failed = true
			return
		}
		chomp = map[rune]int{'+': 1, '-': -1}[s.cur()]
	}
	for !s.eof() && !s.isBreak() { // blanks and a comment
		s.next()
	}
	s.readBreak()

	// The content's indentation is that of its first non-empty line, or
	// more if empty lines before it are longer.
	indent := 0
	type brk struct {
		r rune
		p filePos
	}
	// breaks reads indentation and empty lines, returning their breaks.
	breaks := func() []brk {
		var out []brk
		maxIndent := 0
		for {
			for (indent == 0 || s.col-1 < indent) && s.cur() == ' ' {
				s.next()
			}
			maxIndent = max(maxIndent, s.col-1)
			if !s.isBreak() {
				break
			}
			p := s.here()
			out = append(out, brk{s.readBreak(), p})
		}
		if indent == 0 {
			// yaml.v3 also requires more indentation than the
			// parent's; without it, the rebuilt value differs.
			indent = max(maxIndent, 1)
		}
		return out
	}
	emit := func(bs []brk) {
		for _, b := range bs {
			s.emit(b.r, b.p)
		}
	}
	trail := breaks()
	var lead []brk // the line break ending the previous content line
	leadingBlank := false
	for s.col-1 == indent && !s.eof() && len(s.out) <= s.want {
		// A line break between two lines of folded text that do not
		// start with a blank becomes a space, or disappears before
		// empty lines, which each give a newline.
		trailingBlank := s.blank()
		if folded && len(lead) == 1 && lead[0].r == '\n' && !leadingBlank && !trailingBlank {
			if len(trail) == 0 {
				s.emit(' ', lead[0].p)
			}
		} else {
			emit(lead)
		}
		emit(trail)
		leadingBlank = trailingBlank
		for !s.eof() && !s.isBreak() {
			s.emit(s.cur(), s.here())
			s.next()
		}
		lead = nil
		if s.isBreak() {
			p := s.here()
			lead = []brk{{s.readBreak(), p}}
		}
		trail = breaks()
	}
	if chomp != -1 {
		emit(lead)
	}
	if chomp == 1 {
		emit(trail)
	}
}
