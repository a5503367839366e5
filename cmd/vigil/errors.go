package main

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// reporter sends Vigil's own errors somewhere people look (Sentry).
type reporter interface {
	Report(ctx context.Context, message string, fields map[string]string) error
}

// errorForwarder is a slog.Handler that also hands every ERROR record to
// a reporter, off the logging goroutine: at most one report per message
// per minute, and none when the small queue is full (the log line is
// always written). Attributes are rendered as text, so secrets stay
// redacted as the log shows them (config.Secret prints [redacted]).
type errorForwarder struct {
	slog.Handler
	s *forwardState
}

type forwardState struct {
	rep   reporter
	queue chan report
	mu    sync.Mutex
	last  map[string]time.Time
}

type report struct {
	msg    string
	fields map[string]string
}

func newErrorForwarder(h slog.Handler, rep reporter) (*errorForwarder, func()) {
	s := &forwardState{rep: rep, queue: make(chan report, 64), last: map[string]time.Time{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for r := range s.queue {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			s.rep.Report(ctx, r.msg, r.fields) //nolint:errcheck // nowhere better to report a failed report
			cancel()
		}
	}()
	return &errorForwarder{Handler: h, s: s}, func() { close(s.queue); <-done }
}

func (f *errorForwarder) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		f.s.mu.Lock()
		due := time.Since(f.s.last[r.Message]) >= time.Minute
		if due {
			f.s.last[r.Message] = time.Now()
		}
		f.s.mu.Unlock()
		if due {
			fields := map[string]string{}
			r.Attrs(func(a slog.Attr) bool {
				fields[a.Key] = a.Value.String()
				return true
			})
			select {
			case f.s.queue <- report{msg: r.Message, fields: fields}:
			default:
			}
		}
	}
	return f.Handler.Handle(ctx, r)
}

func (f *errorForwarder) WithAttrs(as []slog.Attr) slog.Handler {
	return &errorForwarder{Handler: f.Handler.WithAttrs(as), s: f.s}
}

func (f *errorForwarder) WithGroup(name string) slog.Handler {
	return &errorForwarder{Handler: f.Handler.WithGroup(name), s: f.s}
}
