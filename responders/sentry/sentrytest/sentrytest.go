// Package sentrytest is an in-process fake of Sentry's ingestion endpoint
// for tests. It accepts envelopes (POST /api/{project_id}/envelope/) and
// legacy JSON events (POST /api/{project_id}/store/), checks the client
// key, decodes what it got and keeps it for assertions, and can inject
// faults. It must not be used outside tests.
//
// Answers follow Sentry's: 200 {"id":"<event id>"}; 401 {"detail":...}
// without the right key (X-Sentry-Auth "sentry_key=..." or the sentry_key
// query parameter); 400 for a body that is not a valid envelope; 404 for
// another project.
package sentrytest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// ProjectID is the project of every fake's DSN.
const ProjectID = "42"

// Fault is an answer injected in place of the real one.
type Fault struct {
	// Hang delays the answer by this long, or until the client gives up.
	// With nothing else set the request is then handled normally.
	Hang time.Duration
	// Status answers with this status; the event is not kept.
	Status int
	// RetryAfter and RateLimits are sent as Retry-After and
	// X-Sentry-Rate-Limits when set.
	RetryAfter string
	RateLimits string
	// Body replaces the default answer {"detail":"..."}. With Status 0
	// or 200 the event is accepted and Body is the answer, e.g. a
	// malformed one.
	Body string
}

// Request is one request the fake received.
type Request struct {
	Method, Path string
	ContentType  string
	AuthOK       bool
	Body         []byte // as received, decompressed
	Fault        bool   // answered (or delayed) by an injected fault
	Status       int    // status answered; 0 when the client left first
}

// Envelope is a decoded envelope.
type Envelope struct {
	Header map[string]any
	Items  []Item
}

// Item is one item of an envelope.
type Item struct {
	Header  map[string]any
	Payload []byte
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	srv       *httptest.Server
	publicKey string
	stop      chan struct{}

	mu        sync.Mutex
	faults    []Fault
	requests  []Request
	envelopes []Envelope
	events    []map[string]any
}

// New starts a fake with a random client key and stops it when t ends.
func New(t testing.TB) *Server {
	t.Helper()
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	s := &Server{publicKey: hex.EncodeToString(key), stop: make(chan struct{})}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() {
		close(s.stop) // release hanging handlers, or Close would wait for them
		s.srv.Close()
	})
	return s
}

// DSN returns the DSN of the fake's project:
// http://<public key>@127.0.0.1:<port>/<project>.
func (s *Server) DSN() string {
	return "http://" + s.publicKey + "@" + strings.TrimPrefix(s.srv.URL, "http://") + "/" + ProjectID
}

// PublicKey returns the client key the fake accepts.
func (s *Server) PublicKey() string { return s.publicKey }

// Inject makes the next n requests answer with f, after any faults
// already queued.
func (s *Server) Inject(n int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults = append(s.faults, f)
	}
}

// Requests returns the requests received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Envelopes returns the envelopes accepted so far.
func (s *Server) Envelopes() []Envelope {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Envelope(nil), s.envelopes...)
}

// Events returns the events accepted so far, each decoded into a map.
func (s *Server) Events() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.events...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, readErr := readBody(r)
	rec := Request{
		Method:      r.Method,
		Path:        r.URL.Path,
		ContentType: r.Header.Get("Content-Type"),
		AuthOK:      s.authOK(r),
		Body:        body,
	}
	s.mu.Lock()
	var fault *Fault
	if len(s.faults) > 0 {
		fault = &s.faults[0]
		s.faults = s.faults[1:]
		rec.Fault = true
	}
	s.mu.Unlock()

	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		rec.Status = sw.status
		s.mu.Lock()
		s.requests = append(s.requests, rec)
		s.mu.Unlock()
	}()

	if fault != nil {
		if fault.Hang > 0 {
			select {
			case <-time.After(fault.Hang):
			case <-r.Context().Done():
				return
			case <-s.stop:
				return
			}
		}
		if fault.RetryAfter != "" {
			sw.Header().Set("Retry-After", fault.RetryAfter)
		}
		if fault.RateLimits != "" {
			sw.Header().Set("X-Sentry-Rate-Limits", fault.RateLimits)
		}
		if fault.Status != 0 && fault.Status != http.StatusOK {
			if fault.Body != "" {
				sw.WriteHeader(fault.Status)
				_, _ = io.WriteString(sw, fault.Body)
				return
			}
			writeJSON(sw, fault.Status, map[string]any{"detail": http.StatusText(fault.Status)})
			return
		}
	}

	project, endpoint, ok := parsePath(r.URL.Path)
	switch {
	case !ok:
		writeJSON(sw, http.StatusNotFound, map[string]any{"detail": "not found"})
		return
	case r.Method != http.MethodPost:
		writeJSON(sw, http.StatusMethodNotAllowed, map[string]any{"detail": "method not allowed"})
		return
	case !rec.AuthOK:
		writeJSON(sw, http.StatusUnauthorized, map[string]any{"detail": "missing or invalid sentry_key"})
		return
	case project != ProjectID:
		writeJSON(sw, http.StatusNotFound, map[string]any{"detail": "unknown project"})
		return
	case readErr != nil:
		writeJSON(sw, http.StatusBadRequest, map[string]any{"detail": "cannot read body: " + readErr.Error()})
		return
	}

	var env Envelope
	var err error
	if endpoint == "envelope" {
		env, err = decodeEnvelope(body)
	} else {
		env = Envelope{Header: map[string]any{}, Items: []Item{{Header: map[string]any{"type": "event"}, Payload: body}}}
	}
	var events []map[string]any
	for _, it := range env.Items {
		if err != nil {
			break
		}
		if it.Header["type"] == "event" {
			var ev map[string]any
			if err = json.Unmarshal(it.Payload, &ev); err == nil {
				events = append(events, ev)
			}
		}
	}
	if err != nil {
		writeJSON(sw, http.StatusBadRequest, map[string]any{"detail": "invalid envelope: " + err.Error()})
		return
	}

	s.mu.Lock()
	s.envelopes = append(s.envelopes, env)
	s.events = append(s.events, events...)
	s.mu.Unlock()

	id, _ := env.Header["event_id"].(string)
	if id == "" && len(events) > 0 {
		id, _ = events[0]["event_id"].(string)
	}
	if fault != nil && fault.Body != "" {
		sw.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(sw, fault.Body)
		return
	}
	writeJSON(sw, http.StatusOK, map[string]any{"id": id})
}

// authOK checks the client key in X-Sentry-Auth or the query.
func (s *Server) authOK(r *http.Request) bool {
	if r.URL.Query().Get("sentry_key") == s.publicKey {
		return true
	}
	auth := strings.TrimSpace(r.Header.Get("X-Sentry-Auth"))
	auth, ok := strings.CutPrefix(auth, "Sentry ")
	if !ok {
		return false
	}
	for _, kv := range strings.Split(auth, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if k == "sentry_key" {
			return v == s.publicKey
		}
	}
	return false
}

// parsePath splits /api/{project}/{envelope|store}/.
func parsePath(p string) (project, endpoint string, ok bool) {
	seg := strings.Split(strings.Trim(p, "/"), "/")
	if len(seg) != 3 || seg[0] != "api" || (seg[2] != "envelope" && seg[2] != "store") {
		return "", "", false
	}
	return seg[1], seg[2], true
}

func readBody(r *http.Request) ([]byte, error) {
	var rd io.Reader = io.LimitReader(r.Body, 20<<20)
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(rd)
		if err != nil {
			return nil, err
		}
		rd = zr
	}
	return io.ReadAll(rd)
}

// decodeEnvelope reads the newline-delimited envelope format: a header
// line, then for each item a header line and a payload, of the header's
// length when it has one, else up to the next newline.
func decodeEnvelope(b []byte) (Envelope, error) {
	br := bufio.NewReader(bytes.NewReader(b))
	line, err := br.ReadBytes('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return Envelope{}, err
	}
	env := Envelope{}
	if err := json.Unmarshal(bytes.TrimSpace(line), &env.Header); err != nil {
		return Envelope{}, fmt.Errorf("envelope header: %w", err)
	}
	for {
		line, err := br.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) == 0 {
			if err != nil {
				break // the end
			}
			continue
		}
		var it Item
		if err := json.Unmarshal(bytes.TrimSpace(line), &it.Header); err != nil {
			return Envelope{}, fmt.Errorf("item header: %w", err)
		}
		if n, ok := it.Header["length"].(float64); ok {
			it.Payload = make([]byte, int(n))
			if _, err := io.ReadFull(br, it.Payload); err != nil {
				return Envelope{}, fmt.Errorf("item payload shorter than its length %d", int(n))
			}
			if c, err := br.ReadByte(); err == nil && c != '\n' {
				return Envelope{}, errors.New("item payload longer than its length")
			}
		} else {
			p, err := br.ReadBytes('\n')
			if err != nil && !errors.Is(err, io.EOF) {
				return Envelope{}, err
			}
			it.Payload = bytes.TrimSuffix(p, []byte("\n"))
		}
		if _, ok := it.Header["type"].(string); !ok {
			return Envelope{}, errors.New("item header without type")
		}
		env.Items = append(env.Items, it)
	}
	if len(env.Items) == 0 {
		return Envelope{}, errors.New("no items")
	}
	return env, nil
}

func writeJSON(w http.ResponseWriter, code int, doc map[string]any) {
	b, _ := json.Marshal(doc)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}
