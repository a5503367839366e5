package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-sec/vigil/devbroker"
)

const devUsage = "usage: vigil dev broker [--addr 127.0.0.1:9092] [--data DIR] [--topic NAME=PARTITIONS ...]\n       vigil dev produce [--brokers ADDR] [--requests FILE] [--audit FILE] [--rate N]\n"

// cmdDev runs development helpers: a broker and a producer.
func cmdDev(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, devUsage)
		return 2
	}
	switch args[0] {
	case "broker":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return runDevBroker(ctx, stop, args[1:], stdout, stderr)
	case "produce":
		return runDevProduce(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "vigil dev: unknown command %q (use broker or produce)\n", args[0])
	return 2
}

// runDevBroker runs the broker until ctx is done. stop is called as soon as
// ctx is done, so that (with signal.NotifyContext) a second Ctrl-C kills the
// process the usual way if closing hangs.
func runDevBroker(ctx context.Context, stop func(), args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil dev broker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9092", "`host:port` to listen on (127.0.0.1 only; port 0 picks a free port)")
	dataDir := fs.String("data", "", "`dir`ectory that keeps topics, messages and committed offsets across restarts (empty: in memory)")
	topics := topicFlags{}
	fs.Var(topics, "topic", "`name=partitions` to create at start if missing (repeatable)")
	minSession := fs.Duration("group-min-session-timeout", 6*time.Second, "smallest consumer session timeout accepted (Kafka's default is 6s)")
	logLevel := fs.String("log-level", "warn", "broker log level on stderr: debug, info, warn or error")
	fs.Usage = func() {
		fmt.Fprint(stderr, devUsage+`
Runs a single-node Kafka-protocol broker (kfake) for development, tests and the
demo. Never for production: no replication, no authentication, loopback only.
Prints one "broker ready on ADDR" line on stdout once it serves requests and
runs until SIGINT or SIGTERM.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(stderr, "vigil dev broker: --log-level: %v\n", err)
		return 2
	}

	b, err := devbroker.Start(devbroker.Config{
		Addr:                   *addr,
		DataDir:                *dataDir,
		Topics:                 topics,
		GroupMinSessionTimeout: *minSession,
		Logger:                 slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		fmt.Fprintf(stderr, "vigil dev broker: %v\n", err)
		return 2
	}
	where := "in memory"
	if *dataDir != "" {
		where = "data dir " + *dataDir
	}
	fmt.Fprintf(stdout, "broker ready on %s (%s)\n", b.Addr(), where)

	<-ctx.Done()
	stop()
	if err := b.Close(); err != nil {
		fmt.Fprintf(stderr, "vigil dev broker: %v\n", err)
		return 2
	}
	return 0
}

// topicFlags collects repeatable --topic name=partitions flags.
type topicFlags map[string]int32

func (t topicFlags) String() string {
	names := make([]string, 0, len(t))
	for n := range t {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		names[i] = fmt.Sprintf("%s=%d", n, t[n])
	}
	return strings.Join(names, ",")
}

func (t topicFlags) Set(v string) error {
	name, ps, ok := strings.Cut(v, "=")
	if !ok || name == "" {
		return fmt.Errorf("want name=partitions, got %q", v)
	}
	n, err := strconv.ParseInt(ps, 10, 32)
	if err != nil || n < 1 {
		return fmt.Errorf("%q: partitions must be a whole number >= 1", v)
	}
	if old, dup := t[name]; dup && old != int32(n) {
		return fmt.Errorf("topic %s given twice (%d and %d partitions)", name, old, n)
	}
	t[name] = int32(n)
	return nil
}
