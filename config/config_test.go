package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sec/vigil/rules"
)

func env(m map[string]string) Env {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestExampleConfigIsValidAndMatchesDefaults(t *testing.T) {
	data, err := os.ReadFile("../configs/vigil.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := Parse("vigil.example.yaml", data, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	def.Rules.Paths = []string{"/etc/vigil/rules"}
	def.Namespaces = map[string]string{}
	if fmt.Sprintf("%+v", *cfg) != fmt.Sprintf("%+v", def) {
		t.Errorf("the example differs from the defaults:\n%+v\n%+v", *cfg, def)
	}
}

func TestEnvironmentAndSecretFiles(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("s3cret-file\n"), 0o600)
	src := `kafka:
  brokers: ["${BROKER}", "b:${PORT:-9093}"]
  sasl: {mechanism: plain, username: vigil, password: "${KAFKA_PW}"}
clickhouse:
  password_file: ` + pwFile + `
  database: "v$$x"
rules: {paths: [r]}
`
	cfg, err := Parse("c.yaml", []byte(src), env(map[string]string{"BROKER": "a:9092", "KAFKA_PW": "hunter2"}))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Kafka.Brokers, ",") != "a:9092,b:9093" || cfg.Kafka.SASL.Password.Reveal() != "hunter2" ||
		cfg.ClickHouse.Password.Reveal() != "s3cret-file" || cfg.ClickHouse.Database != "v$x" {
		t.Errorf("decoded %+v", cfg)
	}
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg)} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "s3cret") {
			t.Errorf("a secret was printed: %s", s)
		}
	}
}

func TestProblemsNameTheKeyAndPosition(t *testing.T) {
	tests := []struct {
		name string
		src  string
		env  map[string]string
		want []string
	}{
		{"unknown keys suggest the right one", "kafka:\n  brokrs: [a:1]\nrules: {paths: [r]}\n", nil,
			[]string{`c.yaml:2:3: kafka: unknown key "brokrs" (did you mean "brokers"?)`}},
		{"wrong types name the key", "clickhouse:\n  batch_size: lots\nrules: {paths: [r]}\n", nil,
			[]string{`c.yaml:2:15: clickhouse.batch_size: must be a whole number, got "lots"`}},
		{"bad durations name the key", "detector:\n  lateness: 5x\nrules: {paths: [r]}\n", nil,
			[]string{`c.yaml:2:13: detector.lateness: invalid duration "5x" (use e.g. 90s, 5m, 1h30m, 7d)`}},
		{"unset variables are errors", "kafka:\n  sasl: {password: '${NOPE}'}\nrules: {paths: [r]}\n", nil,
			[]string{`c.yaml:2:20: kafka.sasl.password: environment variable NOPE is not set (set it, or write ${NOPE:-default})`}},
		{"a secret and its file together are an error", "kafka:\n  sasl: {password: x, password_file: /x}\nrules: {paths: [r]}\n", nil,
			[]string{`c.yaml:2:23: kafka.sasl.password_file: set password or password_file, not both`}},
		{"a missing secret file is an error", "clickhouse:\n  password_file: /nonexistent/pw\nrules: {paths: [r]}\n", nil,
			[]string{`c.yaml:2:18: clickhouse.password_file: cannot read the secret file: open /nonexistent/pw: no such file or directory`}},
		{"values that decode but make no sense are explained", "kafka:\n  brokers: [kafka]\n  sasl: {mechanism: gssapi}\nlog: {level: loud}\n", nil,
			[]string{`c.yaml: kafka.brokers: "kafka" has no port; write host:port, e.g. kafka:9092`,
				`c.yaml: kafka.sasl.mechanism: unknown mechanism "gssapi"; use plain, scram-sha-256 or scram-sha-512`,
				`c.yaml: kafka.sasl.username: required when kafka.sasl.mechanism is set`,
				`c.yaml: rules.paths: name at least one rule file or directory, e.g. [/etc/vigil/rules]`,
				`c.yaml: log.level: unknown level "loud"; use debug, info, warn or error`}},
		{"bad YAML is positioned", "kafka: [\n", nil, []string{`c.yaml:1:1: invalid YAML: did not find expected node content`}},
		{"concurrent inserts must fit in the buffer", "clickhouse:\n  concurrent_inserts: 4\n  batch_size: 1000\n  max_buffered_events: 5000\nrules: {paths: [r]}\n", nil,
			[]string{`c.yaml: clickhouse.concurrent_inserts: 4 needs clickhouse.max_buffered_events of at least (concurrent_inserts + 3) × batch_size = 7000: raise it, or set 0 for the default`}},
		{"shards without a cluster are an error", "clickhouse:\n  shards: [ch1:9000, ch2:9000]\nrules: {paths: [r]}\n", nil,
			[]string{`c.yaml: clickhouse.shards: needs clickhouse.cluster, the cluster these servers form`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tt.src), env(tt.env))
			var list rules.ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("err = %v", err)
			}
			if got := list.Error(); got != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", got, strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestDurationsAcceptDays(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte("clickhouse: {retention: {requests: 30d, audit: 400d}}\nrules: {paths: [r]}\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClickHouse.Retention.Requests.D() != 30*24*time.Hour || cfg.ClickHouse.Retention.Audit.String() != "400d" {
		t.Errorf("retention %+v", cfg.ClickHouse.Retention)
	}
}

func FuzzParse(f *testing.F) {
	data, _ := os.ReadFile("../configs/vigil.example.yaml")
	f.Add(data)
	f.Add([]byte("kafka: {brokers: [a:1]}\nrules: {paths: [r]}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := Parse("f.yaml", b, env(map[string]string{"X": "1"}))
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
	})
}

// A value from the environment may be a secret: errors quote the
// reference as written, never what it expanded to.
func TestErrorsNeverQuoteExpandedEnvironmentValues(t *testing.T) {
	const secret = "s3cr3t-Value-42"
	env := func(k string) (string, bool) { return secret, true }
	for _, doc := range []string{
		"kafka:\n  brokers: ${PASSWORD}\n",
		"log:\n  level: ${PASSWORD}\n",
		"clickhouse:\n  batch_size: ${PASSWORD}\n",
		"clickhouse:\n  password_file: ${PASSWORD}\n",
		"ops:\n  addr: ${PASSWORD}\n",
	} {
		_, err := Parse("vigil.yaml", []byte(doc), env)
		if err == nil {
			t.Errorf("%q: no error", doc)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("%q: the error quotes the secret: %v", doc, err)
		}
		if !strings.Contains(err.Error(), "${PASSWORD}") {
			t.Errorf("%q: the error should name the reference: %v", doc, err)
		}
	}
}
