// Package devbroker runs a single-node Kafka-protocol broker for development
// and tests, built on kfake (github.com/twmb/franz-go/pkg/kfake). It exists so
// that tests, CI and the demo can talk to "Kafka" without a JVM or a
// container: kafka-go, franz-go and kcat all work against it.
//
// It is never for production: there is one node, no replication, no
// authentication, no real durability guarantees (nothing is fsynced), and it
// listens on 127.0.0.1 only.
//
// Topics are not auto-created; list them in Config.Topics or call
// Broker.CreateTopic before starting readers or writers (a group reader that
// starts before its topic exists silently consumes nothing).
package devbroker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
)

// DefaultAddr is the address used when Config.Addr is empty: a random free
// port on the loopback interface.
const DefaultAddr = "127.0.0.1:0"

// ErrClosed is returned by methods called after Close.
var ErrClosed = errors.New("devbroker: broker is closed")

// Config configures Start. The zero value is a usable in-memory broker on a
// random port with no topics.
type Config struct {
	// Addr is host:port to listen on. The host must be empty, 127.0.0.1 or
	// localhost (kfake only binds the IPv4 loopback); port 0 picks a free
	// port. Empty means DefaultAddr.
	Addr string

	// DataDir persists topics, messages and committed offsets across
	// restarts. Empty keeps everything in memory. The directory is created
	// if needed and locked against a second broker using it concurrently.
	DataDir string

	// Topics maps topic names to partition counts (>= 1). Missing topics are
	// created at start; existing ones (from DataDir) are kept as they are,
	// and a partition count that differs is reported as an error.
	Topics map[string]int32

	// Nodes is how many broker nodes the cluster has (default 1). With more,
	// partition leaders are spread over them and MoveLeaders can move them,
	// as a broker failover or a reassignment does; Addr is the first node's
	// (the bootstrap address), the others listen on free ports.
	Nodes int

	// GroupMinSessionTimeout is the smallest consumer session timeout the
	// broker accepts. Zero means the Kafka default of 6s; tests usually want
	// 100ms so that readers can use sub-second timeouts.
	GroupMinSessionTimeout time.Duration

	// Logger receives the broker's log lines (kfake's error, warn, info and
	// debug levels map to the slog levels of the same name). Nil discards
	// them.
	Logger *slog.Logger
}

// Broker is a running development broker. Its methods are safe for
// concurrent use.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	dataDir string
	nodes   int32
	log     *kfakeLogger
	unlock  func() error

	mu     sync.RWMutex // held for reading by cluster calls, for writing by Close
	closed bool
	err    error // result of the first Close
}

// Start starts a broker and returns once it accepts and serves requests
// (including after reloading DataDir), with every topic in cfg.Topics
// present.
func Start(cfg Config) (*Broker, error) {
	addr := cfg.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	port, err := parseAddr(addr)
	if err != nil {
		return nil, err
	}
	for name, n := range cfg.Topics {
		if err := checkTopic(name, n); err != nil {
			return nil, err
		}
	}

	lg := &kfakeLogger{l: cfg.Logger}
	if lg.l == nil {
		lg.l = slog.New(slog.DiscardHandler)
	}
	nodes := max(cfg.Nodes, 1)
	ports := make([]int, nodes) // the others: 0, a free port
	ports[0] = port
	opts := []kfake.Opt{
		kfake.NumBrokers(nodes),
		kfake.Ports(ports...),
		kfake.ClusterID("vigil-devbroker"),
		kfake.WithLogger(lg),
	}
	if cfg.GroupMinSessionTimeout > 0 {
		opts = append(opts, kfake.GroupMinSessionTimeout(cfg.GroupMinSessionTimeout))
	}
	unlock := func() error { return nil }
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
			return nil, fmt.Errorf("devbroker: data dir: %w", err)
		}
		if unlock, err = lockDir(cfg.DataDir); err != nil {
			return nil, err
		}
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}

	// NewCluster binds the port, loads DataDir and starts serving before it
	// returns; connections made while it loads wait in the accept queue.
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("devbroker: start on %s: %w", addr, err)
	}
	b := &Broker{cluster: c, dataDir: cfg.DataDir, log: lg, unlock: unlock, nodes: int32(nodes)}
	if addrs := c.ListenAddrs(); len(addrs) == nodes {
		b.addr = addrs[0]
	} else {
		b.Close()
		return nil, fmt.Errorf("devbroker: expected %d listeners, kfake reports %v", nodes, addrs)
	}
	for name, n := range cfg.Topics {
		if err := b.CreateTopic(name, n); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

// Addr returns the host:port clients connect to, for example
// "127.0.0.1:40123". It is also the address advertised in metadata.
func (b *Broker) Addr() string { return b.addr }

// DataDir returns Config.DataDir ("" for an in-memory broker).
func (b *Broker) DataDir() string { return b.dataDir }

// CreateTopic creates a topic with the given number of partitions (>= 1); the
// name must be valid for Kafka (1–249 of [a-zA-Z0-9._-], not "." or ".."). It
// is idempotent: if the topic already exists with that many partitions it
// returns nil; if it exists with a different count it returns an error (the
// broker cannot shrink topics; delete the data directory to start over).
func (b *Broker) CreateTopic(name string, partitions int32) error {
	if err := checkTopic(name, partitions); err != nil {
		return err
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	err := b.cluster.CreateTopic(name, partitions, nil)
	if err == nil {
		b.log.l.Info("devbroker: created topic", "topic", name, "partitions", partitions)
		return nil
	}
	if !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("devbroker: create topic %q: %w", name, err)
	}
	if have := int32(len(b.cluster.PartitionInfos(name))); have != partitions {
		return fmt.Errorf("devbroker: topic %q already exists with %d partitions, not %d", name, have, partitions)
	}
	return nil
}

// MoveLeaders moves the leader of every partition of topics to the next
// node, as a failover does: clients get NOT_LEADER_FOR_PARTITION and must
// find the new leader. It needs Config.Nodes > 1.
func (b *Broker) MoveLeaders(topics ...string) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	if b.nodes < 2 {
		return errors.New("devbroker: moving leaders needs Config.Nodes > 1")
	}
	for _, t := range topics {
		infos := b.cluster.PartitionInfos(t)
		if len(infos) == 0 {
			return fmt.Errorf("devbroker: topic %q does not exist", t)
		}
		for _, pi := range infos {
			if err := b.cluster.MoveTopicPartition(t, pi.Partition, (pi.Leader+1)%b.nodes); err != nil {
				return fmt.Errorf("devbroker: move %s/%d: %w", t, pi.Partition, err)
			}
		}
	}
	return nil
}

// Close stops the broker: it stops accepting connections, persists state to
// DataDir (if set) and releases the port and the data directory. Open client
// connections are not served any more; clients see errors and retry. Close is
// idempotent; every call returns the first call's result, which is non-nil
// if saving state failed.
func (b *Broker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.err
	}
	b.closed = true
	b.log.startClose()
	b.cluster.Close()
	b.err = errors.Join(b.log.endClose(), b.unlock())
	return b.err
}

// checkTopic applies Kafka's topic name rules, which kfake does not enforce,
// so that names that work here also work on a real cluster.
func checkTopic(name string, partitions int32) error {
	if partitions < 1 {
		return fmt.Errorf("devbroker: topic %q: partitions must be >= 1, got %d", name, partitions)
	}
	if name == "" || name == "." || name == ".." || len(name) > 249 {
		return fmt.Errorf("devbroker: invalid topic name %q", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("devbroker: invalid topic name %q: only letters, digits, '.', '_' and '-' are allowed", name)
		}
	}
	return nil
}

// parseAddr checks that addr is a loopback host:port and returns the port.
func parseAddr(addr string) (int, error) {
	host, ps, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("devbroker: address %q: %w", addr, err)
	}
	switch host {
	case "", "127.0.0.1", "localhost":
	default:
		return 0, fmt.Errorf("devbroker: address %q: the broker can only listen on 127.0.0.1", addr)
	}
	port, err := strconv.ParseUint(ps, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("devbroker: address %q: bad port %q", addr, ps)
	}
	return int(port), nil
}

// kfakeLogger adapts kfake's printf-style logger to slog and collects the
// errors kfake reports while closing (it has no other way to report that
// persisting state failed).
type kfakeLogger struct {
	l *slog.Logger // never nil

	mu        sync.Mutex
	closing   bool
	closeErrs []error
}

func (k *kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	if level == kfake.LogLevelError {
		k.mu.Lock()
		if k.closing {
			k.closeErrs = append(k.closeErrs, fmt.Errorf("devbroker: close: "+format, args...))
		}
		k.mu.Unlock()
	}
	l := k.l
	var sl slog.Level
	switch level {
	case kfake.LogLevelError:
		sl = slog.LevelError
	case kfake.LogLevelWarn:
		sl = slog.LevelWarn
	case kfake.LogLevelInfo:
		sl = slog.LevelInfo
	default:
		sl = slog.LevelDebug
	}
	ctx := context.Background()
	if !l.Enabled(ctx, sl) {
		return
	}
	l.Log(ctx, sl, "kfake: "+fmt.Sprintf(format, args...))
}

func (k *kfakeLogger) startClose() {
	k.mu.Lock()
	k.closing = true
	k.mu.Unlock()
}

func (k *kfakeLogger) endClose() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closing = false
	return errors.Join(k.closeErrs...)
}
