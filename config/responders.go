package config

import (
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/responders"
)

// Responders configures incidents and automatic response
// (docs/responders.md). Every guard is on by default, and so is dry run:
// a new deployment records what it would do until an operator sets
// dry_run: false.
type Responders struct {
	Enabled    bool                `yaml:"enabled" doc:"triage alerts into incidents and run their actions; false stores alerts only"`
	DryRun     bool                `yaml:"dry_run" doc:"record planned actions without calling any system (rules may also set dry_run)"`
	Paused     bool                `yaml:"paused" doc:"kill switch: skip every action (also vigil respond pause)"`
	QueueSize  int                 `yaml:"queue_size" doc:"alerts waiting for triage; past it alerts wait in ClickHouse for the catch-up pass"`
	Workers    int                 `yaml:"workers" doc:"actions sent concurrently"`
	Policy     map[string][]string `yaml:"policy" doc:"severity → actions for rules that list none; a severity left out keeps its default"`
	Allowlist  Allowlist           `yaml:"allowlist"`
	Caps       Caps                `yaml:"caps"`
	Breaker    Breaker             `yaml:"breaker"`
	Blocks     Blocks              `yaml:"blocks"`
	WatchTTL   Duration            `yaml:"watch_ttl" doc:"how long enhanced logging of a key or namespace lasts"`
	Retries    Retries             `yaml:"retries"`
	Sentry     Sentry              `yaml:"sentry"`
	Webhook    Webhook             `yaml:"webhook"`
	AdminAPI   AdminAPI            `yaml:"admin_api"`
	Cloudflare Cloudflare          `yaml:"cloudflare"`
}

// Allowlist names what is never actioned, on top of the built-in ranges.
type Allowlist struct {
	CIDRs []string `yaml:"cidrs" doc:"never blocked; private, loopback, link-local and metadata ranges are always included"`
	Keys  []string `yaml:"keys" doc:"API key ids never revoked"`
}

// Caps bound actions per kind.
type Caps struct {
	PerMinute   map[string]int `yaml:"per_minute"`
	PerIncident map[string]int `yaml:"per_incident"`
}

// Breaker trips on a burst of actions or errors.
type Breaker struct {
	MaxActions int      `yaml:"max_actions_per_minute"`
	MaxErrors  int      `yaml:"max_errors_per_minute"`
	Cooldown   Duration `yaml:"cooldown"`
}

// Blocks tunes block_ip's TTLs and upkeep.
type Blocks struct {
	TTL               Duration `yaml:"ttl" doc:"first block of an address; doubles for each earlier block within offender_memory"`
	MaxTTL            Duration `yaml:"max_ttl"`
	OffenderMemory    Duration `yaml:"offender_memory"`
	ExpiryInterval    Duration `yaml:"expiry_interval" doc:"how often due unblocks run"`
	ReconcileInterval Duration `yaml:"reconcile_interval" doc:"how often the edge is read back and drift repaired"`
}

// Retries bound the tries of one action.
type Retries struct {
	MaxAttempts int      `yaml:"max_attempts"`
	Min         Duration `yaml:"min_backoff"`
	Max         Duration `yaml:"max_backoff"`
}

// Sentry opens incidents in Sentry; empty dsn disables it.
type Sentry struct {
	DSN         Secret `yaml:"dsn" doc:"or dsn_file"`
	Environment string `yaml:"environment"`
}

// Webhook posts incidents as signed JSON; empty url disables it.
type Webhook struct {
	URL    string `yaml:"url"`
	Secret Secret `yaml:"secret" doc:"HMAC-SHA256 key for X-Vigil-Signature (or secret_file)"`
}

// AdminAPI is the platform's admin API (revoke_key, isolate_namespace).
type AdminAPI struct {
	URL     string  `yaml:"url" doc:"base URL; empty disables revoke_key and isolate_namespace"`
	Token   Secret  `yaml:"token" doc:"bearer token (or token_file)"`
	Isolate Isolate `yaml:"isolate"`
}

// Isolate is the admin API call that isolates a namespace; the plan names
// no endpoint, so it is configuration. Empty path: isolation is recorded
// as skipped and the incident says a human must isolate.
type Isolate struct {
	Method     string `yaml:"method"`
	Path       string `yaml:"path" doc:"e.g. /v1/namespaces/{namespace_id}; {org_id} is also known"`
	Body       string `yaml:"body" doc:"JSON, e.g. {\"status\":\"isolated\"}"`
	LiftMethod string `yaml:"lift_method"`
	LiftPath   string `yaml:"lift_path" doc:"default: path"`
	LiftBody   string `yaml:"lift_body"`
}

// Cloudflare blocks addresses at the edge; empty api_token disables block_ip.
type Cloudflare struct {
	APIToken        Secret `yaml:"api_token" doc:"or api_token_file"`
	BaseURL         string `yaml:"base_url" doc:"empty: Cloudflare's API"`
	AccountID       string `yaml:"account_id"`
	ZoneID          string `yaml:"zone_id" doc:"zone whose WAF custom rule references the list (list mode), or whose IP Access Rules are used"`
	Mode            string `yaml:"mode" doc:"list (account IP List + WAF custom rule) or access_rules"`
	ListName        string `yaml:"list_name"`
	MaxRetries      int    `yaml:"max_retries" doc:"the SDK's own retries per request"`
	RequestsPer5Min int    `yaml:"requests_per_5m" doc:"client-side rate limit (Cloudflare allows 1200 per 5 minutes per token)"`
}

func defaultResponders() Responders {
	return Responders{
		Enabled: true, DryRun: true, QueueSize: 10000, Workers: 4,
		Policy:  defaultPolicy(),
		Caps:    Caps{PerMinute: responders.DefaultPerMinute(), PerIncident: responders.DefaultPerIncident()},
		Breaker: Breaker{MaxActions: 100, MaxErrors: 20, Cooldown: Duration(5 * time.Minute)},
		Blocks: Blocks{TTL: Duration(24 * time.Hour), MaxTTL: Duration(30 * 24 * time.Hour), OffenderMemory: Duration(90 * 24 * time.Hour),
			ExpiryInterval: Duration(30 * time.Second), ReconcileInterval: Duration(5 * time.Minute)},
		WatchTTL:   Duration(30 * 24 * time.Hour),
		Retries:    Retries{MaxAttempts: 5, Min: Duration(time.Second), Max: Duration(time.Minute)},
		Cloudflare: Cloudflare{Mode: "list", ListName: "vigil_blocked", MaxRetries: 2, RequestsPer5Min: 1200},
	}
}

// defaultPolicy is the detector's severity table, keyed by severity name.
func defaultPolicy() map[string][]string {
	p := map[string][]string{}
	for sev, actions := range detector.DefaultPolicy() {
		p[sev.Name()] = actions
	}
	return p
}

var actionNames = map[string]bool{"open_incident": true, "revoke_key": true, "block_ip": true, "watch": true, "isolate_namespace": true}

func (r *Responders) validate(bad func(key, format string, args ...any)) {
	for sev, acts := range r.Policy {
		switch sev {
		case "critical", "high", "medium", "low":
		default:
			bad("responders.policy."+sev, "unknown severity; use critical, high, medium or low")
		}
		for _, a := range acts {
			if !actionNames[a] {
				bad("responders.policy."+sev, "unknown action %q; use open_incident, revoke_key, block_ip, watch or isolate_namespace", a)
			}
		}
	}
	for _, m := range []struct {
		key  string
		caps map[string]int
	}{{"responders.caps.per_minute", r.Caps.PerMinute}, {"responders.caps.per_incident", r.Caps.PerIncident}} {
		for a, n := range m.caps {
			if !actionNames[a] {
				bad(m.key+"."+a, "unknown action; use open_incident, revoke_key, block_ip, watch or isolate_namespace")
			}
			if n < 0 {
				bad(m.key+"."+a, "must not be negative (0 stops the action)")
			}
		}
	}
	for _, c := range r.Allowlist.CIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			if _, err := netip.ParseAddr(c); err != nil {
				bad("responders.allowlist.cidrs", "%q is not an address or CIDR range, e.g. 203.0.113.0/24", c)
			}
		}
	}
	if r.QueueSize < 1 || r.Workers < 1 || r.Retries.MaxAttempts < 1 || r.Breaker.MaxActions < 1 || r.Breaker.MaxErrors < 1 {
		bad("responders", "queue_size, workers, retries.max_attempts and breaker limits must be at least 1")
	}
	if r.Blocks.TTL <= 0 || r.Blocks.MaxTTL < r.Blocks.TTL {
		bad("responders.blocks.ttl", "ttl must be positive and max_ttl at least ttl (defaults 24h and 30d)")
	}
	checkURL := func(key, u string) {
		if u == "" {
			return
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad(key, "%q is not an http(s) URL", u)
		}
	}
	checkURL("responders.webhook.url", r.Webhook.URL)
	checkURL("responders.admin_api.url", r.AdminAPI.URL)
	checkURL("responders.cloudflare.base_url", r.Cloudflare.BaseURL)
	if r.Webhook.URL != "" && r.Webhook.Secret == "" {
		bad("responders.webhook.secret", "required with webhook.url: receivers verify X-Vigil-Signature with it (or set secret_file)")
	}
	if r.AdminAPI.URL != "" && r.AdminAPI.Token == "" {
		bad("responders.admin_api.token", "required with admin_api.url (or set token_file)")
	}
	if r.AdminAPI.Isolate.Path != "" && r.AdminAPI.URL == "" {
		bad("responders.admin_api.isolate", "needs responders.admin_api.url")
	}
	if r.Cloudflare.APIToken != "" {
		switch r.Cloudflare.Mode {
		case "list":
			if r.Cloudflare.AccountID == "" {
				bad("responders.cloudflare.account_id", "required in list mode (the IP List is an account resource)")
			}
		case "access_rules":
			if r.Cloudflare.ZoneID == "" {
				bad("responders.cloudflare.zone_id", "required in access_rules mode")
			}
		default:
			bad("responders.cloudflare.mode", "unknown mode %q; use list or access_rules", r.Cloudflare.Mode)
		}
		if strings.TrimSpace(r.Cloudflare.ListName) == "" {
			bad("responders.cloudflare.list_name", "must not be empty")
		}
	}
	if r.Cloudflare.RequestsPer5Min < 1 || r.Cloudflare.MaxRetries < 0 {
		bad("responders.cloudflare", "requests_per_5m must be at least 1 and max_retries not negative")
	}
}

// Prefixes parses the allowlist; validate has checked it.
func (a Allowlist) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, c := range a.CIDRs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
		} else if ip, err := netip.ParseAddr(c); err == nil {
			out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
		}
	}
	return out
}

// Ops is the operations listener: /metrics, /healthz, /readyz and
// POST /-/reload, refused to clients outside allow_cidrs.
type Ops struct {
	Addr              string   `yaml:"addr" doc:"host:port of the operations listener; empty disables it"`
	AllowCIDRs        []string `yaml:"allow_cidrs" doc:"clients allowed; the information security policy's internal ranges by default"`
	BasicAuthUser     string   `yaml:"basic_auth_user" doc:"optional basic auth; with basic_auth_password"`
	BasicAuthPassword Secret   `yaml:"basic_auth_password" doc:"or basic_auth_password_file"`
	TLSCertFile       string   `yaml:"tls_cert_file" doc:"optional TLS; with tls_key_file"`
	TLSKeyFile        string   `yaml:"tls_key_file"`
	WatchInterval     Duration `yaml:"watch_interval" doc:"how often rule files are checked for changes (hot reload); 0 disables watching"`
}

func defaultOps() Ops {
	return Ops{Addr: "127.0.0.1:9464", AllowCIDRs: []string{"127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128"},
		WatchInterval: Duration(5 * time.Second)}
}

func (o *Ops) validate(bad func(key, format string, args ...any)) {
	if o.Addr != "" {
		if _, _, err := net.SplitHostPort(o.Addr); err != nil {
			bad("ops.addr", "%q is not host:port, e.g. 0.0.0.0:9464", o.Addr)
		}
	}
	for _, c := range o.AllowCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			bad("ops.allow_cidrs", "%q is not a CIDR range, e.g. 10.0.0.0/8", c)
		}
	}
	if (o.BasicAuthUser == "") != (o.BasicAuthPassword == "") {
		bad("ops.basic_auth_user", "set basic_auth_user and basic_auth_password (or _file) together")
	}
	if (o.TLSCertFile == "") != (o.TLSKeyFile == "") {
		bad("ops.tls_cert_file", "set tls_cert_file and tls_key_file together")
	}
	if o.WatchInterval < 0 {
		bad("ops.watch_interval", "must not be negative (0 disables watching)")
	}
}

// Prefixes parses allow_cidrs; validate has checked them.
func (o Ops) Prefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, c := range o.AllowCIDRs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}
