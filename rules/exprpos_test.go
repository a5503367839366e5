package rules

import (
	"strings"
	"testing"
)

// An expression's error is reported where the problem is in the file,
// whatever the style of the YAML scalar holding the expression: quotes,
// escapes, block indentation and line folding are all accounted for.
func TestExpressionErrorsPointIntoTheFile(t *testing.T) {
	const unknown = "expression: unknown field bogus for source requests"
	tests := []struct {
		name  string
		where string // the YAML after "    where:" on line 4
		want  string
	}{
		{"plain single line", " status >= 500 && bogus == 1", "4:29: " + unknown},
		{"single-quoted", " 'status >= 500 && bogus == 1'", "4:30: " + unknown},
		{"single-quoted with an escaped quote", " 'route == ''/x'' && bogus == 1'", "4:32: " + unknown},
		{"double-quoted with escapes", ` "route == \"/x\" && bogus == 1"`, "4:32: " + unknown},
		{"double-quoted with a \\u escape", ` "route == \"\u00e9\" && bogus == 1"`, "4:36: " + unknown},
		{"runes wider than a byte", ` 'route == "éé" && bogus == 1'`, "4:30: " + unknown},
		{"plain over two lines", " status >= 500 &&\n      bogus == 1", "5:7: " + unknown},
		{"single-quoted over two lines", " 'status >= 500 &&\n      bogus == 1'", "5:7: " + unknown},
		{"double-quoted over two lines", " \"status >= 500 &&\n      bogus == 1\"", "5:7: " + unknown},
		{"double-quoted with an escaped line break", " \"status >= 500 && \\\n      bogus == 1\"", "5:7: " + unknown},
		{"literal block, first line", " |\n      bogus == 1 &&\n      status >= 500", "5:7: " + unknown},
		{"literal block, later line", " |\n      status >= 500 &&\n      bogus == 1", "6:7: " + unknown},
		{"literal block, later line, inside it", " |\n      status >= 500\n        && bogus == 1", "6:12: " + unknown},
		{"literal block kept, after an empty line", " |+\n      status >= 500\n\n      && bogus == 1\n", "7:10: " + unknown},
		{"folded block, first line", " >-\n      bogus == 1 &&\n      status >= 500", "5:7: " + unknown},
		{"folded block, later line", " >-\n      status >= 500 &&\n      bogus == 1", "6:7: " + unknown},
		{"folded block, after an empty line", " >\n      status >= 500\n\n      && bogus == 1", "7:10: " + unknown},
		{"folded block with a comment and a tag", " !!str >- # 5xx\n      status >= 500 &&\n      bogus == 1", "6:7: " + unknown},
		{"anchored", " &w\n      'status >= 500 && bogus == 1'", "5:25: " + unknown},
		{"literal block at the end of input, no final newline", " |-\n      status >= 500 &&\n      bogus == 1", "6:7: " + unknown},
		// The indentation an explicit indicator counts from is not in the
		// node: the error falls back to the start of the value.
		{"explicit indentation falls back", " |2\n        status >= 500 &&\n        bogus == 1", "4:12: " + unknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := "rules:\n  - id: r\n    source: requests\n    where:" + tt.where + "\n    window: 1m\n    threshold: '> 1'\n"
			if strings.HasSuffix(tt.name, "no final newline") {
				src = "rules:\n  - id: r\n    source: requests\n    window: 1m\n    threshold: '> 1'\n    where:" + tt.where
				tt.want = strings.Replace(strings.Replace(tt.want, "6:", "8:", 1), "4:", "6:", 1)
			}
			for _, crlf := range []bool{false, true} {
				data := src
				if crlf {
					data = strings.ReplaceAll(src, "\n", "\r\n")
				}
				_, errs := Parse("f.yaml", []byte(data))
				if got := errs.Error(); got != "f.yaml:"+tt.want {
					t.Errorf("crlf=%v: got\n%s\nwant\nf.yaml:%s\nin\n%s", crlf, got, tt.want, data)
				}
			}
		})
	}
}

// ratio(...) arguments and sequence steps are positioned the same way.
func TestNestedExpressionErrorsPointIntoTheFile(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"ratio, plain",
			"rules:\n  - id: r\n    source: requests\n    window: 1m\n    aggregate: ratio( bogus == 1 )\n    threshold: '> 0.5'\n",
			"f.yaml:5:23: ratio expression: unknown field bogus for source requests"},
		{"ratio whose argument repeats the word ratio",
			"rules:\n  - id: r\n    source: requests\n    window: 1m\n    aggregate: 'ratio(ratio == 1)'\n    threshold: '> 0.5'\n",
			"f.yaml:5:23: ratio expression: unknown field ratio for source requests"},
		{"ratio in a folded block",
			"rules:\n  - id: r\n    source: requests\n    window: 1m\n    aggregate: >-\n      ratio(status >= 500 &&\n      bogus == 1)\n    threshold: '> 0.5'\n",
			"f.yaml:7:7: ratio expression: unknown field bogus for source requests"},
		{"sequence step, literal block",
			"rules:\n  - id: r\n    source: audit\n    sequence:\n      within: 1m\n      steps:\n        - where: |\n            action == \"x\" &&\n            bogus == 1\n",
			"f.yaml:9:13: expression: unknown field bogus for source audit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errs := Parse("f.yaml", []byte(tt.src))
			if got := errs.Error(); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}
