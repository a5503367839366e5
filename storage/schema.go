package storage

// migration is one versioned schema step. Steps are idempotent (IF NOT
// EXISTS) so a crash between a step and its record is harmless; the
// schema_migrations table records which ran.
type migration struct {
	version int
	name    string
	stmts   []string
}

// Tables are ReplacingMergeTree keyed so that a redelivered record (same
// request_id / event_id, same ts) collapses into one row: Kafka delivery is
// at-least-once, and offsets are committed after the insert, so a crash
// between insert and commit inserts a batch twice. Queries that must count
// exactly use FINAL or count(DISTINCT id). Insert deduplication tokens also
// drop an identical retried batch at once (non_replicated_deduplication_window).
//
// {db}, {requests_ttl_days} and {audit_ttl_days} are filled in by Migrate.
var migrations = []migration{
	{1, "events and dead letters", []string{
		`CREATE TABLE IF NOT EXISTS {db}.request_events (
			ts DateTime64(3, 'UTC'),
			request_id String,
			org_id LowCardinality(String),
			api_key_id String,
			key_permission LowCardinality(String),
			ip String,
			country LowCardinality(String),
			method LowCardinality(String),
			route LowCardinality(String),
			path String,
			operation LowCardinality(String),
			namespace String,
			data_classification LowCardinality(String),
			status UInt16,
			bytes_in UInt64,
			bytes_out UInt64,
			latency_ms Float64,
			user_agent String,
			extra String CODEC(ZSTD(1)),
			topic LowCardinality(String),
			partition UInt32,
			offset UInt64,
			ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
		) ENGINE = ReplacingMergeTree(ingested_at)
		PARTITION BY toYYYYMMDD(ts)
		ORDER BY (org_id, api_key_id, ip, ts, request_id)
		TTL toDateTime(ts) + INTERVAL {requests_ttl_days} DAY
		SETTINGS non_replicated_deduplication_window = 1000`,
		`CREATE TABLE IF NOT EXISTS {db}.audit_events (
			ts DateTime64(3, 'UTC'),
			event_id String,
			org_id LowCardinality(String),
			actor_id String,
			actor_type LowCardinality(String),
			api_key_id String,
			key_permission LowCardinality(String),
			ip String,
			action LowCardinality(String),
			resource_type LowCardinality(String),
			resource_id String,
			namespace String,
			data_classification LowCardinality(String),
			status LowCardinality(String),
			changes String CODEC(ZSTD(1)),
			extra String CODEC(ZSTD(1)),
			topic LowCardinality(String),
			partition UInt32,
			offset UInt64,
			ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)
		) ENGINE = ReplacingMergeTree(ingested_at)
		PARTITION BY toYYYYMMDD(ts)
		ORDER BY (org_id, actor_id, ts, event_id)
		TTL toDateTime(ts) + INTERVAL {audit_ttl_days} DAY
		SETTINGS non_replicated_deduplication_window = 1000`,
		`CREATE TABLE IF NOT EXISTS {db}.dead_letters (
			received_at DateTime64(3, 'UTC'),
			source LowCardinality(String),
			topic LowCardinality(String),
			partition UInt32,
			offset UInt64,
			reason String,
			raw String CODEC(ZSTD(1))
		) ENGINE = ReplacingMergeTree(received_at)
		PARTITION BY toYYYYMM(received_at)
		ORDER BY (topic, partition, offset)
		TTL toDateTime(received_at) + INTERVAL {audit_ttl_days} DAY`,
	}},
	{2, "alerts", []string{
		`CREATE TABLE IF NOT EXISTS {db}.alerts (
			alert_key String,
			rule LowCardinality(String),
			severity UInt8,
			source LowCardinality(String),
			group_json String,
			value Float64,
			threshold String,
			window_start DateTime64(3, 'UTC'),
			window_end DateTime64(3, 'UTC'),
			at DateTime64(3, 'UTC'),
			phi Bool,
			labels Map(String, String),
			sample_ids Array(String),
			actions Array(String),
			rule_hash String,
			alert_json String,
			stored_at DateTime64(3, 'UTC') DEFAULT now64(3)
		) ENGINE = ReplacingMergeTree(stored_at)
		PARTITION BY toYYYYMM(at)
		ORDER BY (rule, alert_key)`,
	}},
	{3, "incidents, actions, block ledger, control", []string{
		`CREATE TABLE IF NOT EXISTS {db}.incidents (
			id String,
			rule LowCardinality(String),
			rule_hash String,
			rule_file_hash String,
			rule_file String,
			severity UInt8,
			severity_name LowCardinality(String),
			phi Bool,
			status LowCardinality(String),
			source LowCardinality(String),
			group_pairs Array(String),
			group_json String,
			orgs Array(String),
			namespaces Array(String),
			keys Array(String),
			admin_keys Array(String),
			addresses Array(String),
			first_event DateTime64(3, 'UTC'),
			last_event DateTime64(3, 'UTC'),
			sample_ids Array(String),
			query String,
			query_params Map(String, String),
			threshold String,
			value Float64,
			alerts UInt32,
			alert_keys Array(String),
			labels Map(String, String),
			actions Array(String),
			notes Array(String),
			opened_at DateTime64(3, 'UTC'),
			updated_at DateTime64(3, 'UTC'),
			resolved_at DateTime64(3, 'UTC'),
			notification_due DateTime64(3, 'UTC'),
			review_due DateTime64(3, 'UTC')
		) ENGINE = ReplacingMergeTree(updated_at)
		PARTITION BY toYYYYMM(opened_at)
		ORDER BY id`,
		`CREATE TABLE IF NOT EXISTS {db}.actions (
			at DateTime64(6, 'UTC'),
			incident_id String,
			kind LowCardinality(String),
			target String,
			outcome LowCardinality(String),
			guard LowCardinality(String),
			attempt UInt16,
			error String,
			detail String,
			expires_at DateTime64(3, 'UTC')
		) ENGINE = MergeTree
		PARTITION BY toYYYYMM(at)
		ORDER BY (kind, target, at)`,
		`CREATE TABLE IF NOT EXISTS {db}.blocks (
			prefix String,
			incident_id String,
			blocked_at DateTime64(3, 'UTC'),
			expires_at DateTime64(3, 'UTC'),
			offense UInt32,
			status LowCardinality(String),
			updated_at DateTime64(6, 'UTC') DEFAULT now64(6)
		) ENGINE = ReplacingMergeTree(updated_at)
		ORDER BY (prefix, blocked_at)`,
		`CREATE TABLE IF NOT EXISTS {db}.control (
			name String,
			value String,
			at DateTime64(6, 'UTC') DEFAULT now64(6)
		) ENGINE = ReplacingMergeTree(at)
		ORDER BY name`,
	}},
	{4, "alerts: shadow mode and the rule's provenance", []string{
		`ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS shadow Bool DEFAULT false`,
		`ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS rule_file_hash String DEFAULT ''`,
		`ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS rule_git_revision String DEFAULT ''`,
	}},
}
