// Package opshttp serves the daemon's operations endpoints on their own
// listener: GET /metrics, GET /healthz, GET /readyz and POST /-/reload.
//
// It must never serve the internet. Every request is checked first against
// an allowlist of client networks, on the TCP peer address (r.RemoteAddr)
// only: X-Forwarded-For and similar headers are ignored, because any client
// can write them. Behind a proxy the proxy's address is the one checked.
// Optional HTTP basic auth and TLS sit on top of the allowlist, not instead
// of it.
//
// The package owns no metrics, readiness logic or reload logic: the daemon
// passes them in as Handlers. It has no package-level state; a Server is
// built by New and runs until the context given to Run ends.
package opshttp

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultAddr is the listen address when Config.Addr is empty: loopback
// only, so that exposing the endpoints is a deliberate choice.
const DefaultAddr = "127.0.0.1:9464"

// Timeouts of the HTTP server. The endpoints are small and local, so a
// client that is slower than this is broken or hostile.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 30 * time.Second // a reload or a large scrape fits well within it
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	readyTimeout      = 5 * time.Second // a readiness check slower than this counts as not ready
	shutdownTimeout   = 5 * time.Second // in-flight requests get this long after ctx ends
)

// DefaultAllowCIDRs returns the networks allowed when Config.AllowCIDRs is
// empty: the private IPv4 ranges of RFC 1918 (10.0.0.0/8, 172.16.0.0/12,
// 192.168.0.0/16), which are the internal ranges the information security
// policy permits for metrics endpoints, plus loopback (127.0.0.0/8 and
// ::1/128) so that the host itself can always scrape and probe.
//
// IPv6 unique-local (fc00::/7) and link-local (fe80::/10) networks are not
// included; list them in Config.AllowCIDRs to allow them. Each call returns
// a new slice.
func DefaultAllowCIDRs() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
		netip.MustParsePrefix("::1/128"),
	}
}

// Config configures the operations listener. The zero value listens on
// DefaultAddr, allows DefaultAllowCIDRs, and uses neither auth nor TLS.
type Config struct {
	// Addr is host:port to listen on; port 0 picks a free port (see
	// Server.Addr). Empty means DefaultAddr. In a container use
	// "0.0.0.0:9464" so that the kubelet and Prometheus can reach it; the
	// allowlist still applies.
	Addr string

	// AllowCIDRs are the client networks allowed to connect; others get
	// 403. Empty means DefaultAllowCIDRs. An IPv4-mapped IPv6 client
	// (::ffff:10.1.2.3) is matched as the IPv4 address it carries.
	AllowCIDRs []netip.Prefix

	// BasicAuthUser and BasicAuthPassword, when set (both or neither),
	// protect /metrics and /-/reload with HTTP basic auth. /healthz and
	// /readyz stay open to allowed networks so that kubelet and systemd
	// probes need no credentials: their answers carry no secrets.
	BasicAuthUser     string
	BasicAuthPassword string

	// TLSCertFile and TLSKeyFile (PEM; both or neither) switch the listener
	// to HTTPS, TLS 1.2 or newer. The files are read again when their
	// modification time or size changes, so a rotated certificate (for
	// example a renewed Kubernetes Secret) is picked up without a restart.
	TLSCertFile string
	TLSKeyFile  string

	// Logger receives the listener's log lines; nil discards them.
	Logger *slog.Logger
}

// Handlers are what the endpoints serve; the daemon owns them.
type Handlers struct {
	// Metrics serves GET /metrics, e.g. promhttp.HandlerFor(reg, ...).
	// Nil answers 404.
	Metrics http.Handler

	// Ready reports readiness for GET /readyz: nil means ready (200
	// "ready"), an error means not ready (503 with the error's text, which
	// is shown to every allowed client without auth: callers must keep
	// secrets out of it). It gets at most 5s. Nil means always ready.
	Ready func(ctx context.Context) error

	// Reload serves POST /-/reload: nil error answers 200, an error 500
	// with its text (file:line:col problems belong there). Overlapping
	// requests call it concurrently, and the daemon may also reload on
	// SIGHUP, so Reload must serialize itself. Nil answers 404.
	Reload func(ctx context.Context) error
}

// Server is the operations listener. Build it with New and start it with
// Run, once.
type Server struct {
	cfg   Config
	allow allowlist
	h     Handlers
	log   *slog.Logger
	certs *certFiles // nil without TLS

	// authUser and authPass are SHA-256 digests of the configured
	// credentials, so the comparison takes the same time whatever the
	// lengths; nil without basic auth.
	authUser, authPass []byte

	started chan struct{} // closed by the first Run
	bound   chan struct{} // closed once Run has listened or failed to
	addr    string        // set before bound is closed
}

// New validates cfg and builds a Server; it does not listen yet. Errors
// name the setting and what to change.
func New(cfg Config, h Handlers) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	var errs []error
	if host, port, err := net.SplitHostPort(cfg.Addr); err != nil {
		errs = append(errs, fmt.Errorf("ops addr %q: %v; use host:port, e.g. 0.0.0.0:9464 or 127.0.0.1:9464", cfg.Addr, err))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		errs = append(errs, fmt.Errorf("ops addr %q: port %q is not a number from 0 to 65535 (host %q)", cfg.Addr, port, host))
	}

	allowed := cfg.AllowCIDRs
	if len(allowed) == 0 {
		allowed = DefaultAllowCIDRs()
	}
	allow := make(allowlist, 0, len(allowed))
	for i, p := range allowed {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("ops allow_cidrs[%d] is not a valid network; write CIDR ranges such as 10.0.0.0/8", i))
			continue
		}
		allow = append(allow, normalize(p))
	}

	s := &Server{cfg: cfg, allow: allow, h: h, log: log, started: make(chan struct{}), bound: make(chan struct{})}

	switch {
	case (cfg.BasicAuthUser == "") != (cfg.BasicAuthPassword == ""):
		errs = append(errs, errors.New("ops basic auth: set both basic_auth_user and the password (basic_auth_password_file), or neither"))
	case strings.Contains(cfg.BasicAuthUser, ":"):
		errs = append(errs, errors.New("ops basic_auth_user must not contain ':' (HTTP basic auth cannot carry it); choose another user name"))
	case cfg.BasicAuthUser != "":
		u, p := sha256.Sum256([]byte(cfg.BasicAuthUser)), sha256.Sum256([]byte(cfg.BasicAuthPassword))
		s.authUser, s.authPass = u[:], p[:]
	}

	switch {
	case (cfg.TLSCertFile == "") != (cfg.TLSKeyFile == ""):
		errs = append(errs, errors.New("ops TLS: set both tls_cert_file and tls_key_file, or neither"))
	case cfg.TLSCertFile != "":
		s.certs = &certFiles{certFile: cfg.TLSCertFile, keyFile: cfg.TLSKeyFile, log: log}
		if _, err := s.certs.load(); err != nil {
			errs = append(errs, err)
		}
	}

	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, p := range allow {
		if !internal(p) {
			log.Warn("ops allow_cidrs contains a network outside the internal ranges; metrics endpoints are meant for internal networks only",
				"network", p.String())
		}
	}
	if s.authUser != nil && s.certs == nil && !loopbackOnly(cfg.Addr) {
		log.Warn("ops basic auth without TLS sends the password in clear text; set tls_cert_file and tls_key_file", "addr", cfg.Addr)
	}
	return s, nil
}

// Run listens on the configured address and serves until ctx ends, then
// shuts down gracefully: in-flight requests get 5s to finish, after which
// their connections are closed. It returns nil after a shutdown caused by
// ctx, and a listen error at once. Run may be called only once.
func (s *Server) Run(ctx context.Context) error {
	select {
	case <-s.started:
		return errors.New("opshttp: Run called twice; build a new Server with New")
	default:
		close(s.started)
	}

	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		close(s.bound)
		return fmt.Errorf("ops listener: %w; free the port or change ops addr", err)
	}
	s.addr = ln.Addr().String()
	close(s.bound)

	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		// TLS handshake failures and the like from scanners are noise.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.certs != nil {
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.get}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}

	s.log.Info("ops listener started", "addr", s.addr, "tls", s.certs != nil, "basic_auth", s.authUser != nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		return fmt.Errorf("ops listener %s: %w", s.addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("ops listener: requests still running after the shutdown timeout were cut off", "timeout", shutdownTimeout)
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("ops listener %s: %w", s.addr, err)
	}
	s.log.Info("ops listener stopped", "addr", s.addr)
	return nil
}

// Addr returns the address the listener is bound to, e.g. "127.0.0.1:41234"
// when Config.Addr had port 0. It waits until Run has listened, so call it
// only after starting Run (typically in another goroutine); it returns ""
// if Run failed to listen.
func (s *Server) Addr() string {
	<-s.bound
	return s.addr
}

// ServeHTTP checks the client, then routes the request. It is the Server's
// whole handler; Run serves it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	peer, ok := s.allow.permits(r.RemoteAddr)
	if !ok {
		s.log.Warn("ops request refused: client address not in the allowlist; add its network to ops allow_cidrs if it should scrape or probe",
			"peer", r.RemoteAddr, "method", r.Method, "path", r.URL.Path)
		text(w, http.StatusForbidden, "forbidden: client address not allowed")
		return
	}
	probe := r.URL.Path == "/healthz" || r.URL.Path == "/readyz"
	if s.authUser != nil && !probe && !s.authorized(r) {
		_, _, present := r.BasicAuth()
		// A missing header is routine (a first browser request); a wrong
		// one is worth a warning. Neither logs what the client sent.
		level := slog.LevelWarn
		if !present {
			level = slog.LevelDebug
		}
		s.log.Log(r.Context(), level, "ops request refused: basic auth credentials missing or wrong",
			"peer", peer.String(), "method", r.Method, "path", r.URL.Path, "credentials_sent", present)
		w.Header().Set("WWW-Authenticate", `Basic realm="vigil ops", charset="UTF-8"`)
		text(w, http.StatusUnauthorized, "unauthorized")
		return
	}

	switch r.URL.Path {
	case "/metrics":
		if s.h.Metrics == nil {
			http.NotFound(w, r)
			return
		}
		if !readOnly(w, r) {
			return
		}
		s.h.Metrics.ServeHTTP(w, r)
	case "/healthz":
		if readOnly(w, r) {
			text(w, http.StatusOK, "ok")
		}
	case "/readyz":
		if readOnly(w, r) {
			s.ready(w, r)
		}
	case "/-/reload":
		s.reload(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if s.h.Ready == nil {
		text(w, http.StatusOK, "ready")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if err := s.h.Ready(ctx); err != nil {
		text(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
		return
	}
	text(w, http.StatusOK, "ready")
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	if s.h.Reload == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		text(w, http.StatusMethodNotAllowed, "method not allowed: use POST /-/reload")
		return
	}
	if err := s.h.Reload(r.Context()); err != nil {
		s.log.Warn("reload requested over the ops listener failed; the running configuration is unchanged", "err", err)
		text(w, http.StatusInternalServerError, "reload failed:\n"+err.Error())
		return
	}
	s.log.Info("reload requested over the ops listener succeeded")
	text(w, http.StatusOK, "reloaded")
}

// authorized compares both credentials in constant time: digests of equal
// length, and no early return between user and password.
func (s *Server) authorized(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	u, p := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	match := subtle.ConstantTimeCompare(u[:], s.authUser) & subtle.ConstantTimeCompare(p[:], s.authPass)
	return ok && match == 1
}

// readOnly allows GET and HEAD, answering 405 otherwise.
func readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	text(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
	return false
}

func text(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body + "\n"))
}

// loopbackOnly reports whether addr binds only a loopback address.
func loopbackOnly(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// certFiles serves the TLS certificate from its files, loading them again
// when they change on disk (checked at each handshake: two stat calls).
type certFiles struct {
	certFile, keyFile string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	version [2]fileVersion
}

type fileVersion struct {
	mod  time.Time
	size int64
}

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	cert, err := c.load()
	if err != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.cert != nil {
			// Keep serving the last good certificate; a half-written
			// rotation usually fixes itself on the next handshake.
			c.log.Warn("ops TLS certificate changed on disk but cannot be loaded; still serving the previous one", "err", err)
			return c.cert, nil
		}
		return nil, err
	}
	return cert, nil
}

// load returns the cached certificate, reading the files again if their
// modification time or size changed.
func (c *certFiles) load() (*tls.Certificate, error) {
	var now [2]fileVersion
	for i, name := range []string{c.certFile, c.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return nil, fmt.Errorf("ops TLS: cannot read %s: %w; check tls_cert_file, tls_key_file and the file permissions", name, err)
		}
		now[i] = fileVersion{mod: fi.ModTime(), size: fi.Size()}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert != nil && now == c.version {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("ops TLS: cannot load the certificate %s with the key %s: %w; both must be PEM and belong together", c.certFile, c.keyFile, err)
	}
	c.cert, c.version = &cert, now
	return c.cert, nil
}
