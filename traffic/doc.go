// Package traffic generates realistic request and audit logs of the API
// platform Vigil watches (docs/events.md), with attacks mixed in, for
// demos, tests, benchmarks and tuning rules.
//
// A seed fixes a platform — about thirty organizations of very different
// sizes in several time zones, their namespaces of every classification
// (PUBLIC to PHI), members with roles and API keys with permissions and
// habits — and the traffic: a daily volume curve, every operation category,
// the usual share of 4xx and 5xx answers spread over many keys, stable
// addresses per key, ADMIN automation from a small fixed set of addresses,
// and the audit trail of logins, document reads and changes, key and role
// management. Attacks (AttackNames) are injected at planned times and
// described in a Manifest with the rules of configs/rules each should
// trigger, so that tests can hold the rule pack to them.
//
// Output is deterministic for a Config. The package only writes bytes; it
// knows nothing of the detector, Kafka or storage, and must not import
// them (its tests do, to replay what it writes).
package traffic
