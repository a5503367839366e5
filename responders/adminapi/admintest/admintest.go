// Package admintest is an in-process fake of the platform's admin API for
// tests: API keys and namespaces with their statuses, the answers and
// error documents of the real API, injected faults, and a log of every
// request received. It must not be used outside tests.
//
// Endpoints (all require "Authorization: Bearer <token>", else 401):
//
//	GET   /v1/organizations/api-keys/{key_id}
//	PATCH /v1/organizations/api-keys/{key_id}                      {"status":"revoked"|"active"}
//	PATCH /v1/namespaces/{namespace_id}                            {"status":"isolated"|"active"}
//	PATCH /v1/organizations/{org_id}/namespaces/{namespace_id}     {"status":"isolated"|"active"}
//	POST  /v1/namespaces/{namespace_id}/isolation                  (isolates; body optional)
//	DELETE /v1/namespaces/{namespace_id}/isolation                 (lifts)
//
// A PATCH answers 200 {"id":...,"status":...}; an unknown id 404
// {"detail":"API key not found"} (or "Namespace not found"); setting the
// status a resource already has 409; a body that is not JSON, or a status
// outside the allowed ones, 400; a PATCH without Content-Type
// application/json 415.
package admintest

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// Key is an API key held by the fake.
type Key struct {
	ID         string
	Status     string // active or revoked
	Permission string // READ, WRITE, DELETE or ADMIN
}

// Namespace is a namespace held by the fake.
type Namespace struct {
	Org, ID string
	Status  string // active or isolated
}

// Fault is an answer injected in place of the real one.
type Fault struct {
	// Hang delays the answer by this long, or until the client gives up.
	// With nothing else set the request is then handled normally.
	Hang time.Duration
	// Status answers with this status and does not apply the request.
	Status int
	// RetryAfter is sent as the Retry-After header when set.
	RetryAfter string
	// Body replaces the default error document {"detail":"..."}.
	Body string
	// Malformed applies the request but cuts its JSON answer short, as a
	// proxy that drops the connection mid-answer would.
	Malformed bool
}

// Request is one request the fake received.
type Request struct {
	Method      string
	Path        string // as sent, still escaped
	Body        string
	ContentType string
	AuthOK      bool
	Fault       bool // answered (or delayed) by an injected fault
	Status      int  // status answered; 0 when the client left first
}

// Server is the fake admin API. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to configure the client with.
	URL string
	// Token is the bearer token the server accepts.
	Token string

	srv  *httptest.Server
	stop chan struct{}

	mu         sync.Mutex
	keys       map[string]*Key
	namespaces map[string]*Namespace
	faults     []Fault
	log        []Request
}

// New starts a fake that accepts token and stops it when t ends.
func New(t testing.TB, token string) *Server {
	t.Helper()
	s := &Server{
		Token:      token,
		stop:       make(chan struct{}),
		keys:       make(map[string]*Key),
		namespaces: make(map[string]*Namespace),
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	t.Cleanup(func() {
		close(s.stop) // release hanging handlers, or Close would wait for them
		s.srv.Close()
	})
	return s
}

// AddKey adds or replaces an API key.
func (s *Server) AddKey(id, status, permission string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys[id] = &Key{ID: id, Status: status, Permission: permission}
}

// Key returns the key with the given id.
func (s *Server) Key(id string) (Key, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, ok := s.keys[id]
	if !ok {
		return Key{}, false
	}
	return *k, true
}

// AddNamespace adds or replaces a namespace.
func (s *Server) AddNamespace(org, id, status string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.namespaces[id] = &Namespace{Org: org, ID: id, Status: status}
}

// Namespace returns the namespace with the given id.
func (s *Server) Namespace(id string) (Namespace, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ns, ok := s.namespaces[id]
	if !ok {
		return Namespace{}, false
	}
	return *ns, true
}

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
	return append([]Request(nil), s.log...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	rec := Request{
		Method:      r.Method,
		Path:        r.URL.EscapedPath(),
		Body:        string(body),
		ContentType: r.Header.Get("Content-Type"),
		AuthOK:      r.Header.Get("Authorization") == "Bearer "+s.Token,
	}
	s.mu.Lock()
	var fault *Fault
	if len(s.faults) > 0 {
		fault = &s.faults[0]
		s.faults = s.faults[1:]
		rec.Fault = true
	}
	s.mu.Unlock()

	rw := &statusWriter{ResponseWriter: w}
	defer func() {
		rec.Status = rw.status
		s.mu.Lock()
		s.log = append(s.log, rec)
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
		if fault.Status != 0 {
			if fault.RetryAfter != "" {
				rw.Header().Set("Retry-After", fault.RetryAfter)
			}
			if fault.Body != "" {
				rw.Header().Set("Content-Type", "application/json")
				rw.WriteHeader(fault.Status)
				_, _ = io.WriteString(rw, fault.Body)
				return
			}
			writeJSON(rw, fault.Status, map[string]any{"detail": http.StatusText(fault.Status)})
			return
		}
		if fault.Malformed {
			rw = &statusWriter{ResponseWriter: w, truncate: true}
		}
	}

	if !rec.AuthOK {
		rw.Header().Set("WWW-Authenticate", "Bearer")
		writeJSON(rw, http.StatusUnauthorized, map[string]any{"detail": "Invalid or missing bearer token"})
		return
	}
	s.route(rw, r, body)
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, body []byte) {
	var seg []string
	for _, p := range strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/") {
		u, err := url.PathUnescape(p)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]any{"detail": "bad path"})
			return
		}
		seg = append(seg, u)
	}
	switch {
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "organizations" && seg[2] == "api-keys":
		s.key(w, r, seg[3], body)
	case len(seg) == 3 && seg[0] == "v1" && seg[1] == "namespaces":
		s.patchNamespace(w, r, "", seg[2], body)
	case len(seg) == 5 && seg[0] == "v1" && seg[1] == "organizations" && seg[3] == "namespaces":
		s.patchNamespace(w, r, seg[2], seg[4], body)
	case len(seg) == 4 && seg[0] == "v1" && seg[1] == "namespaces" && seg[3] == "isolation":
		switch r.Method {
		case http.MethodPost:
			s.setNamespace(w, "", seg[2], "isolated")
		case http.MethodDelete:
			s.setNamespace(w, "", seg[2], "active")
		default:
			methodNotAllowed(w, "POST, DELETE")
		}
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"detail": "Not Found"})
	}
}

func (s *Server) key(w http.ResponseWriter, r *http.Request, id string, body []byte) {
	switch r.Method {
	case http.MethodGet:
		s.mu.Lock()
		k, ok := s.keys[id]
		var doc map[string]any
		if ok {
			doc = map[string]any{"id": k.ID, "status": k.Status, "permission": k.Permission}
		}
		s.mu.Unlock()
		if !ok {
			writeJSON(w, http.StatusNotFound, map[string]any{"detail": "API key not found"})
			return
		}
		writeJSON(w, http.StatusOK, doc)
	case http.MethodPatch:
		status, ok := statusBody(w, r, body, "revoked", "active")
		if !ok {
			return
		}
		s.mu.Lock()
		k, found := s.keys[id]
		var code int
		var doc map[string]any
		switch {
		case !found:
			code, doc = http.StatusNotFound, map[string]any{"detail": "API key not found"}
		case k.Status == status:
			code, doc = http.StatusConflict, map[string]any{"detail": "API key is already " + status}
		default:
			k.Status = status
			code, doc = http.StatusOK, map[string]any{"id": k.ID, "status": k.Status, "permission": k.Permission}
		}
		s.mu.Unlock()
		writeJSON(w, code, doc)
	default:
		methodNotAllowed(w, "GET, PATCH")
	}
}

func (s *Server) patchNamespace(w http.ResponseWriter, r *http.Request, org, id string, body []byte) {
	if r.Method != http.MethodPatch {
		methodNotAllowed(w, "PATCH")
		return
	}
	status, ok := statusBody(w, r, body, "isolated", "active")
	if !ok {
		return
	}
	s.setNamespace(w, org, id, status)
}

// setNamespace sets a namespace's status; org, when not empty, must match.
func (s *Server) setNamespace(w http.ResponseWriter, org, id, status string) {
	s.mu.Lock()
	ns, found := s.namespaces[id]
	var code int
	var doc map[string]any
	switch {
	case !found || org != "" && ns.Org != org:
		code, doc = http.StatusNotFound, map[string]any{"detail": "Namespace not found"}
	case ns.Status == status:
		code, doc = http.StatusConflict, map[string]any{"detail": "Namespace is already " + status}
	default:
		ns.Status = status
		code, doc = http.StatusOK, map[string]any{"id": ns.ID, "org_id": ns.Org, "status": ns.Status}
	}
	s.mu.Unlock()
	writeJSON(w, code, doc)
}

// statusBody reads {"status":...} and answers 415 or 400 when it cannot.
func statusBody(w http.ResponseWriter, r *http.Request, body []byte, allowed ...string) (string, bool) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeJSON(w, http.StatusUnsupportedMediaType, map[string]any{"detail": "Content-Type must be application/json"})
		return "", false
	}
	var doc struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"detail": "JSON parse error"})
		return "", false
	}
	for _, a := range allowed {
		if doc.Status == a {
			return a, true
		}
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{"detail": "status must be one of " + strings.Join(allowed, ", ")})
	return "", false
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeJSON(w, http.StatusMethodNotAllowed, map[string]any{"detail": "Method Not Allowed"})
}

func writeJSON(w http.ResponseWriter, code int, doc map[string]any) {
	b, _ := json.Marshal(doc)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// statusWriter records the status written and, for the Malformed fault,
// cuts the answer in half.
type statusWriter struct {
	http.ResponseWriter
	status   int
	truncate bool
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.truncate {
		n, err := w.ResponseWriter.Write(b[:len(b)/2])
		if err != nil {
			return n, err
		}
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}
