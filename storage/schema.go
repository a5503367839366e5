package storage

import (
	"fmt"
	"strings"
)

// migration is one versioned schema step. Steps are idempotent (IF NOT
// EXISTS) so a crash between a step and its record is harmless; the
// schema_migrations table records which ran.
type migration struct {
	version int
	name    string
	ddl     []ddl
}

// ddl is one schema change, written once and rendered for the layout the
// store runs on.
type ddl interface {
	statements(l layout) []string
}

// localSuffix names the per-shard table behind a Distributed table.
const localSuffix = "_local"

// layout is how tables are laid out on the servers.
//
// On a single server (cluster "") a table is created as named. On a
// cluster each table T is a table T_local on every shard plus a
// Distributed table T over them, on every server too, so inserts and
// queries name T as on a single server. With onCluster the DDL is sent
// once, ON CLUSTER, and the shard tables are Replicated*MergeTree: both
// need Keeper. Without it Migrate runs the DDL on each server itself and
// the shard tables are plain *MergeTree, one copy of the data per shard.
type layout struct {
	db        string
	cluster   string
	onCluster bool
	ttl       *strings.Replacer // {requests_ttl_days}, {audit_ttl_days}
}

// on is the ON CLUSTER clause of a statement, if any.
func (l layout) on() string {
	if !l.onCluster {
		return ""
	}
	return " ON CLUSTER '" + l.cluster + "'"
}

// replicaPath is where a replicated shard table keeps its metadata in
// Keeper: one replication group per shard and table.
const replicaPath = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"

// table creates a MergeTree-family table.
type table struct {
	name     string
	engine   string // without Replicated, e.g. ReplacingMergeTree
	version  string // the engine's argument (the version column), if any
	columns  string // "(...)"
	clauses  string // PARTITION BY, ORDER BY, TTL, SETTINGS
	shardKey string // Distributed sharding key: copies of a row must share a shard (see migrations)
}

func (t table) statements(l layout) []string {
	clauses := t.clauses
	if l.ttl != nil {
		clauses = l.ttl.Replace(clauses)
	}
	if l.cluster == "" {
		return []string{fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s %s ENGINE = %s(%s)\n\t\t\t%s",
			l.db, t.name, t.columns, t.engine, t.version, clauses)}
	}
	local, engine, args := t.name+localSuffix, t.engine, t.version
	if l.onCluster {
		engine, args = "Replicated"+engine, replicaPath
		if t.version != "" {
			args += ", " + t.version
		}
	}
	return []string{
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s%s %s ENGINE = %s(%s)\n\t\t\t%s",
			l.db, local, l.on(), t.columns, engine, args, clauses),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.%s%s AS %s.%s ENGINE = Distributed('%s', '%s', '%s', %s)",
			l.db, t.name, l.on(), l.db, local, l.cluster, l.db, local, t.shardKey),
	}
}

// alter changes a table; on a cluster the shard tables and the
// Distributed table, whose columns must stay the same.
type alter struct {
	table  string
	change string
}

func (a alter) statements(l layout) []string {
	if l.cluster == "" {
		return []string{fmt.Sprintf("ALTER TABLE %s.%s %s", l.db, a.table, a.change)}
	}
	return []string{
		fmt.Sprintf("ALTER TABLE %s.%s%s%s %s", l.db, a.table, localSuffix, l.on(), a.change),
		fmt.Sprintf("ALTER TABLE %s.%s%s %s", l.db, a.table, l.on(), a.change),
	}
}

// tables lists the tables the migrations create.
func tables() []table {
	var out []table
	for _, m := range migrations {
		for _, d := range m.ddl {
			if t, ok := d.(table); ok {
				out = append(out, t)
			}
		}
	}
	return out
}

// migrationsTable records the applied migrations. ON CLUSTER it is laid
// out like the others: one record for the whole cluster, since ON CLUSTER
// DDL returns only once every server ran it. Shard by shard it is a plain
// table on each server, recording what was applied there.
var migrationsTable = table{name: "schema_migrations", shardKey: "version", engine: "ReplacingMergeTree",
	columns: "(version UInt32, name String, applied_at DateTime DEFAULT now())", clauses: "ORDER BY version"}

// Tables are ReplacingMergeTree keyed so that a redelivered record (same
// request_id / event_id, same ts) collapses into one row: Kafka delivery is
// at-least-once, and offsets are committed after the insert, so a crash
// between insert and commit inserts a batch twice. Queries that must count
// exactly use FINAL or count(DISTINCT id). Insert deduplication tokens also
// drop an identical retried batch at once (non_replicated_deduplication_window;
// replicated tables deduplicate by default).
//
// On a cluster rows are merged only with rows of the same shard, and FINAL
// through a Distributed table is applied on each shard: every table's
// sharding key is therefore a hash of columns that all copies and
// versions of a row share, so they meet on one shard and the answers are
// those of a single server.
//
// {requests_ttl_days} and {audit_ttl_days} are filled in by Migrate.
var migrations = []migration{
	{1, "events and dead letters", []ddl{
		table{
			name:    "request_events",
			engine:  "ReplacingMergeTree",
			version: "ingested_at",
			columns: `(
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
			)`,
			clauses: `PARTITION BY toYYYYMMDD(ts)
			ORDER BY (org_id, api_key_id, ip, ts, request_id)
			TTL toDateTime(ts) + INTERVAL {requests_ttl_days} DAY
			SETTINGS non_replicated_deduplication_window = 1000`,
			// A redelivered record keeps its request_id: all its copies
			// land on one shard, where FINAL and merges collapse them.
			shardKey: "cityHash64(request_id)",
		},
		table{
			name:    "audit_events",
			engine:  "ReplacingMergeTree",
			version: "ingested_at",
			columns: `(
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
			)`,
			clauses: `PARTITION BY toYYYYMMDD(ts)
			ORDER BY (org_id, actor_id, ts, event_id)
			TTL toDateTime(ts) + INTERVAL {audit_ttl_days} DAY
			SETTINGS non_replicated_deduplication_window = 1000`,
			// The same, by event_id.
			shardKey: "cityHash64(event_id)",
		},
		table{
			name:    "dead_letters",
			engine:  "ReplacingMergeTree",
			version: "received_at",
			columns: `(
				received_at DateTime64(3, 'UTC'),
				source LowCardinality(String),
				topic LowCardinality(String),
				partition UInt32,
				offset UInt64,
				reason String,
				raw String CODEC(ZSTD(1))
			)`,
			clauses: `PARTITION BY toYYYYMM(received_at)
			ORDER BY (topic, partition, offset)
			TTL toDateTime(received_at) + INTERVAL {audit_ttl_days} DAY`,
			// The sorting key: a record dead-lettered again lands beside
			// its first copy.
			shardKey: "cityHash64(topic, partition, offset)",
		},
	}},
	{2, "alerts", []ddl{
		table{
			name:    "alerts",
			engine:  "ReplacingMergeTree",
			version: "stored_at",
			columns: `(
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
			)`,
			clauses: `PARTITION BY toYYYYMM(at)
			ORDER BY (rule, alert_key)`,
			// A re-fired alert has the same key (the rule is part of it).
			shardKey: "cityHash64(alert_key)",
		},
	}},
	{3, "incidents, actions, block ledger, control", []ddl{
		table{
			name:    "incidents",
			engine:  "ReplacingMergeTree",
			version: "updated_at",
			columns: `(
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
			)`,
			clauses: `PARTITION BY toYYYYMM(opened_at)
			ORDER BY id`,
			// Every version of an incident on one shard, so that FINAL
			// keeps the newest.
			shardKey: "cityHash64(id)",
		},
		table{
			name:   "actions",
			engine: "MergeTree",
			columns: `(
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
			)`,
			clauses: `PARTITION BY toYYYYMM(at)
			ORDER BY (kind, target, at)`,
			// Nothing to collapse (MergeTree); a target's history stays
			// together, as LatestActions groups it.
			shardKey: "cityHash64(kind, target)",
		},
		table{
			name:    "blocks",
			engine:  "ReplacingMergeTree",
			version: "updated_at",
			columns: `(
				prefix String,
				incident_id String,
				blocked_at DateTime64(3, 'UTC'),
				expires_at DateTime64(3, 'UTC'),
				offense UInt32,
				status LowCardinality(String),
				updated_at DateTime64(6, 'UTC') DEFAULT now64(6)
			)`,
			clauses: `ORDER BY (prefix, blocked_at)`,
			// Every version of a ledger row (prefix, blocked_at) on one shard.
			shardKey: "cityHash64(prefix)",
		},
		table{
			name:    "control",
			engine:  "ReplacingMergeTree",
			version: "at",
			columns: `(
				name String,
				value String,
				at DateTime64(6, 'UTC') DEFAULT now64(6)
			)`,
			clauses: `ORDER BY name`,
			// Every version of a setting on one shard.
			shardKey: "cityHash64(name)",
		},
	}},
	{4, "alerts: shadow mode and the rule's provenance", []ddl{
		alter{"alerts", "ADD COLUMN IF NOT EXISTS shadow Bool DEFAULT false"},
		alter{"alerts", "ADD COLUMN IF NOT EXISTS rule_file_hash String DEFAULT ''"},
		alter{"alerts", "ADD COLUMN IF NOT EXISTS rule_git_revision String DEFAULT ''"},
	}},
	{5, "actions: the alert whose plan wrote them", []ddl{
		alter{"actions", "ADD COLUMN IF NOT EXISTS alert_key String DEFAULT ''"},
	}},
	{6, "incidents: the org of each namespace, for namespace targets", []ddl{
		alter{"incidents", "ADD COLUMN IF NOT EXISTS namespace_orgs Map(String, String) DEFAULT map()"},
	}},
}
