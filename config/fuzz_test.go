package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/vigil-sec/vigil/rules"
)

// The secrets FuzzParseConfig hands the loader: fuzzEnvSecret is the value
// of every environment variable whose name says it holds a secret, and
// fuzzFileSecret the content of the file "pw" next to the configuration.
// Neither may ever appear in an error, in whole or in half.
const (
	fuzzEnvSecret  = "Qx7vKp2LmZ9w"
	fuzzFileSecret = "Fh4rTy8NcB3s"
)

// fuzzSecretEnv is the environment of FuzzParseConfig: a variable named like
// a secret (…PASSWORD…, …TOKEN…, …SECRET…, …DSN…) holds fuzzEnvSecret; every
// other variable is unset, so ${VAR:-default} uses its default and ${VAR}
// is an error naming VAR.
func fuzzSecretEnv(name string) (string, bool) {
	upper := strings.ToUpper(name)
	for _, marker := range []string{"PASSWORD", "TOKEN", "SECRET", "DSN"} {
		if strings.Contains(upper, marker) {
			return fuzzEnvSecret, true
		}
	}
	return "", false
}

// configKeyFirst matches the start of a problem that has no position: the
// key it names, under one of the top-level sections.
var configKeyFirst = regexp.MustCompile(`^(kafka|clickhouse|rules|detector|namespaces|responders|ops|log)[.:\[]`)

// configWithSecrets sets every secret of the configuration from the
// environment or from the secret file, the two ways operators pass them.
const configWithSecrets = `kafka:
  brokers: ["${KAFKA_BROKERS:-127.0.0.1:9092}"]
  sasl: {mechanism: plain, username: vigil, password: "${KAFKA_PASSWORD}"}
clickhouse:
  password_file: pw
rules: {paths: [rules]}
responders:
  sentry: {dsn: "${SENTRY_DSN}"}
  webhook: {url: "https://hooks.example/vigil", secret_file: pw}
  admin_api: {url: "https://admin.example", token: "${ADMIN_API_TOKEN}"}
  cloudflare: {api_token: "${CLOUDFLARE_API_TOKEN}", account_id: acc, zone_id: zone}
ops: {basic_auth_user: ops, basic_auth_password: "${OPS_PASSWORD}"}
`

// FuzzParseConfig checks that Parse never panics, that every problem names
// a key or a file:line:col position, that a secret passed through the
// environment (${…}) or a *_file key never shows in an error, and that the
// same input always gives the same problems.
func FuzzParseConfig(f *testing.F) {
	for _, name := range []string{"../configs/vigil.example.yaml", "../configs/examples/example.yaml"} {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(configWithSecrets))
	f.Add([]byte(strings.ReplaceAll(configWithSecrets, "https://", "ftp://")))
	f.Add([]byte("kafka: {sasl: {password: '${KAFKA_PASSWORD}', password_file: pw}}\nrules: {paths: [r]}\n"))
	f.Add([]byte("log: {level: '${LOG_LEVEL:-debug}'}\nnamespaces: {ns_1: PHI, ns_2: SECRET}\nrules: {paths: [r]}\n"))
	f.Add([]byte("clickhouse: {batch_size: '${BATCH_SIZE}', retention: {requests: 30d}}\nrules: {paths: [r]}\n"))
	f.Add([]byte("x: &a [*a]\n"))

	dir := f.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte(fuzzFileSecret+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	name := filepath.Join(dir, "vigil.yaml")
	secrets := []string{
		fuzzEnvSecret, fuzzEnvSecret[:6], fuzzEnvSecret[6:],
		fuzzFileSecret, fuzzFileSecret[:6], fuzzFileSecret[6:],
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		// *_file keys read the file they name: keep the fuzzer away from
		// devices and kernel files that never end (/dev/zero, /proc/kmsg).
		for _, p := range []string{"/dev", "/proc", "/sys"} {
			if bytes.Contains(data, []byte(p)) {
				t.Skip("names a device or kernel file")
			}
		}
		cfg, err := Parse(name, data, fuzzSecretEnv)
		if err == nil {
			if cfg == nil {
				t.Fatal("no configuration and no error")
			}
			return
		}
		if cfg != nil {
			t.Fatalf("a configuration together with the error %v", err)
		}
		var list rules.ErrorList
		if !errors.As(err, &list) || len(list) == 0 {
			t.Fatalf("got %T %v, want a non-empty rules.ErrorList", err, err)
		}
		for _, e := range list {
			if e.File != name || e.Msg == "" {
				t.Fatalf("problem without file or message: %#v", e)
			}
			positioned := e.Line >= 1 && e.Column >= 1
			if !positioned && !(e.Line == 0 && e.Column == 0 && configKeyFirst.MatchString(e.Msg)) {
				t.Fatalf("problem %q has neither a file:line:col position nor a key", e.Error())
			}
		}

		text := err.Error()
		for _, s := range secrets {
			if strings.Contains(text, s) && !bytes.Contains(data, []byte(s)) {
				t.Fatalf("the error shows the secret (or half of it, %q):\n%s", s, text)
			}
		}

		// The order of problems without a position follows map iteration
		// (responders.policy, namespaces); their set must not change.
		_, again := Parse(name, data, fuzzSecretEnv)
		if again == nil {
			t.Fatalf("a second parse succeeded; the first failed with %v", err)
		}
		first, second := strings.Split(text, "\n"), strings.Split(again.Error(), "\n")
		slices.Sort(first)
		slices.Sort(second)
		if !slices.Equal(first, second) {
			t.Fatalf("a second parse reports different problems:\nfirst:\n%s\nsecond:\n%s", text, again)
		}
	})
}
