package kubernetes

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// object is one manifest document as generic YAML.
type object struct {
	file string
	doc  int // 1-based index in the file
	m    map[string]any
}

func (o object) kind() string { return str(o.m["kind"]) }
func (o object) name() string { return str(at(o.m, "metadata", "name")) }
func (o object) String() string {
	return fmt.Sprintf("%s document %d (%s %s)", o.file, o.doc, o.kind(), o.name())
}

// manifests parses every YAML document of the manifests in this directory
// (not kustomization.yaml, which is no Kubernetes object).
func manifests(t *testing.T) []object {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var out []object
	for _, f := range files {
		if f == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		for i := 1; ; i++ {
			var m map[string]any
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if m == nil {
				continue // a comment-only document
			}
			out = append(out, object{file: f, doc: i, m: m})
		}
	}
	if len(out) == 0 {
		t.Fatal("no manifests found next to the test")
	}
	return out
}

func byKind(objs []object, kind string) []object {
	var out []object
	for _, o := range objs {
		if o.kind() == kind {
			out = append(out, o)
		}
	}
	return out
}

func find(objs []object, kind, name string) (object, bool) {
	for _, o := range objs {
		if o.kind() == kind && o.name() == name {
			return o, true
		}
	}
	return object{}, false
}

// at walks nested mappings; nil when a step is missing.
func at(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func maps(v any) []map[string]any {
	l, _ := v.([]any)
	var out []map[string]any
	for _, e := range l {
		if m, ok := e.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func strs(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, e := range l {
		out = append(out, fmt.Sprint(e))
	}
	return out
}

func TestEveryObjectHasAnAPIVersionKindAndName(t *testing.T) {
	seen := map[string]object{}
	for _, o := range manifests(t) {
		t.Run(o.String(), func(t *testing.T) {
			for _, key := range []string{"apiVersion", "kind"} {
				if str(o.m[key]) == "" {
					t.Errorf("%s is missing", key)
				}
			}
			if o.name() == "" {
				t.Error("metadata.name is missing")
			}
			id := o.kind() + "/" + o.name()
			if first, dup := seen[id]; dup {
				t.Errorf("%s is also defined in %s: applying both files would overwrite one", id, first)
			}
			seen[id] = o
		})
	}
}

// wantSecurityContext is what every container must set.
var wantSecurityContext = []struct {
	path []string
	want any
}{
	{[]string{"runAsNonRoot"}, true},
	{[]string{"runAsUser"}, 65532},
	{[]string{"readOnlyRootFilesystem"}, true},
	{[]string{"allowPrivilegeEscalation"}, false},
	{[]string{"seccompProfile", "type"}, "RuntimeDefault"},
}

func TestDeployments(t *testing.T) {
	objs := manifests(t)
	deployments := byKind(objs, "Deployment")
	if len(deployments) == 0 {
		t.Fatal("no Deployment in the manifests")
	}

	checks := []struct {
		name  string
		check func(pod map[string]any, labels map[string]any, d object) []string
	}{
		{"the selector matches the pod template's labels", func(pod, labels map[string]any, d object) []string {
			sel, _ := at(d.m, "spec", "selector", "matchLabels").(map[string]any)
			if len(sel) == 0 {
				return []string{"spec.selector.matchLabels is empty"}
			}
			var bad []string
			for k, v := range sel {
				if labels[k] != v {
					bad = append(bad, fmt.Sprintf("selector %s=%v, template label %v", k, v, labels[k]))
				}
			}
			return bad
		}},
		{"every container has an image and resource requests and limits", func(pod, _ map[string]any, _ object) []string {
			var bad []string
			for _, c := range containers(pod) {
				if str(c["image"]) == "" {
					bad = append(bad, fmt.Sprintf("container %s has no image", c["name"]))
				}
				for _, kind := range []string{"requests", "limits"} {
					for _, res := range []string{"cpu", "memory"} {
						if at(c, "resources", kind, res) == nil {
							bad = append(bad, fmt.Sprintf("container %s has no resources.%s.%s", c["name"], kind, res))
						}
					}
				}
			}
			return bad
		}},
		{"every container is locked down", func(pod, _ map[string]any, _ object) []string {
			var bad []string
			for _, c := range containers(pod) {
				sc := at(c, "securityContext")
				for _, w := range wantSecurityContext {
					if got := at(sc, w.path...); got != w.want {
						bad = append(bad, fmt.Sprintf("container %s: securityContext.%s = %v, want %v", c["name"], strings.Join(w.path, "."), got, w.want))
					}
				}
				if !slices.Contains(strs(at(sc, "capabilities", "drop")), "ALL") {
					bad = append(bad, fmt.Sprintf("container %s: securityContext.capabilities.drop must hold ALL", c["name"]))
				}
				if at(sc, "privileged") == true {
					bad = append(bad, fmt.Sprintf("container %s is privileged", c["name"]))
				}
			}
			if at(pod, "securityContext", "runAsNonRoot") != true {
				bad = append(bad, "the pod securityContext must set runAsNonRoot")
			}
			return bad
		}},
		{"Vigil runs the daemon with the mounted configuration", func(pod, _ map[string]any, _ object) []string {
			c := vigilContainer(pod)
			if c == nil {
				return []string{"no container named vigil"}
			}
			cmd := strings.Join(append(strs(c["command"]), strs(c["args"])...), " ")
			if !strings.HasSuffix(cmd, "run --config /etc/vigil/vigil.yaml") {
				return []string{fmt.Sprintf("vigil runs %q, want ... run --config /etc/vigil/vigil.yaml", cmd)}
			}
			return nil
		}},
		{"Vigil's probes use /healthz and /readyz on the named ops port", func(pod, _ map[string]any, _ object) []string {
			c := vigilContainer(pod)
			if c == nil {
				return []string{"no container named vigil"}
			}
			var bad []string
			var opsPort any
			for _, p := range maps(c["ports"]) {
				if p["name"] == "ops" {
					opsPort = p["containerPort"]
				}
			}
			if opsPort != 9464 {
				bad = append(bad, fmt.Sprintf("container port ops = %v, want 9464", opsPort))
			}
			for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
				get := at(c, probe, "httpGet")
				if str(at(get, "path")) != path || at(get, "port") != "ops" {
					bad = append(bad, fmt.Sprintf("%s.httpGet = %v, want path %s on port ops", probe, get, path))
				}
			}
			return bad
		}},
		{"Prometheus is told where to scrape", func(pod, _ map[string]any, d object) []string {
			ann, _ := at(d.m, "spec", "template", "metadata", "annotations").(map[string]any)
			if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "9464" || ann["prometheus.io/path"] != "/metrics" {
				return []string{fmt.Sprintf("prometheus.io annotations = %v", ann)}
			}
			return nil
		}},
		{"shutdown has time to drain", func(pod, _ map[string]any, _ object) []string {
			if g, _ := pod["terminationGracePeriodSeconds"].(int); g < 40 {
				return []string{fmt.Sprintf("terminationGracePeriodSeconds = %v; Vigil drains for up to 30s, leave more", pod["terminationGracePeriodSeconds"])}
			}
			return nil
		}},
		{"every volume mount names a declared volume", func(pod, _ map[string]any, _ object) []string {
			declared := map[string]bool{}
			for _, v := range maps(pod["volumes"]) {
				declared[str(v["name"])] = true
			}
			var bad []string
			for _, c := range containers(pod) {
				for _, vm := range maps(c["volumeMounts"]) {
					if !declared[str(vm["name"])] {
						bad = append(bad, fmt.Sprintf("container %s mounts undeclared volume %q", c["name"], vm["name"]))
					}
					if vm["subPath"] != nil {
						bad = append(bad, fmt.Sprintf("container %s mounts %q with subPath: ConfigMap and Secret updates would never reach it", c["name"], vm["name"]))
					}
				}
			}
			return bad
		}},
		{"every ConfigMap and Secret referenced is in the manifests", func(pod, _ map[string]any, _ object) []string {
			var bad []string
			for _, ref := range references(pod) {
				if _, ok := find(objs, ref.kind, ref.name); !ok {
					bad = append(bad, fmt.Sprintf("%s %q is referenced but not defined", ref.kind, ref.name))
				}
			}
			return bad
		}},
		{"the Vigil configuration, rules and secrets are mounted where the configuration says", func(pod, _ map[string]any, _ object) []string {
			c := vigilContainer(pod)
			if c == nil {
				return []string{"no container named vigil"}
			}
			want := map[string]string{"/etc/vigil": "vigil-config", "/etc/vigil/rules": "vigil-rules", "/run/secrets/vigil": "vigil-secrets"}
			var bad []string
			for path, source := range want {
				if got := mountedObject(pod, c, path); got != source {
					bad = append(bad, fmt.Sprintf("%s holds %q, want %q", path, got, source))
				}
			}
			return bad
		}},
	}

	for _, d := range deployments {
		pod, _ := at(d.m, "spec", "template", "spec").(map[string]any)
		labels, _ := at(d.m, "spec", "template", "metadata", "labels").(map[string]any)
		for _, c := range checks {
			t.Run(d.name()+"/"+c.name, func(t *testing.T) {
				if pod == nil {
					t.Fatalf("%s has no spec.template.spec", d)
				}
				for _, problem := range c.check(pod, labels, d) {
					t.Errorf("%s: %s", d, problem)
				}
			})
		}
	}
}

func containers(pod map[string]any) []map[string]any {
	return append(maps(pod["initContainers"]), maps(pod["containers"])...)
}

func vigilContainer(pod map[string]any) map[string]any {
	for _, c := range maps(pod["containers"]) {
		if c["name"] == "vigil" {
			return c
		}
	}
	return nil
}

// mountedObject returns the ConfigMap or Secret mounted at path in c.
func mountedObject(pod, c map[string]any, path string) string {
	for _, vm := range maps(c["volumeMounts"]) {
		if vm["mountPath"] != path {
			continue
		}
		for _, v := range maps(pod["volumes"]) {
			if v["name"] == vm["name"] {
				if n := str(at(v, "configMap", "name")); n != "" {
					return n
				}
				return str(at(v, "secret", "secretName"))
			}
		}
	}
	return ""
}

type reference struct{ kind, name string }

// references collects every ConfigMap and Secret a pod spec names: volumes
// (also projected), env valueFrom and envFrom.
func references(v any) []reference {
	var out []reference
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, e := range v {
				switch k {
				case "configMap", "configMapKeyRef", "configMapRef":
					out = append(out, reference{"ConfigMap", str(at(e, "name"))})
				case "secret":
					name := str(at(e, "secretName"))
					if name == "" {
						name = str(at(e, "name")) // projected
					}
					out = append(out, reference{"Secret", name})
				case "secretKeyRef", "secretRef":
					out = append(out, reference{"Secret", str(at(e, "name"))})
				}
				walk(e)
			}
		case []any:
			for _, e := range v {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func TestServicesAndBudgetsSelectPods(t *testing.T) {
	objs := manifests(t)
	podLabels := func(sel map[string]any) (object, bool) {
		for _, d := range byKind(objs, "Deployment") {
			labels, _ := at(d.m, "spec", "template", "metadata", "labels").(map[string]any)
			match := len(sel) > 0
			for k, v := range sel {
				match = match && labels[k] == v
			}
			if match {
				return d, true
			}
		}
		return object{}, false
	}
	tests := []struct {
		kind     string
		selector []string
	}{
		{"Service", []string{"spec", "selector"}},
		{"PodDisruptionBudget", []string{"spec", "selector", "matchLabels"}},
		{"NetworkPolicy", []string{"spec", "podSelector", "matchLabels"}},
	}
	for _, tt := range tests {
		for _, o := range byKind(objs, tt.kind) {
			t.Run(o.String(), func(t *testing.T) {
				sel, _ := at(o.m, tt.selector...).(map[string]any)
				d, ok := podLabels(sel)
				if !ok {
					t.Fatalf("%s %v selects no Deployment's pods", strings.Join(tt.selector, "."), sel)
				}
				if tt.kind != "Service" {
					return
				}
				for _, p := range maps(at(o.m, "spec", "ports")) {
					pod, _ := at(d.m, "spec", "template", "spec").(map[string]any)
					if p["targetPort"] != "ops" || p["port"] != 9464 || p["name"] != "ops" || vigilContainer(pod) == nil {
						t.Errorf("port %v, want ops 9464 → targetPort ops of a vigil container", p)
					}
				}
			})
		}
	}
}

// vigilConfig returns the vigil.yaml of the vigil-config ConfigMap, parsed.
func vigilConfig(t *testing.T, objs []object) map[string]any {
	t.Helper()
	cm, ok := find(objs, "ConfigMap", "vigil-config")
	if !ok {
		t.Fatal("ConfigMap vigil-config is missing")
	}
	text := str(at(cm.m, "data", "vigil.yaml"))
	if text == "" {
		t.Fatal("ConfigMap vigil-config has no vigil.yaml")
	}
	var cfg map[string]any
	if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
		t.Fatalf("vigil-config vigil.yaml is not valid YAML: %v", err)
	}
	return cfg
}

func TestVigilConfiguration(t *testing.T) {
	objs := manifests(t)
	cfg := vigilConfig(t, objs)
	secret, ok := find(objs, "Secret", "vigil-secrets")
	if !ok {
		t.Fatal("Secret vigil-secrets is missing")
	}
	secretKeys, _ := at(secret.m, "stringData").(map[string]any)

	tests := []struct {
		name  string
		check func() []string
	}{
		{"it has the sections the daemon needs", func() []string {
			var bad []string
			for _, s := range []string{"kafka", "clickhouse", "rules", "responders", "ops"} {
				if _, ok := cfg[s].(map[string]any); !ok {
					bad = append(bad, "no "+s+" section")
				}
			}
			return bad
		}},
		{"responders only plan", func() []string {
			if at(cfg, "responders", "dry_run") != true {
				return []string{"responders.dry_run must be true in the example deployment"}
			}
			return nil
		}},
		{"rules are read from the mounted vigil-rules directory", func() []string {
			if got := strs(at(cfg, "rules", "paths")); !slices.Equal(got, []string{"/etc/vigil/rules"}) {
				return []string{fmt.Sprintf("rules.paths = %v, want [/etc/vigil/rules]", got)}
			}
			return nil
		}},
		{"the ops listener is reachable by probes and limited to internal ranges", func() []string {
			var bad []string
			if got := at(cfg, "ops", "addr"); got != "0.0.0.0:9464" {
				bad = append(bad, fmt.Sprintf("ops.addr = %v, want 0.0.0.0:9464", got))
			}
			got := strs(at(cfg, "ops", "allow_cidrs"))
			want := []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8"}
			if !slices.Equal(got, want) {
				bad = append(bad, fmt.Sprintf("ops.allow_cidrs = %v, want %v", got, want))
			}
			for _, c := range got {
				p, err := netip.ParsePrefix(c)
				if err != nil || !(p.Addr().IsPrivate() || p.Addr().IsLoopback()) {
					bad = append(bad, fmt.Sprintf("ops.allow_cidrs entry %q is not an internal range", c))
				}
			}
			return bad
		}},
		{"every secret file is a key of vigil-secrets", func() []string {
			var bad []string
			files := secretFiles(cfg, "")
			if len(files) == 0 {
				bad = append(bad, "no *_file keys: secrets would have to be inline")
			}
			for key, path := range files {
				name, ok := strings.CutPrefix(path, "/run/secrets/vigil/")
				if !ok {
					bad = append(bad, fmt.Sprintf("%s = %s, outside the mounted Secret /run/secrets/vigil", key, path))
					continue
				}
				if _, ok := secretKeys[name]; !ok {
					bad = append(bad, fmt.Sprintf("%s = %s, but vigil-secrets has no key %q", key, path, name))
				}
			}
			for name := range secretKeys {
				if !slices.Contains(mapValues(files), "/run/secrets/vigil/"+name) {
					bad = append(bad, fmt.Sprintf("vigil-secrets key %q is used by no *_file key", name))
				}
			}
			return bad
		}},
		{"every key exists in configs/vigil.example.yaml", func() []string {
			var example map[string]any
			data, err := os.ReadFile(filepath.Join("..", "..", "configs", "vigil.example.yaml"))
			if err != nil {
				return []string{err.Error()}
			}
			if err := yaml.Unmarshal(data, &example); err != nil {
				return []string{"configs/vigil.example.yaml: " + err.Error()}
			}
			return unknownKeys(cfg, example, "")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, problem := range tt.check() {
				t.Error(problem)
			}
		})
	}
}

// secretFiles maps each *_file key (dotted path) of the configuration to its
// value.
func secretFiles(v any, prefix string) map[string]string {
	out := map[string]string{}
	m, _ := v.(map[string]any)
	for k, e := range m {
		key := strings.TrimPrefix(prefix+"."+k, ".")
		// TLS files (ca_file, cert_file, key_file, tls_*_file) are mounted
		// from elsewhere; every other *_file key is a secret.
		tlsFile := strings.HasPrefix(k, "tls_") || k == "ca_file" || k == "cert_file" || k == "key_file"
		if s, ok := e.(string); ok && strings.HasSuffix(k, "_file") && !tlsFile {
			out[key] = s
		}
		for kk, vv := range secretFiles(e, key) {
			out[kk] = vv
		}
	}
	return out
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// opsKeys are the keys of the ops section, which the example configuration
// may not document yet.
var opsKeys = []string{"addr", "allow_cidrs", "basic_auth_user", "basic_auth_password_file", "tls_cert_file", "tls_key_file"}

// unknownKeys lists the keys of cfg that example does not have. A *_file
// key stands for a secret whose plain key the example may show only in a
// comment, so it is accepted where its section exists.
func unknownKeys(cfg, example map[string]any, prefix string) []string {
	var bad []string
	for k, v := range cfg {
		key := strings.TrimPrefix(prefix+"."+k, ".")
		if key == "ops" && example["ops"] == nil {
			ops, _ := v.(map[string]any)
			for ok := range ops {
				if !slices.Contains(opsKeys, ok) {
					bad = append(bad, "ops."+ok+" is not a key of the ops section")
				}
			}
			continue
		}
		ev, known := example[k]
		if !known {
			if strings.HasSuffix(k, "_file") {
				continue
			}
			bad = append(bad, key+" is not in configs/vigil.example.yaml")
			continue
		}
		if sub, ok := v.(map[string]any); ok {
			esub, _ := ev.(map[string]any)
			if esub == nil {
				bad = append(bad, key+" is a section here but not in configs/vigil.example.yaml")
				continue
			}
			bad = append(bad, unknownKeys(sub, esub, key)...)
		}
	}
	sort.Strings(bad)
	return bad
}

func TestRulesConfigMapHoldsRuleFiles(t *testing.T) {
	cm, ok := find(manifests(t), "ConfigMap", "vigil-rules")
	if !ok {
		t.Fatal("ConfigMap vigil-rules is missing")
	}
	data, _ := at(cm.m, "data").(map[string]any)
	if len(data) == 0 {
		t.Fatal("vigil-rules holds no rule file")
	}
	for name, v := range data {
		t.Run(name, func(t *testing.T) {
			if ext := filepath.Ext(name); ext != ".yaml" && ext != ".yml" {
				t.Errorf("%s is not *.yaml: the daemon would not read it as rules", name)
			}
			var file map[string]any
			if err := yaml.Unmarshal([]byte(str(v)), &file); err != nil {
				t.Fatalf("not valid YAML: %v", err)
			}
			rules := maps(file["rules"])
			if len(rules) == 0 {
				t.Fatal("no `rules:` list")
			}
			for i, r := range rules {
				if str(r["id"]) == "" || str(r["source"]) == "" {
					t.Errorf("rule %d lacks id or source", i)
				}
			}
		})
	}
}

func TestKustomizationListsTheStandaloneManifests(t *testing.T) {
	data, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k map[string]any
	if err := yaml.Unmarshal(data, &k); err != nil {
		t.Fatal(err)
	}
	if k["kind"] != "Kustomization" {
		t.Errorf("kind = %v, want Kustomization", k["kind"])
	}
	resources := strs(k["resources"])
	if !slices.Contains(resources, "standalone.yaml") {
		t.Errorf("resources = %v, want standalone.yaml among them", resources)
	}
	for _, r := range resources {
		if _, err := os.Stat(r); err != nil {
			t.Errorf("resource %s: %v", r, err)
		}
	}
}

// unit is a parsed systemd unit file: section → key → values in order
// (keys such as LoadCredential= repeat).
type unit map[string]map[string][]string

func parseUnit(r io.Reader) (unit, error) {
	u := unit{}
	section := ""
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		case section == "":
			return nil, fmt.Errorf("line %d: %q before any [section]", n, line)
		case strings.HasSuffix(line, `\`):
			return nil, fmt.Errorf("line %d: continuation lines are not supported by this parser", n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: %q is not key=value", n, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u, sc.Err()
}

func TestSystemdUnit(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "systemd", "vigil.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, err := parseUnit(f)
	if err != nil {
		t.Fatalf("vigil.service: %v", err)
	}

	const present = "(any value)" // the key must be set, to any value
	tests := []struct {
		section, key, want string // want: one of the key's values
	}{
		{"Unit", "After", "network-online.target"},
		{"Service", "ExecStart", "/usr/local/bin/vigil run --config /etc/vigil/vigil.yaml"},
		{"Service", "ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Service", "Restart", "on-failure"},
		{"Service", "RestartSec", "5s"},
		{"Service", "TimeoutStopSec", "60s"},
		{"Service", "LoadCredential", "clickhouse-password:/etc/vigil/credentials/clickhouse-password"},
		{"Service", "LoadCredential", "cloudflare-token:/etc/vigil/credentials/cloudflare-token"},
		{"Service", "LoadCredential", "admin-api-token:/etc/vigil/credentials/admin-api-token"},
		{"Service", "LoadCredential", "sentry-dsn:/etc/vigil/credentials/sentry-dsn"},
		{"Service", "NoNewPrivileges", "yes"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "ProtectHome", "yes"},
		{"Service", "PrivateTmp", "yes"},
		{"Service", "PrivateDevices", "yes"},
		{"Service", "ProtectKernelTunables", "yes"},
		{"Service", "ProtectKernelModules", "yes"},
		{"Service", "ProtectKernelLogs", "yes"},
		{"Service", "ProtectControlGroups", "yes"},
		{"Service", "RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"Service", "RestrictNamespaces", "yes"},
		{"Service", "LockPersonality", "yes"},
		{"Service", "MemoryDenyWriteExecute", "yes"},
		{"Service", "SystemCallFilter", "@system-service"},
		{"Service", "SystemCallArchitectures", "native"},
		{"Service", "CapabilityBoundingSet", ""},
		{"Service", "AmbientCapabilities", ""},
		{"Service", "UMask", "0077"},
		{"Service", "LimitNOFILE", present},
		{"Install", "WantedBy", "multi-user.target"},
	}
	for _, tt := range tests {
		t.Run(tt.section+"/"+tt.key+"="+tt.want, func(t *testing.T) {
			values, set := u[tt.section][tt.key]
			switch {
			case !set:
				t.Errorf("[%s] %s= is not set", tt.section, tt.key)
			case tt.want != present && !slices.Contains(values, tt.want):
				t.Errorf("[%s] %s= %q, want %q among them", tt.section, tt.key, values, tt.want)
			}
		})
	}
	// An empty CapabilityBoundingSet= must be the last word: a later
	// assignment would add capabilities back.
	for _, key := range []string{"CapabilityBoundingSet", "AmbientCapabilities"} {
		if v := u["Service"][key]; len(v) != 1 {
			t.Errorf("[Service] %s= is set %d times; set it once, empty", key, len(v))
		}
	}
	if !slices.Contains(u["Service"]["DynamicUser"], "yes") && len(u["Service"]["User"]) == 0 {
		t.Error("[Service] sets neither DynamicUser=yes nor User=: Vigil would run as root")
	}
}
