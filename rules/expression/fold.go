package expression

import (
	"strings"
	"unicode/utf8"
)

// lower() and upper() would allocate a new string per event whenever the
// input has a letter to change. Instead a string value carries the case
// mapping still to apply ("fold"), and the operators that consume it walk
// the bytes of the mapped string without building it.
//
// strings.ToLower(s) and strings.ToUpper(s) are, byte for byte, the
// concatenation of utf8.EncodeRune(f(c)) over `for _, c := range s` (an
// invalid byte reads as U+FFFD and is written as U+FFFD, as strings.Map
// does), so a foldIter yields exactly their bytes; composing mappings rune by
// rune gives lower(upper(s)) too.

// foldIter yields the bytes of strings.Map(fold, s); a nil fold yields s.
type foldIter struct {
	s    string
	fold func(rune) rune
	buf  [utf8.UTFMax]byte
	j, n uint8 // buf[j:n] are pending bytes of the last mapped rune
}

func (it *foldIter) next() (byte, bool) {
	if it.j < it.n {
		b := it.buf[it.j]
		it.j++
		return b, true
	}
	if len(it.s) == 0 {
		return 0, false
	}
	c := it.s[0]
	if it.fold == nil {
		it.s = it.s[1:]
		return c, true
	}
	var r rune
	if c < utf8.RuneSelf {
		r = rune(c)
		it.s = it.s[1:]
	} else {
		var w int
		r, w = utf8.DecodeRuneInString(it.s)
		it.s = it.s[w:]
	}
	r = it.fold(r)
	if r >= 0 && r < utf8.RuneSelf {
		return byte(r), true
	}
	it.n = uint8(utf8.EncodeRune(it.buf[:], r))
	it.j = 1
	return it.buf[0], true
}

// foldLen is len(strings.Map(fold, s)).
func foldLen(s string, fold func(rune) rune) int {
	if fold == nil {
		return len(s)
	}
	n := 0
	for _, c := range s {
		l := utf8.RuneLen(fold(c))
		if l < 0 {
			l = len(string(utf8.RuneError))
		}
		n += l
	}
	return n
}

// foldString materialises the mapped string; used at compile time only
// (constant folding).
func foldString(s string, fold func(rune) rune) string {
	if fold == nil {
		return s
	}
	return strings.Map(fold, s)
}

// foldCompare is strings.Compare of the two mapped strings.
func foldCompare(a string, fa func(rune) rune, b string, fb func(rune) rune) int {
	if fa == nil && fb == nil {
		return strings.Compare(a, b)
	}
	ia := foldIter{s: a, fold: fa}
	ib := foldIter{s: b, fold: fb}
	for {
		x, okx := ia.next()
		y, oky := ib.next()
		switch {
		case !okx && !oky:
			return 0
		case !okx:
			return -1
		case !oky:
			return 1
		case x != y:
			if x < y {
				return -1
			}
			return 1
		}
	}
}

func foldEqual(a string, fa func(rune) rune, b string, fb func(rune) rune) bool {
	if fa == nil && fb == nil {
		return a == b
	}
	return foldCompare(a, fa, b, fb) == 0
}

// foldHasPrefix is strings.HasPrefix of the mapped strings.
func foldHasPrefix(s string, fs func(rune) rune, p string, fp func(rune) rune) bool {
	if fs == nil && fp == nil {
		return strings.HasPrefix(s, p)
	}
	is := foldIter{s: s, fold: fs}
	ip := foldIter{s: p, fold: fp}
	return prefixOf(&is, &ip)
}

// prefixOf consumes p and reports whether all its bytes come next in s.
func prefixOf(s, p *foldIter) bool {
	for {
		y, ok := p.next()
		if !ok {
			return true
		}
		x, ok := s.next()
		if !ok || x != y {
			return false
		}
	}
}

// foldHasSuffix is strings.HasSuffix of the mapped strings.
func foldHasSuffix(s string, fs func(rune) rune, x string, fx func(rune) rune) bool {
	if fs == nil && fx == nil {
		return strings.HasSuffix(s, x)
	}
	ls, lx := foldLen(s, fs), foldLen(x, fx)
	if lx > ls {
		return false
	}
	is := foldIter{s: s, fold: fs}
	for range ls - lx {
		is.next()
	}
	ix := foldIter{s: x, fold: fx}
	return prefixOf(&is, &ix)
}

// foldContains is strings.Contains of the mapped strings. It is the naive
// search, which is fine for the lengths of log fields.
func foldContains(s string, fs func(rune) rune, x string, fx func(rune) rune) bool {
	if fs == nil && fx == nil {
		return strings.Contains(s, x)
	}
	ls, lx := foldLen(s, fs), foldLen(x, fx)
	if lx == 0 {
		return true
	}
	start := foldIter{s: s, fold: fs}
	for i := 0; i+lx <= ls; i++ {
		is := start
		ix := foldIter{s: x, fold: fx}
		if prefixOf(&is, &ix) {
			return true
		}
		start.next()
	}
	return false
}

// compose returns the mapping "outer after inner"; inner may be nil.
func compose(outer, inner func(rune) rune) func(rune) rune {
	if inner == nil {
		return outer
	}
	return func(r rune) rune { return outer(inner(r)) }
}

// Most log fields are ASCII, and lower/upper map ASCII to ASCII. For those a
// 128-byte table maps the string byte for byte and the mapped string has the
// same length, which makes the tests below plain loops.

// asciiTable returns fold's mapping of the ASCII range, or nil when fold
// takes some ASCII character out of it.
func asciiTable(fold func(rune) rune) *[utf8.RuneSelf]byte {
	var t [utf8.RuneSelf]byte
	for c := range t {
		r := fold(rune(c))
		if r < 0 || r >= utf8.RuneSelf {
			return nil
		}
		t[c] = byte(r)
	}
	return &t
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// The table* functions take an ASCII s, mapped through t, and a plain x.

func tableHasPrefix(s string, t *[utf8.RuneSelf]byte, x string) bool {
	if len(x) > len(s) {
		return false
	}
	for i := 0; i < len(x); i++ {
		if t[s[i]] != x[i] {
			return false
		}
	}
	return true
}

func tableEqual(s string, t *[utf8.RuneSelf]byte, x string) bool {
	return len(s) == len(x) && tableHasPrefix(s, t, x)
}

func tableHasSuffix(s string, t *[utf8.RuneSelf]byte, x string) bool {
	return len(x) <= len(s) && tableHasPrefix(s[len(s)-len(x):], t, x)
}

func tableContains(s string, t *[utf8.RuneSelf]byte, x string) bool {
	if len(x) == 0 {
		return true
	}
	first := x[0]
	for i := 0; i+len(x) <= len(s); i++ {
		if t[s[i]] == first && tableHasPrefix(s[i:], t, x) {
			return true
		}
	}
	return false
}

func tableCompare(s string, t *[utf8.RuneSelf]byte, x string) int {
	for i := 0; i < len(s) && i < len(x); i++ {
		if a, b := t[s[i]], x[i]; a != b {
			if a < b {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(s) < len(x):
		return -1
	case len(s) > len(x):
		return 1
	}
	return 0
}

// foldTest is one of the fold* tests with its ASCII shortcut.
type foldTest struct {
	generic func(s string, fs func(rune) rune, x string, fx func(rune) rune) bool
	table   func(s string, t *[utf8.RuneSelf]byte, x string) bool
}

var (
	testEqual     = foldTest{foldEqual, tableEqual}
	testHasPrefix = foldTest{foldHasPrefix, tableHasPrefix}
	testHasSuffix = foldTest{foldHasSuffix, tableHasSuffix}
	testContains  = foldTest{foldContains, tableContains}
)

// bind returns test(s, fs, x, fx) as a function of s and x, taking the
// table shortcut when only s is mapped and it is ASCII.
func (ft foldTest) bind(fs, fx func(rune) rune) func(s, x string) bool {
	generic := ft.generic
	if fx == nil {
		if t := asciiTable(fs); t != nil {
			table := ft.table
			return func(s, x string) bool {
				if isASCII(s) {
					return table(s, t, x)
				}
				return generic(s, fs, x, nil)
			}
		}
	}
	return func(s, x string) bool { return generic(s, fs, x, fx) }
}

// bindCompare is foldCompare as a function of s and x, with the shortcut.
func bindCompare(fs, fx func(rune) rune) func(s, x string) int {
	if fx == nil && fs != nil {
		if t := asciiTable(fs); t != nil {
			return func(s, x string) int {
				if isASCII(s) {
					return tableCompare(s, t, x)
				}
				return foldCompare(s, fs, x, nil)
			}
		}
	}
	return func(s, x string) int { return foldCompare(s, fs, x, fx) }
}
