// Package responders acts on alerts in the order of the incident response
// plan: an alert first joins or opens an incident, which is written to
// ClickHouse; only after that write succeeds do the actions of the response
// contract run — open_incident (Sentry, webhook), revoke_key and
// isolate_namespace (the platform's admin API), block_ip (Cloudflare) and
// watch — each behind the guards (dry run, allowlists, rate caps, circuit
// breaker, idempotency, block TTLs) and each attempt recorded.
//
// A bounded queue sits between the data path and the network calls, so the
// hot path never waits on HTTP. This package holds the shared types and the
// orchestration; every external system has its own subpackage, and SDK
// types never leave it.
package responders
