package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

var readyLine = regexp.MustCompile(`^broker ready on (127\.0\.0\.1:\d+) \((.*)\)$`)

// startDevBroker runs "vigil dev broker ARGS" in the background through
// cmdDev (so the real signal handling is used) and returns the address from
// its ready line and a channel with its exit status.
func startDevBroker(t *testing.T, args ...string) (addr, where string, exit <-chan int, stderr *syncBuffer) {
	t.Helper()
	pr, pw := io.Pipe()
	stderr = &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- cmdDev(append([]string{"broker"}, args...), pw, stderr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no ready line (exit %d): %v; stderr: %s", <-done, err, stderr)
	}
	go io.Copy(io.Discard, pr)
	m := readyLine.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
	if m == nil {
		t.Fatalf("ready line %q does not match %v", line, readyLine)
	}
	return m[1], m[2], done, stderr
}

func waitExit(t *testing.T, exit <-chan int, stderr *syncBuffer) {
	t.Helper()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit status %d, stderr: %s", code, stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not exit within 10s of the signal")
	}
}

func topicPartitions(t *testing.T, addr string) map[string]int {
	t.Helper()
	tr := &kafka.Transport{}
	defer tr.CloseIdleConnections()
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 5 * time.Second, Transport: tr}
	md, err := c.Metadata(context.Background(), &kafka.MetadataRequest{})
	if err != nil {
		t.Fatalf("Metadata: %v", err)
	}
	out := map[string]int{}
	for _, tp := range md.Topics {
		out[tp.Name] = len(tp.Partitions)
	}
	return out
}

func TestDevBrokerSignals(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--addr", "127.0.0.1:0", "--data", dir, "--topic", "requests=6", "--topic", "audit=6", "--topic", "vigil.deadletter=1"}
	want := map[string]int{"requests": 6, "audit": 6, "vigil.deadletter": 1}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			addr, where, exit, stderr := startDevBroker(t, args...)
			if where != "data dir "+dir {
				t.Errorf("ready line says %q, want data dir %s", where, dir)
			}
			got := topicPartitions(t, addr)
			for name, n := range want {
				if got[name] != n {
					t.Errorf("topic %s: %d partitions, want %d (all: %v)", name, got[name], n, got)
				}
			}
			if err := syscall.Kill(syscall.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			waitExit(t, exit, stderr)
		})
	}
}

func TestDevBrokerUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"no subcommand", nil, "usage: vigil dev broker"},
		{"unknown subcommand", []string{"nope"}, `unknown command "nope"`},
		{"topic without partitions", []string{"broker", "--topic", "requests"}, "want name=partitions"},
		{"zero partitions", []string{"broker", "--topic", "requests=0"}, "partitions must be a whole number >= 1"},
		{"conflicting topic", []string{"broker", "--topic", "a=1", "--topic", "a=2"}, "given twice"},
		{"bad topic name", []string{"broker", "--addr", "127.0.0.1:0", "--topic", "a b=1"}, "invalid topic name"},
		{"not loopback", []string{"broker", "--addr", "0.0.0.0:9092"}, "only listen on 127.0.0.1"},
		{"bad log level", []string{"broker", "--log-level", "loud"}, "--log-level"},
		{"extra argument", []string{"broker", "extra"}, "usage: vigil dev broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := cmdDev(tt.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not contain %q", stderr.String(), tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
		})
	}
}

func TestDevBrokerInMemory(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- runDevBroker(ctx, func() {}, []string{"--addr", ":0"}, &stdout, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stdout.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if m := readyLine.FindStringSubmatch(strings.TrimSpace(stdout.String())); m == nil || m[2] != "in memory" {
		t.Errorf("ready line %q, want an in-memory broker", stdout.String())
	}
	cancel()
	waitExit(t, done, &stderr)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
