package cloudflare

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/cloudflare/cloudflare-go/v6/firewall"
	"github.com/cloudflare/cloudflare-go/v6/option"
	"github.com/cloudflare/cloudflare-go/v6/rules"
	"github.com/cloudflare/cloudflare-go/v6/rulesets"
	"github.com/cloudflare/cloudflare-go/v6/shared"
	"golang.org/x/time/rate"

	"github.com/vigil-sec/vigil/responders"
)

const system = "cloudflare"

// api holds the SDK services this package uses. They are built one by one
// rather than through cloudflare.NewClient, which reads CLOUDFLARE_*
// environment variables and links every Cloudflare product in.
type api struct {
	lists    *rules.ListService
	rulesets *rulesets.RulesetService
	access   *firewall.AccessRuleService
	token    string // kept only to scrub it from error text
}

func newAPI(cfg Config) *api {
	// A full 5-minute window may hold the burst plus the steady rate's
	// share, and never more than RequestsPer5Min.
	steady := max(cfg.RequestsPer5Min-cfg.RequestBurst, 1)
	limiter := rate.NewLimiter(rate.Limit(float64(steady)/(5*60)), cfg.RequestBurst)
	opts := []option.RequestOption{
		option.WithEnvironmentProduction(),
		option.WithAPIToken(cfg.APIToken),
		option.WithHTTPClient(cfg.HTTPClient),
		// Set explicitly: the SDK's own default is 10 retries with waits
		// of up to 30 s, far too long for a responder with its own queue.
		option.WithMaxRetries(cfg.MaxRetries),
		option.WithRequestTimeout(cfg.RequestTimeout),
		option.WithMiddleware(limit(limiter)),
	}
	if cfg.BaseURL != "" {
		opts = append(opts, option.WithBaseURL(cfg.BaseURL))
	}
	return &api{
		lists:    rules.NewListService(opts...),
		rulesets: rulesets.NewRulesetService(opts...),
		access:   firewall.NewAccessRuleService(opts...),
		token:    cfg.APIToken,
	}
}

// limit makes every HTTP attempt, the SDK's retries included, wait for
// the limiter.
func limit(l *rate.Limiter) option.Middleware {
	return func(req *http.Request, next option.MiddlewareNext) (*http.Response, error) {
		if err := l.Wait(req.Context()); err != nil {
			if ctxErr := req.Context().Err(); ctxErr != nil {
				return nil, ctxErr
			}
			// The wait would outlast the deadline. Say so as a deadline
			// error, which the SDK does not retry.
			return nil, fmt.Errorf("client-side rate limit (responders.cloudflare.requests_per_5m): %w", context.DeadlineExceeded)
		}
		return next(req)
	}
}

// call runs one SDK request and turns its failure into a CallError for
// op, the endpoint template. do must pass the options on to the SDK.
func (a *api) call(op string, do func(opts ...option.RequestOption) error) error {
	var raw *http.Response
	err := do(option.WithResponseInto(&raw))
	if err == nil {
		return nil
	}
	return a.fail(op, raw, err)
}

// fail builds the CallError for err. raw is the last HTTP response, if
// any; the SDK keeps it even when the request failed.
func (a *api) fail(op string, raw *http.Response, err error) *responders.CallError {
	now := time.Now()
	var apiErr *rules.Error // the SDK's one error type, aliased in each package
	var ce *responders.CallError
	switch {
	case errors.As(err, &apiErr):
		retryAfter := ""
		if apiErr.Response != nil {
			retryAfter = apiErr.Response.Header.Get("Retry-After")
		}
		ce = responders.HTTPError(system, op, apiErr.StatusCode, retryAfter, now, describe(apiErr.Errors, apiErr.StatusCode))
		if ce.RetryAfter == 0 && bulkInProgress(apiErr.Errors) {
			// An operation another process started (a daemon killed
			// mid-write) must finish first; Cloudflare takes seconds.
			ce.RetryAfter = bulkWait
		}
	case raw != nil && raw.StatusCode >= 400:
		ce = responders.HTTPError(system, op, raw.StatusCode, raw.Header.Get("Retry-After"), now,
			"unreadable error body: "+err.Error())
	case raw != nil:
		// Cloudflare understood the request but its answer cannot be read.
		ce = &responders.CallError{System: system, Op: op, Status: raw.StatusCode, Final: true,
			Msg: "malformed answer: " + err.Error()}
	default:
		msg := err.Error()
		var ue *url.Error
		if errors.As(err, &ue) {
			msg = ue.Err.Error() // the URL adds nothing but length
		}
		if errors.Is(err, context.DeadlineExceeded) {
			msg = "no answer in time (responders.cloudflare.request_timeout or the caller's deadline): " + msg
		}
		ce = &responders.CallError{System: system, Op: op, Msg: msg}
	}
	if a.token != "" {
		ce.Msg = strings.ReplaceAll(ce.Msg, a.token, "[redacted]")
	}
	return ce
}

// bulkWait is how long to wait before writing again when the account has a
// bulk list operation in progress that this client did not start.
const bulkWait = 2 * time.Second

// codeBulkInProgress is Cloudflare's error code for a list write refused
// because a bulk operation of the account is still running.
const codeBulkInProgress = 10046

func bulkInProgress(errs []shared.ErrorData) bool {
	for _, e := range errs {
		if e.Code == codeBulkInProgress {
			return true
		}
	}
	return false
}

// describe joins Cloudflare's error messages with their codes.
func describe(errs []shared.ErrorData, status int) string {
	if len(errs) == 0 {
		return http.StatusText(status)
	}
	parts := make([]string, len(errs))
	for i, e := range errs {
		parts[i] = fmt.Sprintf("%s (code %d)", e.Message, e.Code)
	}
	return strings.Join(parts, "; ")
}
