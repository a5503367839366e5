package yamlpos

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"

	"gopkg.in/yaml.v3"
)

// scalarDocs hold scalars of every style; every rune of their values that
// is not folded whitespace must map to that same rune in the file (or to
// the backslash of its escape).
var scalarDocs = []string{
	"k: plain text\n",
	"k: plain # comment\n",
	"k: plain\n  over\n\n  lines   with  blanks\n",
	"k: 'single ''quoted'' text'\n",
	"k: 'single\n  over\n\n  lines '\n",
	"k: \"double \\\"quoted\\\" \\t \\x41 \\u00e9 \\U0001F600 \\\\ text\"\n",
	"k: \"double\n  over \\\n  lines\\n\n\n  end\"\n",
	"k: |\n  literal\n    more\n\n  text\n",
	"k: |-\n\n  literal stripped\n  text\n\n",
	"k: |+\n  literal kept\n\n",
	"k: >\n  folded\n  text\n\n  para\n    more indented\n  back\n",
	"k: >-\n   folded # not a comment\n   text\n",
	"k: &a !!str >-\n  anchored\n  folded\n",
	"l:\n  - {a: flow plain, b: 'flow quoted'}\n  - [x y, \"z\"]\n",
	"k: é ü 😀 runes\n",
	"k: |\r\n  crlf\r\n  lines\r\n",
	"\uFEFFk: bom\n",
}

func TestScalarPositionFindsEveryRune(t *testing.T) {
	docs := append([]string(nil), scalarDocs...)
	for _, pattern := range []string{"../../configs/rules/*.yaml", "../../rules/testdata/*.yaml"} {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, string(b))
		}
	}
	for _, src := range docs {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
			continue // the bad-YAML test file
		}
		lines := strings.Split(strings.ReplaceAll(strings.TrimPrefix(src, "\uFEFF"), "\r\n", "\n"), "\n")
		walkScalars(&doc, func(n *yaml.Node) {
			val := []rune(n.Value)
			prev := [2]int{n.Line, n.Column}
			exact := false
			for off := 0; off <= len(val); off++ {
				line, col := ScalarPosition([]byte(src), n, off)
				if line < prev[0] || line == prev[0] && col < prev[1] {
					t.Errorf("%q: offset %d at %d:%d, before the previous offset's %d:%d", n.Value, off, line, col, prev[0], prev[1])
				}
				prev = [2]int{line, col}
				if off == len(val) || unicode.IsSpace(val[off]) {
					continue
				}
				var got rune
				if l := []rune(lines[line-1]); col-1 < len(l) {
					got = l[col-1]
				}
				if got != val[off] && (got != '\\' || n.Style&yaml.DoubleQuotedStyle == 0) {
					t.Errorf("%q: offset %d (%q) at %d:%d, which holds %q, in\n%s", n.Value, off, val[off], line, col, got, src)
				}
				exact = exact || line != n.Line || col != n.Column
			}
			if len(val) > 1 && !exact {
				t.Errorf("%q (%d:%d): every offset fell back to the start", n.Value, n.Line, n.Column)
			}
		})
	}
}

func walkScalars(n *yaml.Node, f func(*yaml.Node)) {
	if n.Kind == yaml.ScalarNode {
		f(n)
	}
	for _, c := range n.Content {
		walkScalars(c, f)
	}
}

func TestScalarPositionFallsBackToTheStart(t *testing.T) {
	tests := []struct {
		name, src string
		off       int
	}{
		{"explicit indentation indicator", "m:\n  k: |2\n      text\n", 1},
		{"offset before the value", "m:\n  k: text\n", -1},
		{"offset after the value", "m:\n  k: text\n", 5},
		{"empty value", "m:\n  k: ''\n", 0},
		{"source that is not the node's", "m:\n  k: text\n", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var doc yaml.Node
			if err := yaml.Unmarshal([]byte(tt.src), &doc); err != nil {
				t.Fatal(err)
			}
			n := doc.Content[0].Content[1].Content[1]
			src := tt.src
			if strings.HasPrefix(tt.name, "source") {
				src = "m:\n  k: other\n"
			}
			if line, col := ScalarPosition([]byte(src), n, tt.off); line != 2 || col != 6 {
				t.Errorf("got %d:%d, want the value's start 2:6", line, col)
			}
		})
	}
}

func TestTextOffset(t *testing.T) {
	text := "ab\nçde\n"
	for _, tt := range []struct{ line, col, want int }{
		{1, 1, 0}, {1, 2, 1}, {1, 9, 2}, {2, 1, 3}, {2, 3, 5}, {3, 1, 7}, {9, 9, 7},
	} {
		if got := TextOffset(text, tt.line, tt.col); got != tt.want {
			t.Errorf("TextOffset(%d, %d) = %d, want %d", tt.line, tt.col, got, tt.want)
		}
	}
}
