// Package responders acts on incidents: after an incident is written to
// ClickHouse it runs the actions of the response contract — open_incident
// (Sentry, webhook), revoke_key and isolate_namespace (the platform's
// admin API), block_ip (Cloudflare) and watch — behind the guards (dry
// run, allowlists, rate caps, circuit breaker, idempotency, TTLs). It sits
// behind a bounded queue so the hot path never waits on HTTP, and SDK types
// stay inside each responder. The response pipeline is being built (see
// the open work); today the detector's alerts carry the planned actions and
// the daemon stores them.
package responders
