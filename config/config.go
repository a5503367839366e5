// Package config loads the daemon's YAML configuration strictly: unknown
// keys, wrong types and bad values are errors that name the key and the
// fix, with file:line:col. Values may use ${ENV} (or ${ENV:-default});
// secrets also come from *_file keys and never print. The same Load backs
// `vigil run` and `vigil config check`.
package config

import (
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/pipeline"
)

// Config is the whole daemon configuration. The yaml tags are the keys;
// the doc tags feed docs/operations.md.
type Config struct {
	Kafka      Kafka             `yaml:"kafka"`
	ClickHouse ClickHouse        `yaml:"clickhouse"`
	Rules      RulesConfig       `yaml:"rules"`
	Detector   Detector          `yaml:"detector"`
	Scaling    Scaling           `yaml:"scaling"`
	Namespaces map[string]string `yaml:"namespaces" doc:"namespace → data_classification for records that carry none"`
	Responders Responders        `yaml:"responders"`
	Ops        Ops               `yaml:"ops"`
	Log        Log               `yaml:"log"`
}

// Kafka says where the logs come from.
type Kafka struct {
	Brokers         []string `yaml:"brokers" doc:"bootstrap brokers, host:port"`
	GroupID         string   `yaml:"group_id" doc:"consumer group; keyed replicas with the same id share the work (docs/scaling.md)"`
	ClientID        string   `yaml:"client_id"`
	Topics          Topics   `yaml:"topics"`
	DeadLetterTopic string   `yaml:"dead_letter_topic" doc:"invalid records go here with their reason in headers; empty disables the topic (ClickHouse still keeps them)"`
	TLS             TLS      `yaml:"tls"`
	SASL            SASL     `yaml:"sasl"`
	// Group membership timings. A restarted replica gets its partitions
	// once the dead member's session expires, so the session timeout is
	// also the longest pause after a crash.
	SessionTimeout    Duration `yaml:"session_timeout" doc:"consumer group session timeout (Kafka's broker minimum is usually 6s)"`
	HeartbeatInterval Duration `yaml:"heartbeat_interval"`
	RebalanceTimeout  Duration `yaml:"rebalance_timeout"`
}

// Topics names the two input topics.
type Topics struct {
	Requests string `yaml:"requests"`
	Audit    string `yaml:"audit"`
}

// TLS configures a TLS client.
type TLS struct {
	Enabled            bool   `yaml:"enabled"`
	CAFile             string `yaml:"ca_file"`
	CertFile           string `yaml:"cert_file"`
	KeyFile            string `yaml:"key_file"`
	InsecureSkipVerify bool   `yaml:"insecure_skip_verify"`
}

// SASL configures Kafka authentication.
type SASL struct {
	Mechanism string `yaml:"mechanism" doc:"plain, scram-sha-256 or scram-sha-512; empty disables SASL"`
	Username  string `yaml:"username"`
	Password  Secret `yaml:"password" doc:"or password_file"`
}

// ClickHouse says where events, alerts and incidents are stored.
type ClickHouse struct {
	Addr          []string  `yaml:"addr" doc:"native protocol addresses, host:port"`
	Database      string    `yaml:"database"`
	Username      string    `yaml:"username"`
	Password      Secret    `yaml:"password" doc:"or password_file"`
	TLS           TLS       `yaml:"tls"`
	BatchSize     int       `yaml:"batch_size" doc:"events per insert"`
	BatchInterval Duration  `yaml:"batch_interval" doc:"longest wait before a partial batch is inserted"`
	MaxBuffered   int       `yaml:"max_buffered_events" doc:"events held in memory while ClickHouse is slow or down; consumption pauses at this cap"`
	Inserts       int       `yaml:"concurrent_inserts" doc:"batches whose events are inserted at once, so that one is encoded while the server writes another; each counts in max_buffered_events, which must hold concurrent_inserts + 3 batches. 0 = 2, or 1 when max_buffered_events holds fewer than 5 batches"`
	Retention     Retention `yaml:"retention"`
	Cluster       string    `yaml:"cluster" doc:"a cluster of the servers' remote_servers: each table is a table per shard behind a Distributed table (docs/clickhouse-cluster.md); empty = one server"`
	Shards        []string  `yaml:"shards" doc:"with cluster: the native address of every server of it; the schema is then created on each in turn and not replicated (clusters without Keeper). Empty = ON CLUSTER DDL and replicated tables, which need Keeper"`
}

// Retention is how long stored records are kept (ClickHouse TTL).
type Retention struct {
	Requests Duration `yaml:"requests" doc:"request logs (policy: 90 days)"`
	Audit    Duration `yaml:"audit" doc:"audit logs (policy: 365 days)"`
}

// RulesConfig says where rules are.
type RulesConfig struct {
	Paths []string `yaml:"paths" doc:"rule files or directories (every *.yaml inside)"`
}

// Detector tunes rule evaluation.
type Detector struct {
	MaxGroups int      `yaml:"max_groups" doc:"groups tracked per rule; past it the stalest is evicted and counted"`
	Lateness  Duration `yaml:"lateness" doc:"how far behind its group's newest event an event still counts"`
	Shards    int      `yaml:"shards" doc:"goroutines evaluating rules; 0 = one per CPU"`
	// RebuildLookback caps how much stored history a restart replays to
	// rebuild detection state.
	RebuildLookback    Duration `yaml:"rebuild_lookback" doc:"at most this much stored, committed history is replayed at start to rebuild windows, baselines and cooldowns; 0 disables"`
	DedupWindow        Duration `yaml:"dedup_window" doc:"a record whose request_id / event_id was evaluated less than this much event time before is a duplicate (a producer retry) and is not counted again; 0 disables"`
	LongWindowInterval Duration `yaml:"long_window_interval" doc:"how often rules above memory_window_limit are evaluated in ClickHouse"`
	MemoryWindowLimit  Duration `yaml:"memory_window_limit" doc:"threshold and anomaly rules whose window (or baseline + window) exceeds this run as scheduled ClickHouse queries instead of in memory (docs/long-window-rules.md); 0 keeps every rule in memory"`
	// ReorderSlack is the producers' worst disorder within one partition.
	ReorderSlack Duration `yaml:"reorder_slack" doc:"how far an event may precede its partition's newest in event time; the merge of partitions waits this long so the detector sees the order vigil replay --merge gives"`
}

// Log configures the daemon's own logs.
type Log struct {
	Level  string `yaml:"level" doc:"debug, info, warn or error"`
	Format string `yaml:"format" doc:"json or text"`
}

// Default returns the configuration used for every key a file leaves out.
func Default() Config {
	return Config{
		Kafka: Kafka{
			Brokers:           []string{"127.0.0.1:9092"},
			GroupID:           "vigil",
			ClientID:          "vigil",
			Topics:            Topics{Requests: "requests", Audit: "audit"},
			DeadLetterTopic:   "vigil.deadletter",
			SessionTimeout:    Duration(10 * time.Second),
			HeartbeatInterval: Duration(time.Second),
			RebalanceTimeout:  Duration(30 * time.Second),
		},
		ClickHouse: ClickHouse{
			Addr:          []string{"127.0.0.1:9000"},
			Database:      "vigil",
			Username:      "default",
			BatchSize:     50000,
			BatchInterval: Duration(250 * time.Millisecond),
			MaxBuffered:   500000,
			Retention:     Retention{Requests: Duration(90 * 24 * time.Hour), Audit: Duration(365 * 24 * time.Hour)},
		},
		Detector: Detector{MaxGroups: 100000, Lateness: Duration(10 * time.Minute), RebuildLookback: Duration(24 * time.Hour), MemoryWindowLimit: Duration(24 * time.Hour), LongWindowInterval: Duration(time.Minute),
			ReorderSlack: Duration(pipeline.DefaultReorderSlack), DedupWindow: Duration(detector.DefaultDedupWindow)},
		Scaling:    Scaling{Mode: "single", Partitions: 12, Replication: 1},
		Responders: defaultResponders(),
		Ops:        defaultOps(),
		Log:        Log{Level: "info", Format: "json"},
	}
}

// Scaling says how replicas share the work (docs/scaling.md).
type Scaling struct {
	Mode        string              `yaml:"mode" doc:"single: each replica evaluates the input partitions it is given, right for one replica; keyed: replicas split detection by group key through repartition topics, for several (docs/scaling.md)"`
	Partitions  int                 `yaml:"partitions" doc:"keyed: partitions of each repartition topic, the most replicas that share detection"`
	Replication int                 `yaml:"replication" doc:"keyed: replication factor of the topics Vigil creates"`
	TopicPrefix string              `yaml:"topic_prefix" doc:"keyed: repartition topics are named <prefix><source>-<group fields>; empty means <kafka.group_id>-"`
	Retention   Duration            `yaml:"retention" doc:"keyed: retention of the repartition topics, which a replica reads back to rebuild a gained partition's state; at least the rules' lookback (capped by detector.rebuild_lookback); 0 = each family's lookback + 1h"`
	KeyedInputs map[string][]string `yaml:"keyed_inputs" doc:"keyed: input topics already partitioned by a field list, e.g. {requests: [org_id]}; rules grouped by exactly those fields read the input topic itself"`
}

// Keyed reports whether replicas split detection by group key.
func (s Scaling) Keyed() bool { return s.Mode == "keyed" }

// Shards resolves detector.shards: 0 means one per CPU.
func (d Detector) ShardCount() int {
	if d.Shards > 0 {
		return d.Shards
	}
	return runtime.GOMAXPROCS(0)
}

// validate checks values that decode fine but make no sense; every
// problem names its key and what to write instead.
func (c *Config) validate() []string {
	var p []string
	bad := func(key, format string, args ...any) { p = append(p, key+": "+fmt.Sprintf(format, args...)) }
	if len(c.Kafka.Brokers) == 0 {
		bad("kafka.brokers", "at least one broker is needed, e.g. [kafka-0:9092]")
	}
	for _, b := range c.Kafka.Brokers {
		if !strings.Contains(b, ":") {
			bad("kafka.brokers", "%q has no port; write host:port, e.g. %s:9092", b, b)
		}
	}
	if c.Kafka.HeartbeatInterval <= 0 || c.Kafka.SessionTimeout < 3*c.Kafka.HeartbeatInterval || c.Kafka.RebalanceTimeout <= 0 {
		bad("kafka.session_timeout", "session_timeout must be at least 3 × heartbeat_interval, and all three timings positive (defaults 10s, 1s, 30s)")
	}
	if c.Kafka.GroupID == "" {
		bad("kafka.group_id", "must not be empty")
	}
	if c.Kafka.Topics.Requests == "" && c.Kafka.Topics.Audit == "" {
		bad("kafka.topics", "name at least one of requests and audit")
	}
	if c.Kafka.Topics.Requests != "" && c.Kafka.Topics.Requests == c.Kafka.Topics.Audit {
		bad("kafka.topics", "requests and audit must be different topics (the topic says which schema a record has)")
	}
	switch c.Kafka.SASL.Mechanism {
	case "", "plain", "scram-sha-256", "scram-sha-512":
	default:
		bad("kafka.sasl.mechanism", "unknown mechanism %q; use plain, scram-sha-256 or scram-sha-512", c.Kafka.SASL.Mechanism)
	}
	if c.Kafka.SASL.Mechanism != "" && c.Kafka.SASL.Username == "" {
		bad("kafka.sasl.username", "required when kafka.sasl.mechanism is set")
	}
	if len(c.ClickHouse.Addr) == 0 {
		bad("clickhouse.addr", "at least one address is needed, e.g. [clickhouse:9000]")
	}
	if c.ClickHouse.Database == "" {
		bad("clickhouse.database", "must not be empty")
	}
	if c.ClickHouse.BatchSize < 1 {
		bad("clickhouse.batch_size", "must be at least 1 (default 50000)")
	}
	if c.ClickHouse.BatchInterval <= 0 {
		bad("clickhouse.batch_interval", "must be positive, e.g. 1s")
	}
	if c.ClickHouse.MaxBuffered < c.ClickHouse.BatchSize {
		bad("clickhouse.max_buffered_events", "must be at least clickhouse.batch_size (%d)", c.ClickHouse.BatchSize)
	}
	if n := c.ClickHouse.Inserts; n < 0 || (n > 0 && c.ClickHouse.BatchSize > 0 && (n+3)*c.ClickHouse.BatchSize > c.ClickHouse.MaxBuffered) {
		bad("clickhouse.concurrent_inserts", "%d needs clickhouse.max_buffered_events of at least (concurrent_inserts + 3) × batch_size = %d: raise it, or set 0 for the default", n, (max(n, 0)+3)*c.ClickHouse.BatchSize)
	}
	if c.ClickHouse.Retention.Requests < Duration(24*time.Hour) || c.ClickHouse.Retention.Audit < Duration(24*time.Hour) {
		bad("clickhouse.retention", "keep records at least 1d (the policies ask for 90d of request logs and 365d of audit logs)")
	}
	if c.ClickHouse.Cluster == "" && len(c.ClickHouse.Shards) > 0 {
		bad("clickhouse.shards", "needs clickhouse.cluster, the cluster these servers form")
	}
	if len(c.Rules.Paths) == 0 {
		bad("rules.paths", "name at least one rule file or directory, e.g. [/etc/vigil/rules]")
	}
	if c.Detector.LongWindowInterval < Duration(time.Second) {
		bad("detector.long_window_interval", "must be at least 1s (default 1m)")
	}
	if c.Detector.MaxGroups < 1 {
		bad("detector.max_groups", "must be at least 1 (default 100000)")
	}
	if c.Detector.Lateness < 0 || c.Detector.Shards < 0 || c.Detector.RebuildLookback < 0 || c.Detector.ReorderSlack < 0 || c.Detector.DedupWindow < 0 || c.Detector.MemoryWindowLimit < 0 {
		bad("detector", "lateness, shards, rebuild_lookback, reorder_slack, dedup_window and memory_window_limit must not be negative")
	}
	switch c.Scaling.Mode {
	case "single", "keyed":
	default:
		bad("scaling.mode", "unknown mode %q; use single or keyed", c.Scaling.Mode)
	}
	if c.Scaling.Partitions < 1 || c.Scaling.Replication < 1 || c.Scaling.Retention < 0 {
		bad("scaling", "partitions and replication must be at least 1 (defaults 12 and 1), retention not negative")
	}
	for src, fields := range c.Scaling.KeyedInputs {
		if src != "requests" && src != "audit" {
			bad("scaling.keyed_inputs."+src, "unknown source; use requests or audit")
		}
		if len(fields) == 0 {
			bad("scaling.keyed_inputs."+src, "name the fields the topic is partitioned by, e.g. [org_id]")
		}
	}
	for ns, class := range c.Namespaces {
		switch class {
		case "PUBLIC", "INTERNAL", "CONFIDENTIAL", "PHI":
		default:
			bad("namespaces."+ns, "unknown classification %q; use PUBLIC, INTERNAL, CONFIDENTIAL or PHI", class)
		}
	}
	c.Responders.validate(bad)
	c.Ops.validate(bad)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "unknown level %q; use debug, info, warn or error", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", "unknown format %q; use json or text", c.Log.Format)
	}
	return p
}
