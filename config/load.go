package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-sec/vigil/internal/yamlpos"
	"github.com/vigil-sec/vigil/rules"
)

// Secret holds a password or token. It prints as [redacted] in logs, fmt
// verbs and errors; Reveal returns the value for the one place that needs it.
type Secret string

// Reveal returns the secret's value.
func (s Secret) Reveal() string { return string(s) }

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// GoString hides the value from %#v too.
func (s Secret) GoString() string { return `config.Secret("` + s.String() + `")` }

// MarshalText hides the value from encoders (JSON, YAML, slog).
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Duration is a duration written like rule durations: 90s, 5m, 1h30m, 7d.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return rules.FormatDuration(time.Duration(d)) }

// Env looks up an environment variable; os.LookupEnv in production.
type Env func(string) (string, bool)

// Load reads and validates a configuration file. Every problem is
// reported, each as file:line:col: key: message.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(path, data, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	// Relative rule paths are relative to the configuration file, as in
	// Prometheus' rule_files, so a config and its rules move together.
	for i, p := range cfg.Rules.Paths {
		if !filepath.IsAbs(p) {
			cfg.Rules.Paths[i] = filepath.Join(filepath.Dir(path), p)
		}
	}
	return cfg, nil
}

// Parse decodes configuration text over Default().
func Parse(name string, data []byte, env Env) (*Config, error) {
	cfg := Default()
	d := &decoder{file: name}
	// Remember what each ${VAR} expanded to: error messages quote values,
	// and a value from the environment may be a secret, so messages show
	// the reference as written instead.
	expanded := map[string]string{}
	d.env = func(key string) (string, bool) {
		v, ok := env(key)
		if ok && len(v) >= 3 {
			expanded[v] = "${" + key + "}"
		}
		return v, ok
	}
	defer func() {
		vals := make([]string, 0, len(expanded))
		for v := range expanded {
			vals = append(vals, v)
		}
		sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
		for _, e := range d.errs {
			for _, v := range vals {
				e.Msg = strings.ReplaceAll(e.Msg, v, expanded[v])
			}
		}
	}()
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlpos.SyntaxError(err)
		return nil, rules.ErrorList{{File: name, Line: line, Column: 1, Msg: "invalid YAML: " + msg}}
	}
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		if root.Kind != yaml.MappingNode {
			d.errorf(root, "", "the configuration is a mapping of sections (kafka, clickhouse, rules, …)")
		} else {
			d.decode(root, reflect.ValueOf(&cfg).Elem(), "")
		}
	}
	if len(d.errs) == 0 {
		for _, p := range cfg.validate() {
			d.errs = append(d.errs, &rules.Error{File: name, Msg: p})
		}
	}
	if err := d.errs.Err(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

type decoder struct {
	file string
	env  Env
	errs rules.ErrorList
}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if key != "" {
		msg = key + ": " + msg
	}
	d.errs = append(d.errs, &rules.Error{File: d.file, Line: n.Line, Column: n.Column, Msg: msg})
}

var (
	durationType = reflect.TypeOf(Duration(0))
	secretType   = reflect.TypeOf(Secret(""))
)

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decode sets v from n, reporting problems under the dotted key path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = yamlpos.Resolve(n)
	switch v.Kind() {
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errorf(n, path, "must be a mapping of names to values")
			return
		}
		m := reflect.MakeMap(v.Type())
		for k, e := range yamlpos.Mapping(n, nil, func(n *yaml.Node, msg string) { d.errorf(n, path, "%s", msg) }) {
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(e.Value, ev, join(path, k))
			m.SetMapIndex(reflect.ValueOf(k), ev)
		}
		v.Set(m)
	case reflect.Slice:
		nodes := n.Content
		switch {
		case n.Kind == yaml.ScalarNode && !yamlpos.IsNull(n):
			nodes = []*yaml.Node{n} // a single value where a list is expected
		case yamlpos.IsNull(n):
			nodes = nil
		case n.Kind != yaml.SequenceNode:
			d.errorf(n, path, "must be a list")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(nodes), len(nodes))
		for i, en := range nodes {
			d.decode(en, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	default:
		d.decodeScalar(n, v, path)
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "must be a mapping")
		return
	}
	t := v.Type()
	fields := map[string]int{}
	allowed := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		key := strings.Split(t.Field(i).Tag.Get("yaml"), ",")[0]
		fields[key] = i
		allowed[key] = true
		if t.Field(i).Type == secretType {
			allowed[key+"_file"] = true
		}
	}
	entries := yamlpos.Mapping(n, allowed, func(n *yaml.Node, msg string) { d.errorf(n, path, "%s", msg) })
	for key, e := range entries {
		if base, ok := strings.CutSuffix(key, "_file"); ok && !hasField(fields, key) {
			if _, both := entries[base]; both {
				d.errorf(e.Key, join(path, key), "set %s or %s, not both", base, key)
				continue
			}
			d.secretFile(e.Value, v.Field(fields[base]), join(path, key))
			continue
		}
		d.decode(e.Value, v.Field(fields[key]), join(path, key))
	}
}

func hasField(fields map[string]int, key string) bool {
	_, ok := fields[key]
	return ok
}

// secretFile reads a secret from the file a *_file key names (Kubernetes
// and systemd credentials); one trailing newline is dropped. A relative
// path is relative to the configuration file, like rule paths.
func (d *decoder) secretFile(n *yaml.Node, v reflect.Value, key string) {
	path, ok := d.scalarText(n, key)
	if !ok {
		return
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(filepath.Dir(d.file), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		d.errorf(n, key, "cannot read the secret file: %v", err)
		return
	}
	v.SetString(strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r"))
}

func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalarText(n, path)
	if !ok {
		return
	}
	switch {
	case v.Type() == durationType:
		dur, err := rules.ParseDuration(s)
		if err != nil {
			d.errorf(n, path, "%v", err)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		i, err := strconv.Atoi(s)
		if err != nil {
			d.errorf(n, path, "must be a whole number, got %q", s)
			return
		}
		v.SetInt(int64(i))
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			d.errorf(n, path, "must be true or false, got %q", s)
			return
		}
		v.SetBool(b)
	default:
		d.errorf(n, path, "unsupported value")
	}
}

// scalarText returns a scalar's text with ${ENV} references expanded.
func (d *decoder) scalarText(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, key, "must be a single value")
		return "", false
	}
	if yamlpos.IsNull(n) {
		return "", true
	}
	out, err := expand(n.Value, d.env)
	if err != nil {
		d.errorf(n, key, "%v", err)
		return "", false
	}
	return out, true
}

var envRef = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expand replaces ${VAR} and ${VAR:-default}; $$ is a literal $. An unset
// variable without a default is an error naming it.
func expand(s string, env Env) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := envRef.FindStringSubmatch(m)
		if v, ok := env(sub[1]); ok && v != "" {
			return v
		}
		if sub[2] != "" {
			return sub[3]
		}
		missing = append(missing, sub[1])
		return ""
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set (set it, or write ${%s:-default})", missing[0], missing[0])
	}
	return out, nil
}
