package cloudflare

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// The two ways of blocking; see the package documentation.
const (
	ModeList        = "list"
	ModeAccessRules = "access_rules"
)

// Defaults for the zero values of Config.
const (
	DefaultListName         = "vigil_blocked"
	DefaultMaxRetries       = 2
	DefaultRequestsPer5Min  = 1200 // Cloudflare's global limit per token
	DefaultRequestTimeout   = 30 * time.Second
	DefaultBulkPollInterval = time.Second
	DefaultBulkTimeout      = 2 * time.Minute
)

// keyPrefix is where these settings live in the daemon's configuration;
// validation errors name the full key so the operator knows what to fix.
const keyPrefix = "responders.cloudflare."

// Config configures a Client. Zero values take the defaults above.
type Config struct {
	// APIToken is the revealed secret. It is sent as a bearer token and
	// never appears in errors or logs.
	APIToken string
	// BaseURL of the v4 API; empty means Cloudflare's
	// (https://api.cloudflare.com/client/v4/). Tests point it at cftest.
	BaseURL   string
	AccountID string // required in list mode
	// ZoneID is the zone whose WAF custom rule references the list (list
	// mode; optional) or whose IP Access Rules are written (access_rules
	// mode; required).
	ZoneID string
	Mode   string // ModeList (default) or ModeAccessRules
	// ListName names the account's IP list; the WAF rule references it as
	// $ListName. Lowercase letters, digits and underscores, at most 50.
	ListName string
	// RuleDescription is the description of the WAF custom rule.
	RuleDescription string
	// MaxRetries is how often the SDK itself retries a failed request
	// (408, 409, 429, 5xx, connection errors) before the error reaches the
	// caller. 0 means DefaultMaxRetries; a negative value disables the
	// SDK's retries, leaving retries to the responder's queue.
	MaxRetries int
	// RequestsPer5Min caps this client's requests (reads and writes, SDK
	// retries included). Cloudflare allows 1200 per 5 minutes per token;
	// lower it when other tools share the token.
	RequestsPer5Min int
	// RequestBurst is how many requests may go out back to back; 0 means
	// RequestsPer5Min/60. The steady rate is lowered by the burst so that
	// no 5-minute window ever holds more than RequestsPer5Min requests.
	RequestBurst int
	// RequestTimeout bounds one attempt of one request.
	RequestTimeout time.Duration
	// BulkPollInterval and BulkTimeout govern waiting for a list bulk
	// operation to finish.
	BulkPollInterval time.Duration
	BulkTimeout      time.Duration
	HTTPClient       *http.Client // optional
	Logger           *slog.Logger // optional
}

// withDefaults returns cfg with its zero values replaced.
func (cfg Config) withDefaults() Config {
	if cfg.Mode == "" {
		cfg.Mode = ModeList
	}
	if cfg.ListName == "" {
		cfg.ListName = DefaultListName
	}
	if cfg.RuleDescription == "" {
		cfg.RuleDescription = "Vigil: block the addresses in $" + cfg.ListName + " (managed by Vigil)"
	}
	switch {
	case cfg.MaxRetries == 0:
		cfg.MaxRetries = DefaultMaxRetries
	case cfg.MaxRetries < 0:
		cfg.MaxRetries = 0
	}
	if cfg.RequestsPer5Min == 0 {
		cfg.RequestsPer5Min = DefaultRequestsPer5Min
	}
	if cfg.RequestBurst == 0 {
		cfg.RequestBurst = max(1, cfg.RequestsPer5Min/60)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.BulkPollInterval == 0 {
		cfg.BulkPollInterval = DefaultBulkPollInterval
	}
	if cfg.BulkTimeout == 0 {
		cfg.BulkTimeout = DefaultBulkTimeout
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// Validate reports every problem of cfg (after defaults), each naming its
// configuration key. New runs it; config loading can run it too.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf(keyPrefix+key+": "+format, args...))
	}
	switch {
	case cfg.APIToken == "":
		bad("api_token", "is empty; set it to an API token with %s", scopes(cfg.Mode, cfg.ZoneID != ""))
	case strings.ContainsAny(cfg.APIToken, " \t\r\n"):
		// The token is not printed: only the fact that it is malformed.
		bad("api_token", "contains whitespace (a trailing newline from a token file?); trim it")
	}
	switch cfg.Mode {
	case ModeList:
		if cfg.AccountID == "" {
			bad("account_id", "is required in list mode; copy the 32-character Account ID from the Cloudflare dashboard")
		}
	case ModeAccessRules:
		if cfg.ZoneID == "" {
			bad("zone_id", "is required in access_rules mode; copy the 32-character Zone ID from the zone's overview page")
		}
	default:
		bad("mode", "is %q; use %q or %q", cfg.Mode, ModeList, ModeAccessRules)
	}
	if cfg.AccountID != "" && !isCloudflareID(cfg.AccountID) {
		bad("account_id", "is %q, not a Cloudflare ID (32 hexadecimal characters); use the Account ID, not the account name", cfg.AccountID)
	}
	if cfg.ZoneID != "" && !isCloudflareID(cfg.ZoneID) {
		bad("zone_id", "is %q, not a Cloudflare ID (32 hexadecimal characters); use the Zone ID, not the domain name", cfg.ZoneID)
	}
	if !isListName(cfg.ListName) {
		bad("list_name", "is %q; Cloudflare list names have 1 to 50 lowercase letters, digits or underscores", cfg.ListName)
	}
	if cfg.BaseURL != "" {
		if u, err := url.Parse(cfg.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("base_url", "is %q; use an absolute http(s) URL such as https://api.cloudflare.com/client/v4/", cfg.BaseURL)
		}
	}
	if cfg.RequestsPer5Min < 0 {
		bad("requests_per_5m", "is %d; use a positive number (Cloudflare allows %d per token)", cfg.RequestsPer5Min, DefaultRequestsPer5Min)
	}
	if cfg.RequestBurst < 0 || cfg.RequestBurst > max(cfg.RequestsPer5Min, 1) {
		bad("request_burst", "is %d; use a number between 1 and requests_per_5m (%d)", cfg.RequestBurst, cfg.RequestsPer5Min)
	}
	for _, d := range []struct {
		key string
		d   time.Duration
	}{
		{"request_timeout", cfg.RequestTimeout},
		{"bulk_poll_interval", cfg.BulkPollInterval},
		{"bulk_timeout", cfg.BulkTimeout},
	} {
		if d.d < 0 {
			bad(d.key, "is %s; use a positive duration", d.d)
		}
	}
	return errors.Join(errs...)
}

// scopes names the token permissions a configuration needs.
func scopes(mode string, zone bool) string {
	if mode == ModeAccessRules {
		return "Zone → Firewall Services → Edit"
	}
	if zone {
		return "Account → Account Filter Lists → Edit and Zone → Zone WAF → Edit"
	}
	return "Account → Account Filter Lists → Edit"
}

func isCloudflareID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}

func isListName(s string) bool {
	if s == "" || len(s) > 50 {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}
