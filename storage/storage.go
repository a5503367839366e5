// Package storage keeps events, dead letters and alerts in ClickHouse:
// versioned schema migrations at start, batched inserts, and the split of
// insert errors into retryable ones (network, timeouts, too many parts)
// and bad data. ClickHouse driver types never leave this package.
package storage

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vigil-sec/vigil/detector"
	"github.com/vigil-sec/vigil/event"
)

// Config says how to reach ClickHouse and how long to keep records.
type Config struct {
	Addr        []string
	Database    string
	Username    string
	Password    string
	TLS         *tls.Config
	RequestsTTL time.Duration
	AuditTTL    time.Duration
	DialTimeout time.Duration

	// Cluster names a cluster of the servers' remote_servers: each table
	// becomes a table per shard (<table>_local) and a Distributed table
	// named as before. "" is a single server.
	Cluster string
	// Shards lists the native address of every server of Cluster. When set,
	// Migrate runs the DDL on each of them and the shard tables are not
	// replicated: for clusters without Keeper. When empty, the DDL goes ON
	// CLUSTER and the shard tables are replicated, which needs Keeper.
	Shards []string
}

// Store writes to one ClickHouse database.
type Store struct {
	conn driver.Conn
	db   string
	cfg  Config
}

var dbName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Open connects, creates the database if needed and applies migrations.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if !dbName.MatchString(cfg.Database) {
		return nil, fmt.Errorf("clickhouse.database %q: use letters, digits and underscores", cfg.Database)
	}
	if cfg.Cluster != "" && !dbName.MatchString(cfg.Cluster) {
		return nil, fmt.Errorf("clickhouse.cluster %q: use letters, digits and underscores", cfg.Cluster)
	}
	if cfg.Cluster == "" && len(cfg.Shards) > 0 {
		return nil, errors.New("clickhouse.shards needs clickhouse.cluster")
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.RequestsTTL == 0 {
		cfg.RequestsTTL = 90 * 24 * time.Hour
	}
	if cfg.AuditTTL == 0 {
		cfg.AuditTTL = 365 * 24 * time.Hour
	}
	conn, err := cfg.open(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %w", err)
	}
	s := &Store{conn: conn, db: cfg.Database, cfg: cfg}
	if err := s.Migrate(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// open connects to addr with the settings the layout needs.
func (cfg Config) open(addr []string) (driver.Conn, error) {
	opts := &clickhouse.Options{
		Addr:        addr,
		Auth:        clickhouse.Auth{Database: "default", Username: cfg.Username, Password: cfg.Password},
		TLS:         cfg.TLS,
		DialTimeout: cfg.DialTimeout,
		Compression: &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
	}
	if cfg.Cluster != "" {
		opts.Settings = clickhouse.Settings{
			// An insert into a Distributed table is acknowledged only once
			// every shard stored its rows (insert_distributed_sync is its
			// older name). By default the receiving server acknowledges at
			// once and forwards later from a spool on its disk: the daemon
			// would commit Kafka offsets of rows that no shard holds yet and
			// that are lost with that server. Sent at once, a failed insert
			// is retried whole with its token, and each shard drops the part
			// it already stored (the sharding keys split a batch the same
			// way every time).
			"distributed_foreground_insert": 1,
			// A query on a Distributed table whose IN subquery reads another
			// one (PendingAlerts, UnplannedAlerts) runs the subquery once,
			// over all shards, as GLOBAL IN: the answer of a single server.
			// The default refuses such queries; "local" would match each
			// shard's rows against that shard's incidents only.
			"distributed_product_mode": "global",
		}
	}
	return clickhouse.Open(opts)
}

// Close releases the connections.
func (s *Store) Close() error { return s.conn.Close() }

// Ping checks that ClickHouse answers (readiness).
func (s *Store) Ping(ctx context.Context) error { return s.conn.Ping(ctx) }

// Migrate applies the schema steps not yet recorded. On a cluster with
// Shards it migrates each server in turn, each recording its own steps.
func (s *Store) Migrate(ctx context.Context) error {
	ttl := strings.NewReplacer("{requests_ttl_days}", strconv.Itoa(days(s.cfg.RequestsTTL)),
		"{audit_ttl_days}", strconv.Itoa(days(s.cfg.AuditTTL)))
	l := layout{db: s.db, cluster: s.cfg.Cluster, onCluster: s.cfg.Cluster != "" && len(s.cfg.Shards) == 0, ttl: ttl}
	if l.cluster != "" {
		if err := s.checkCluster(ctx); err != nil {
			return err
		}
	}
	if l.cluster == "" || l.onCluster {
		return migrate(ctx, s.conn, l)
	}
	for _, addr := range s.cfg.Shards {
		conn, err := s.cfg.open([]string{addr})
		if err != nil {
			return fmt.Errorf("clickhouse: shard %s: %w", addr, err)
		}
		err = migrate(ctx, conn, l)
		conn.Close()
		if err != nil {
			return fmt.Errorf("clickhouse: shard %s: %w", addr, err)
		}
	}
	return nil
}

// checkCluster checks that the server knows the cluster and, when the DDL
// is run server by server, that Shards lists every server of it: one left
// out would lack the tables the Distributed tables read.
func (s *Store) checkCluster(ctx context.Context) error {
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM system.clusters WHERE cluster = ?", s.cfg.Cluster).Scan(&n); err != nil {
		return fmt.Errorf("clickhouse: read system.clusters: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("clickhouse.cluster %q: the server has no such cluster in its remote_servers", s.cfg.Cluster)
	}
	if len(s.cfg.Shards) > 0 && int(n) != len(s.cfg.Shards) {
		return fmt.Errorf("clickhouse.shards lists %d addresses but cluster %q has %d servers: list every one", len(s.cfg.Shards), s.cfg.Cluster, n)
	}
	return nil
}

// migrate applies the steps not yet recorded through conn.
func migrate(ctx context.Context, conn driver.Conn, l layout) error {
	if err := conn.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+l.db+l.on()); err != nil {
		return fmt.Errorf("clickhouse: create database %s: %w", l.db, err)
	}
	book := l
	if !l.onCluster {
		book.cluster = "" // each server's own record (see migrationsTable)
	}
	for _, stmt := range migrationsTable.statements(book) {
		if err := conn.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("clickhouse: schema_migrations: %w", err)
		}
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM "+l.db+".schema_migrations")
	if err != nil {
		return fmt.Errorf("clickhouse: read schema_migrations: %w", err)
	}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		applied[int(v)] = true
	}
	rows.Close()
	for _, m := range migrations {
		if applied[m.version] {
			continue
		}
		for _, d := range m.ddl {
			for _, stmt := range d.statements(l) {
				if err := conn.Exec(ctx, stmt); err != nil {
					return fmt.Errorf("clickhouse: migration %d (%s): %w", m.version, m.name, err)
				}
			}
		}
		if err := conn.Exec(ctx, "INSERT INTO "+l.db+".schema_migrations (version, name) VALUES (?, ?)", uint32(m.version), m.name); err != nil {
			return fmt.Errorf("clickhouse: record migration %d: %w", m.version, err)
		}
	}
	if l.cluster != "" {
		return checkDistributed(ctx, conn, l.db)
	}
	return nil
}

// checkDistributed refuses a database made for a single server: its
// tables exist with their plain names, so every step is recorded and
// nothing would create the shard and Distributed tables.
func checkDistributed(ctx context.Context, conn driver.Conn, db string) error {
	var names []string
	for _, t := range tables() {
		names = append(names, t.name)
	}
	var local []string
	err := conn.QueryRow(ctx, "SELECT groupArray(name) FROM system.tables WHERE database = ? AND has(?, name) AND engine != 'Distributed'",
		db, names).Scan(&local)
	if err != nil {
		return fmt.Errorf("clickhouse: read system.tables: %w", err)
	}
	if len(local) > 0 {
		return fmt.Errorf("clickhouse.cluster: database %s holds single-server tables (%s): use a new database for the cluster "+
			"(docs/clickhouse-cluster.md)", db, strings.Join(local, ", "))
	}
	return nil
}

func days(d time.Duration) int {
	n := int(d / (24 * time.Hour))
	if n < 1 {
		n = 1
	}
	return n
}

// Origin is where a record came from in Kafka (zero for files).
type Origin struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Record is a decoded event with its origin.
type Record struct {
	Event  *event.Event
	Origin Origin
}

// DeadLetter is an invalid record kept with its reason and original bytes.
type DeadLetter struct {
	Source     event.Source
	Origin     Origin
	Reason     string
	Raw        []byte
	ReceivedAt time.Time
}

// InsertEvents stores a batch of records, one insert per source table.
// token makes a retried identical batch a no-op (same token, same rows).
func (s *Store) InsertEvents(ctx context.Context, recs []Record, token string) error {
	// Each table gets its own token; no token stays no token (a suffix
	// alone would make every untokened insert a duplicate of the first).
	reqToken, audToken := "", ""
	if token != "" {
		reqToken, audToken = token+"-r", token+"-a"
	}
	var reqs, auds []Record
	for _, r := range recs {
		if r.Event.Source == event.Requests {
			reqs = append(reqs, r)
		} else {
			auds = append(auds, r)
		}
	}
	if len(reqs) > 0 {
		if err := s.insert(ctx, "request_events ("+requestColumns+")", reqToken, func(b driver.Batch) error {
			for _, r := range reqs {
				e := r.Event
				if err := b.Append(time.Unix(0, e.TS).UTC(), e.ID, e.OrgID, e.APIKeyID, e.KeyPermission, e.IP,
					e.Country, e.Method, e.Route, e.Path, e.Operation, e.Namespace, e.DataClassification,
					uint16(e.Status), uint64(e.BytesIn), uint64(e.BytesOut), e.LatencyMs, e.UserAgent, string(e.Extra),
					r.Origin.Topic, uint32(r.Origin.Partition), uint64(r.Origin.Offset)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if len(auds) > 0 {
		return s.insert(ctx, "audit_events ("+auditColumns+")", audToken, func(b driver.Batch) error {
			for _, r := range auds {
				e := r.Event
				if err := b.Append(time.Unix(0, e.TS).UTC(), e.ID, e.OrgID, e.ActorID, e.ActorType, e.APIKeyID,
					e.KeyPermission, e.IP, e.Action, e.ResourceType, e.ResourceID, e.Namespace, e.DataClassification,
					e.Outcome, string(e.Changes), string(e.Extra),
					r.Origin.Topic, uint32(r.Origin.Partition), uint64(r.Origin.Offset)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return nil
}

// InsertDeadLetters stores invalid records.
func (s *Store) InsertDeadLetters(ctx context.Context, dls []DeadLetter) error {
	if len(dls) == 0 {
		return nil
	}
	return s.insert(ctx, "dead_letters", "", func(b driver.Batch) error {
		for _, d := range dls {
			if err := b.Append(d.ReceivedAt.UTC(), d.Source.String(), d.Origin.Topic, uint32(d.Origin.Partition),
				uint64(d.Origin.Offset), d.Reason, string(d.Raw)); err != nil {
				return err
			}
		}
		return nil
	})
}

// InsertAlerts stores alerts; the alert key makes a re-fired alert (after
// a restart replays uncommitted records) collapse into the stored one.
func (s *Store) InsertAlerts(ctx context.Context, alerts []*detector.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	return s.insert(ctx, "alerts ("+alertColumns+")", "", func(b driver.Batch) error {
		for _, a := range alerts {
			js := a.AppendJSON(nil)
			group := string(a.AppendGroupJSON(nil))
			labels := a.Rule.Labels
			if labels == nil {
				labels = map[string]string{}
			}
			if err := b.Append(a.Key(), a.Rule.ID, uint8(a.Severity), a.Rule.Source.String(), group, a.Value, a.Threshold,
				time.Unix(0, a.WindowStart).UTC(), time.Unix(0, a.WindowEnd).UTC(), time.Unix(0, a.At).UTC(), a.PHI,
				labels, a.SampleIDs, a.Actions, a.Rule.Hash, string(js), a.Rule.Shadow, a.Rule.FileHash, a.Rule.GitRevision); err != nil {
				return err
			}
		}
		return nil
	})
}

// Column lists name what InsertEvents and InsertAlerts append, in order;
// the remaining columns take their defaults.
const (
	requestColumns = "ts, request_id, org_id, api_key_id, key_permission, ip, country, method, route, path, " +
		"operation, namespace, data_classification, status, bytes_in, bytes_out, latency_ms, user_agent, extra, topic, partition, offset"
	auditColumns = "ts, event_id, org_id, actor_id, actor_type, api_key_id, key_permission, ip, action, resource_type, " +
		"resource_id, namespace, data_classification, status, changes, extra, topic, partition, offset"
	alertColumns = "alert_key, rule, severity, source, group_json, value, threshold, window_start, window_end, at, phi, " +
		"labels, sample_ids, actions, rule_hash, alert_json, shadow, rule_file_hash, rule_git_revision"
)

// insert runs one batched INSERT into target ("table" or "table (cols)").
func (s *Store) insert(ctx context.Context, target, token string, fill func(driver.Batch) error) error {
	table, _, _ := strings.Cut(target, " ")
	if token != "" {
		ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"insert_deduplication_token": token}))
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.db+"."+target)
	if err != nil {
		return classify(table, err)
	}
	if err := fill(b); err != nil {
		b.Abort()
		return &Error{Table: table, Retryable: false, Err: err}
	}
	if err := b.Send(); err != nil {
		return classify(table, err)
	}
	return nil
}

// Token derives an insert deduplication token from a batch's identity.
func Token(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		io.WriteString(h, p)
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Error is an insert failure, classified for the caller: retry a
// Retryable one with backoff; dead-letter the records of the others.
type Error struct {
	Table     string
	Retryable bool
	Err       error
}

func (e *Error) Error() string {
	kind := "bad data"
	if e.Retryable {
		kind = "retryable"
	}
	return fmt.Sprintf("clickhouse insert into %s (%s): %v", e.Table, kind, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// IsRetryable reports whether err is worth retrying.
func IsRetryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Retryable
	}
	return true // unknown failures (connection, context) are transient until proven otherwise
}

// retryableCodes are server errors about load or the network, not the data.
// 225 (NO_ZOOKEEPER) and 279 (ALL_CONNECTION_TRIES_FAILED) come from a
// cluster: Keeper or every replica of a shard out of reach. 236 (ABORTED)
// is a server shutting down mid-query.
var retryableCodes = map[int32]bool{
	3: true, 159: true, 160: true, 202: true, 209: true, 210: true, 225: true, 236: true, 241: true, 242: true,
	252: true, 279: true, 285: true, 319: true, 373: true, 394: true, 425: true, 439: true, 999: true, 1000: true,
}

func classify(table string, err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return &Error{Table: table, Retryable: retryableCodes[ex.Code], Err: err}
	}
	// Anything that is not a server exception about the data — dial and
	// pool timeouts, resets, closed connections, cancelled contexts — is
	// about reaching the server, so it is worth retrying.
	return &Error{Table: table, Retryable: true, Err: err}
}
