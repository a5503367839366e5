package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Reference renders every configuration key with its default and its
// documentation as a Markdown table, from the Config struct itself, so
// docs/operations.md cannot drift from the code (a test compares them).
func Reference() string {
	var b strings.Builder
	b.WriteString("| key | default | meaning |\n|---|---|---|\n")
	def := Default()
	walk(&b, reflect.ValueOf(def), "")
	return b.String()
}

func walk(b *strings.Builder, v reflect.Value, prefix string) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("yaml")
		if key == "" || key == "-" {
			continue
		}
		if prefix != "" {
			key = prefix + "." + key
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && f.Type != durationType {
			walk(b, fv, key)
			continue
		}
		doc := f.Tag.Get("doc")
		if f.Type == secretType {
			key += " (or " + f.Tag.Get("yaml") + "_file)"
		}
		fmt.Fprintf(b, "| `%s` | %s | %s |\n", key, render(fv), strings.ReplaceAll(doc, "|", "\\|"))
	}
}

// render shows a default value as it would be written in YAML.
func render(v reflect.Value) string {
	switch {
	case v.Type() == durationType:
		if v.Int() == 0 {
			return "`0`"
		}
		return "`" + Duration(v.Int()).String() + "`"
	case v.Type() == secretType:
		return "—"
	}
	switch v.Kind() {
	case reflect.String:
		if v.String() == "" {
			return `""`
		}
		return "`" + v.String() + "`"
	case reflect.Slice:
		items := make([]string, v.Len())
		for i := range items {
			items[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return "`[" + strings.Join(items, ", ") + "]`"
	case reflect.Map:
		keys := make([]string, 0, v.Len())
		for _, k := range v.MapKeys() {
			keys = append(keys, k.String())
		}
		sort.Strings(keys)
		items := make([]string, len(keys))
		for i, k := range keys {
			val := v.MapIndex(reflect.ValueOf(k))
			if val.Kind() == reflect.Slice {
				sub := make([]string, val.Len())
				for j := range sub {
					sub[j] = fmt.Sprint(val.Index(j).Interface())
				}
				items[i] = k + ": [" + strings.Join(sub, ", ") + "]"
			} else {
				items[i] = fmt.Sprintf("%s: %v", k, val.Interface())
			}
		}
		return "`{" + strings.Join(items, ", ") + "}`"
	}
	return "`" + fmt.Sprint(v.Interface()) + "`"
}
