package adminapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/vigil-sec/vigil/responders"
)

const (
	phNamespace = "namespace_id"
	phOrg       = "org_id"
)

// request is one configured namespace request.
type request struct {
	method   string
	path     string // template
	body     string // template; "" sends no body
	op       string // method and path template, for errors
	needsOrg bool
}

// expand substitutes the namespace into the path and body templates.
func (r *request) expand(ns responders.Namespace) (path, body string) {
	vals := map[string]string{phNamespace: ns.ID, phOrg: ns.Org}
	path = substitute(r.path, func(name string) (string, bool) {
		v, ok := vals[name]
		return url.PathEscape(v), ok
	})
	body = substitute(r.body, func(name string) (string, bool) {
		v, ok := vals[name]
		return jsonEscape(v), ok
	})
	return path, body
}

// parseIsolate checks the isolation templates and fills in defaults. Each
// problem names the configuration key to fix.
func parseIsolate(cfg IsolateConfig) (isolate, lift *request, err error) {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("admin API: responders.admin_api.isolate.%s: "+format, append([]any{key}, args...)...))
	}
	method := func(key, m, def string) string {
		m = strings.ToUpper(strings.TrimSpace(m))
		if m == "" {
			return def
		}
		switch m {
		case http.MethodPatch, http.MethodPost, http.MethodPut, http.MethodDelete:
		default:
			bad(key, "method %q is not one of PATCH, POST, PUT, DELETE", m)
		}
		return m
	}
	// check validates one request; ownPath is false when the lift reuses
	// the isolate path, whose problems are then reported once, under path.
	check := func(r *request, pathKey, bodyKey string, ownPath bool) {
		if ownPath {
			if r.path == "" {
				bad(pathKey, "is empty; set the path of the admin API endpoint, e.g. /v1/namespaces/{namespace_id}")
			} else if !strings.HasPrefix(r.path, "/") {
				bad(pathKey, "%q must start with /", r.path)
			}
			for _, name := range placeholders(r.path) {
				if name != phNamespace && name != phOrg {
					bad(pathKey, "unknown placeholder {%s}; use {namespace_id} or {org_id}", name)
				}
			}
		}
		for _, name := range placeholders(r.body) {
			if name != phNamespace && name != phOrg {
				bad(bodyKey, "unknown placeholder {%s}; use {namespace_id} or {org_id}", name)
			}
		}
		names := append(placeholders(r.path), placeholders(r.body)...)
		if r.path != "" && !slices.Contains(names, phNamespace) {
			key := pathKey
			if !ownPath {
				key = bodyKey
			}
			bad(key, "neither the path nor the body names {namespace_id}, so every call would address the same namespace")
		}
		r.needsOrg = slices.Contains(names, phOrg)
		r.op = r.method + " " + r.path

		// Sample values that need escaping in both places, so a template
		// that puts a placeholder outside a JSON string fails here rather
		// than on the first incident.
		path, body := r.expand(responders.Namespace{Org: `org "x"/1`, ID: `ns "y"/2`})
		if _, err := url.ParseRequestURI(path); ownPath && r.path != "" && err != nil {
			bad(pathKey, "%q is not a valid URL path once filled in", r.path)
		}
		if body != "" && !json.Valid([]byte(body)) {
			bad(bodyKey, "is not valid JSON once placeholders are filled in; placeholders belong inside JSON strings, e.g. {\"namespace\":\"{namespace_id}\"}")
		}
	}

	isolate = &request{
		method: method("method", cfg.Method, http.MethodPatch),
		path:   strings.TrimSpace(cfg.Path),
		body:   strings.TrimSpace(cfg.Body),
	}
	check(isolate, "path", "body", true)

	lift = &request{
		method: method("lift_method", cfg.LiftMethod, isolate.method),
		path:   strings.TrimSpace(cfg.LiftPath),
		body:   strings.TrimSpace(cfg.LiftBody),
	}
	ownLiftPath := lift.path != ""
	if !ownLiftPath {
		lift.path = isolate.path
	}
	if lift.body == "" && isolate.body != "" && lift.method != http.MethodDelete {
		bad("lift_body", "is empty while body is set; set the body that restores access, e.g. {\"status\":\"active\"}")
	}
	check(lift, "lift_path", "lift_body", ownLiftPath)
	if lift.method == isolate.method && lift.path == isolate.path && lift.body == isolate.body && isolate.path != "" {
		bad("lift_body", "the lift request equals the isolate request; it would isolate again instead of restoring access")
	}

	if len(errs) > 0 {
		return nil, nil, errors.Join(errs...)
	}
	return isolate, lift, nil
}

// placeholders lists the {name} placeholders of s. Only braces around an
// identifier count, so the braces of a JSON body are not placeholders.
func placeholders(s string) []string {
	var names []string
	substitute(s, func(name string) (string, bool) {
		names = append(names, name)
		return "", false
	})
	return names
}

// substitute replaces each {name} of s, name an identifier, by value(name)
// when ok; other text is copied unchanged.
func substitute(s string, value func(name string) (v string, ok bool)) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.IndexByte(s[i+1:], '}')
		if j < 0 {
			b.WriteString(s)
			return b.String()
		}
		name := s[i+1 : i+1+j]
		if !isIdent(name) {
			b.WriteString(s[:i+1])
			s = s[i+1:]
			continue
		}
		b.WriteString(s[:i])
		if v, ok := value(name); ok {
			b.WriteString(v)
		} else {
			b.WriteString(s[i : i+j+2])
		}
		s = s[i+j+2:]
	}
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// jsonEscape returns v escaped for use inside a JSON string.
func jsonEscape(v string) string {
	b, _ := json.Marshal(v)
	return string(b[1 : len(b)-1])
}
