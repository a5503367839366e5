// Package ingest consumes the request and audit topics as a consumer group
// and writes dead letters.
//
// A Consumer hands out records with Fetch; the caller marks them stored
// (MarkStored) once they are durable, in any order and from any goroutine.
// Offsets are committed only for records marked stored: per partition, the
// committed offset is the highest one below which every fetched record is
// stored, so it never skips an unstored record (gap-free) and never moves
// backwards (monotonic). After a crash the group re-reads from the first
// unstored record; nothing is lost and the duplicates are the unstored tail.
//
// A partition that kafka-go restarts from an earlier offset (after a
// rebalance or a reconnect) has its in-flight state forgotten: those
// records come again and are marked again.
//
// The package is built on github.com/segmentio/kafka-go, whose types never
// leave it. It relies on kafka-go's reader reconnecting and rejoining the
// group by itself when the broker goes away, and works around kafka-go's
// sharp edges: commits with a lower offset move the group back, commits
// after Close hang, the default writer drops errors and batches for a
// second, and the default transport leaks goroutines.
package ingest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/vigil-sec/vigil/event"
)

// Config says where to consume from and where dead letters go.
type Config struct {
	Brokers  []string
	GroupID  string
	ClientID string
	// Topics maps each input topic name to the schema its records have.
	Topics map[string]event.Source
	// DeadLetterTopic receives invalid records; "" means no dead-letter topic.
	DeadLetterTopic string
	// TLS enables TLS; nil means plaintext.
	TLS *tls.Config
	// SASLMechanism is "", "plain", "scram-sha-256" or "scram-sha-512".
	SASLMechanism, SASLUser, SASLPassword string
	// Timeouts for tests; zero means the production defaults (session 30s,
	// heartbeat 3s, rebalance 30s, max wait 500ms). kfake (and Kafka)
	// reject a session timeout below the broker's group.min.session.timeout.ms.
	SessionTimeout, HeartbeatInterval, RebalanceTimeout, MaxWait time.Duration
	// CommitInterval is how often stored offsets should be committed;
	// default 1s. It is advice for the caller, who calls Commit on a timer:
	// the Consumer itself commits only in Close.
	CommitInterval time.Duration
	// Logger receives kafka-go's errors (warn) and chatter (debug); nil
	// discards them.
	Logger *slog.Logger
}

const (
	defaultSessionTimeout    = 30 * time.Second
	defaultHeartbeatInterval = 3 * time.Second
	defaultRebalanceTimeout  = 30 * time.Second
	defaultMaxWait           = 500 * time.Millisecond
	defaultCommitInterval    = time.Second

	dialTimeout        = 10 * time.Second
	requestTimeout     = 10 * time.Second
	closeCommitTimeout = 5 * time.Second
)

// Message is one record as Fetch returns it.
type Message struct {
	Source    event.Source
	Topic     string
	Partition int
	Offset    int64
	Key       []byte
	Value     []byte
	Time      time.Time
	// OriginTopic, OriginPartition and OriginOffset say where a record of
	// a repartition topic was first read (the Router's headers); "" for
	// a record read where it was first written.
	OriginTopic     string
	OriginPartition int
	OriginOffset    int64
	// MergeTS is a repartitioned record's place in the merge by event
	// time (Routed.MergeTS); 0 when absent.
	MergeTS int64
	// Progress is set on a router's progress record, which carries no
	// event (see Routed.Progress).
	Progress []Progress
}

// Progress says how far a router has routed one input partition: every
// record below Offset, and MergeTS is the newest event time among them.
// Written to a repartition partition after the records it covers, it tells
// the partition's detector that nothing earlier than MergeTS will come
// from that input partition any more.
type Progress struct {
	Topic     string
	Partition int
	Offset    int64
	MergeTS   int64
}

// Ref is the message without its contents: what MarkStored needs, without
// holding the bytes.
func (m Message) Ref() Message {
	return Message{Source: m.Source, Topic: m.Topic, Partition: m.Partition, Offset: m.Offset}
}

// withDefaults validates cfg and fills in defaults. needTopics is false for
// the dead-letter writer, which does not read.
func (cfg Config) withDefaults(needTopics bool) (Config, error) {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("ingest: "+format, args...)) }
	if len(cfg.Brokers) == 0 {
		bad("no brokers")
	}
	for _, b := range cfg.Brokers {
		if b == "" {
			bad("empty broker address")
		}
	}
	if needTopics {
		if cfg.GroupID == "" {
			bad("empty group id")
		}
		if len(cfg.Topics) == 0 {
			bad("no topics")
		}
		for t, src := range cfg.Topics {
			if t == "" {
				bad("empty topic name")
			}
			if src != event.Requests && src != event.Audit {
				bad("topic %q: unknown source %d", t, src)
			}
			if t == cfg.DeadLetterTopic {
				bad("topic %q is both an input and the dead-letter topic", t)
			}
		}
	}
	switch cfg.SASLMechanism {
	case "":
	case "plain", "scram-sha-256", "scram-sha-512":
		if cfg.SASLUser == "" {
			bad("SASL mechanism %q needs a user", cfg.SASLMechanism)
		}
	default:
		bad("unknown SASL mechanism %q (want plain, scram-sha-256 or scram-sha-512)", cfg.SASLMechanism)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"session timeout", &cfg.SessionTimeout, defaultSessionTimeout},
		{"heartbeat interval", &cfg.HeartbeatInterval, defaultHeartbeatInterval},
		{"rebalance timeout", &cfg.RebalanceTimeout, defaultRebalanceTimeout},
		{"max wait", &cfg.MaxWait, defaultMaxWait},
		{"commit interval", &cfg.CommitInterval, defaultCommitInterval},
	} {
		if *d.v < 0 {
			bad("negative %s %v", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.HeartbeatInterval >= cfg.SessionTimeout {
		bad("heartbeat interval %v must be below the session timeout %v", cfg.HeartbeatInterval, cfg.SessionTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, errors.Join(errs...)
}

// prepare is what every client of the package starts with: cfg checked
// and completed (withDefaults) and its SASL mechanism built.
func (cfg Config) prepare(needTopics bool) (Config, sasl.Mechanism, error) {
	cfg, err := cfg.withDefaults(needTopics)
	if err != nil {
		return cfg, nil, err
	}
	mech, err := cfg.saslMechanism()
	return cfg, mech, err
}

func (cfg *Config) saslMechanism() (sasl.Mechanism, error) {
	switch cfg.SASLMechanism {
	case "":
		return nil, nil
	case "plain":
		return plain.Mechanism{Username: cfg.SASLUser, Password: cfg.SASLPassword}, nil
	case "scram-sha-256":
		return scram.Mechanism(scram.SHA256, cfg.SASLUser, cfg.SASLPassword)
	case "scram-sha-512":
		return scram.Mechanism(scram.SHA512, cfg.SASLUser, cfg.SASLPassword)
	}
	return nil, fmt.Errorf("ingest: unknown SASL mechanism %q", cfg.SASLMechanism)
}

// newTransport returns a Transport of our own: the default one keeps
// connection-pool goroutines alive after Close (gotcha 8).
func (cfg *Config) newTransport(mech sasl.Mechanism) *kafka.Transport {
	return &kafka.Transport{
		DialTimeout: dialTimeout,
		ClientID:    cfg.ClientID,
		TLS:         cfg.TLS,
		SASL:        mech,
	}
}

// newDialer returns the Dialer of the clients that kafka-go dials itself
// (group readers, the election, partition reads).
func (cfg *Config) newDialer(mech sasl.Mechanism) *kafka.Dialer {
	return &kafka.Dialer{ClientID: cfg.ClientID, Timeout: dialTimeout, DualStack: true, TLS: cfg.TLS, SASLMechanism: mech}
}

// kafkaLoggers adapts slog to kafka-go's printf loggers: its info output is
// very chatty (every partition reader start), so it goes to debug; its
// error output (dial failures, rebalances, retries) goes to warn, since
// kafka-go retries them by itself.
func kafkaLoggers(l *slog.Logger, component string) (info, errs kafka.Logger) {
	mk := func(level slog.Level) kafka.Logger {
		return kafka.LoggerFunc(func(format string, args ...any) {
			if !l.Enabled(context.Background(), level) {
				return
			}
			l.Log(context.Background(), level, "kafka-go: "+trimNL(fmt.Sprintf(format, args...)), "component", component)
		})
	}
	return mk(slog.LevelDebug), mk(slog.LevelWarn)
}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}
