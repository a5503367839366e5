package main

import (
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"github.com/vigil-sec/vigil/ingest"
)

// runDevProduce is `vigil dev produce`: it writes JSON-lines log files to
// the input topics, for demos and manual testing.
func runDevProduce(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vigil dev produce", flag.ContinueOnError)
	fs.SetOutput(stderr)
	brokers := fs.String("brokers", "127.0.0.1:9092", "comma-separated `host:port` list")
	reqFile := fs.String("requests", "", "request log `file` (JSON lines, optionally .gz)")
	audFile := fs.String("audit", "", "audit log `file` (JSON lines, optionally .gz)")
	reqTopic := fs.String("requests-topic", "requests", "topic for request logs")
	audTopic := fs.String("audit-topic", "audit", "topic for audit logs")
	rate := fs.Float64("rate", 0, "messages per second per file (0 = as fast as possible)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *reqFile == "" && *audFile == "" {
		fmt.Fprint(stderr, "usage: vigil dev produce [--brokers ADDR] [--requests FILE] [--audit FILE] [--rate N]\n")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := ingest.Config{Brokers: strings.Split(*brokers, ",")}
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := false
	for _, job := range []struct{ file, topic string }{{*reqFile, *reqTopic}, {*audFile, *audTopic}} {
		if job.file == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := produceFile(ctx, cfg, job.topic, job.file, *rate)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Fprintf(stderr, "vigil dev produce: %s: %v\n", job.file, err)
				failed = true
				return
			}
			fmt.Fprintf(stdout, "produced %d messages from %s to %s\n", n, job.file, job.topic)
		}()
	}
	wg.Wait()
	if failed {
		return 1
	}
	return 0
}

func produceFile(ctx context.Context, cfg ingest.Config, topic, path string, rate float64) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return 0, err
		}
		r = zr
	}
	return ingest.ProduceLines(ctx, cfg, topic, r, rate, nil)
}
