package opshttp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start runs a Server on a free loopback port until the test ends and
// returns its address.
func start(t *testing.T, cfg Config, h Handlers) string {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := New(cfg, h)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context ending")
		}
	})
	addr := s.Addr()
	if addr == "" {
		t.Fatalf("Run failed to listen: %v", <-done)
	}
	return addr
}

// client returns an HTTP client whose idle connections are closed when the
// test ends (before the server stops), so that goleak sees no leftovers.
func client(t *testing.T, tlsConf *tls.Config) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: tlsConf, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

type response struct {
	code   int
	body   string
	header http.Header
	tls    *tls.ConnectionState
}

func do(t *testing.T, c *http.Client, method, url string, auth ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, string(b), resp.Header, resp.TLS}
}

// logBuffer collects log output written from the server's goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger(buf *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func metricsText(body string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, body)
	})
}

func TestNewRejectsBadConfigurations(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "a", selfSigned(t, 1))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, otherKey := writeCert(t, dir, "b", selfSigned(t, 2))

	tests := []struct {
		name    string
		cfg     Config
		wantErr string // empty: New succeeds
	}{
		{"the zero value is valid", Config{}, ""},
		{"an address without a port", Config{Addr: "127.0.0.1"}, "use host:port"},
		{"a port out of range", Config{Addr: "127.0.0.1:70000"}, "from 0 to 65535"},
		{"a named port", Config{Addr: "127.0.0.1:http"}, "from 0 to 65535"},
		{"a zero-value network in the allowlist", Config{AllowCIDRs: []netip.Prefix{{}}}, "allow_cidrs[0]"},
		{"a user without a password", Config{BasicAuthUser: "prom"}, "both basic_auth_user and the password"},
		{"a password without a user", Config{BasicAuthPassword: "x"}, "both basic_auth_user and the password"},
		{"a user name with a colon", Config{BasicAuthUser: "a:b", BasicAuthPassword: "x"}, "must not contain ':'"},
		{"a certificate without a key", Config{TLSCertFile: certFile}, "both tls_cert_file and tls_key_file"},
		{"a key without a certificate", Config{TLSKeyFile: keyFile}, "both tls_cert_file and tls_key_file"},
		{"a certificate file that does not exist", Config{TLSCertFile: filepath.Join(dir, "missing.pem"), TLSKeyFile: keyFile}, "cannot read"},
		{"a certificate file that is not PEM", Config{TLSCertFile: garbage, TLSKeyFile: keyFile}, "must be PEM"},
		{"a key that belongs to another certificate", Config{TLSCertFile: certFile, TLSKeyFile: otherKey}, "belong together"},
		{"every problem is reported at once", Config{Addr: "nope", BasicAuthUser: "prom", TLSKeyFile: keyFile}, "TLS"},
		{"a matching certificate and key", Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, ""},
		{"basic auth with TLS", Config{BasicAuthUser: "prom", BasicAuthPassword: "x", TLSCertFile: certFile, TLSKeyFile: keyFile}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, Handlers{})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("New succeeded, want an error containing %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("New: %v\nwant an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewWarnsAboutNetworksOutsideTheInternalRanges(t *testing.T) {
	var logs logBuffer
	_, err := New(Config{
		AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("0.0.0.0/0")},
		Logger:     newLogger(&logs),
	}, Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "network=0.0.0.0/0") || strings.Contains(got, "10.0.0.0/8") {
		t.Errorf("want one warning naming 0.0.0.0/0 only, got:\n%s", got)
	}
}

func TestAllowlistIsEnforcedOnRealConnections(t *testing.T) {
	tests := []struct {
		name  string
		allow []string
		auth  bool
		want  int
	}{
		{"a loopback client is refused when only 10/8 is allowed", []string{"10.0.0.0/8"}, false, http.StatusForbidden},
		{"the right credentials do not get past the allowlist", []string{"10.0.0.0/8"}, true, http.StatusForbidden},
		{"a loopback client is served when 127/8 is allowed", []string{"127.0.0.0/8"}, false, http.StatusOK},
		{"a loopback client is served by the default allowlist", nil, false, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs logBuffer
			cfg := Config{Logger: newLogger(&logs)}
			for _, c := range tt.allow {
				cfg.AllowCIDRs = append(cfg.AllowCIDRs, netip.MustParsePrefix(c))
			}
			var creds []string
			if tt.auth {
				cfg.BasicAuthUser, cfg.BasicAuthPassword = "prom", "s3cret-pass"
				creds = []string{"prom", "s3cret-pass"}
			}
			addr := start(t, cfg, Handlers{Metrics: metricsText("vigil_up 1\n")})
			c := client(t, nil)

			for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
				r := do(t, c, http.MethodGet, "http://"+addr+path, creds...)
				if r.code != tt.want {
					t.Errorf("GET %s: status %d, want %d (body %q)", path, r.code, tt.want, r.body)
				}
				if tt.want == http.StatusForbidden && strings.Contains(r.body, "vigil_up") {
					t.Errorf("GET %s: a refused client got the metrics: %q", path, r.body)
				}
			}
			// A spoofed forwarding header changes nothing.
			req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
			req.Header.Set("X-Forwarded-For", "10.1.2.3")
			req.Header.Set("X-Real-IP", "10.1.2.3")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("GET /healthz with X-Forwarded-For: status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusForbidden {
				got := logs.String()
				if !strings.Contains(got, "not in the allowlist") || !strings.Contains(got, "127.0.0.1") {
					t.Errorf("want a log line naming the refused peer, got:\n%s", got)
				}
				if strings.Contains(got, "s3cret-pass") {
					t.Errorf("the log holds the password:\n%s", got)
				}
			}
		})
	}
}

func TestEndpoints(t *testing.T) {
	ready := func(ctx context.Context) error { return nil }
	notReady := func(ctx context.Context) error {
		return errors.New("clickhouse 10.0.0.5:9000 not reachable: connection refused")
	}
	reloadOK := func(ctx context.Context) error { return nil }
	reloadBad := func(ctx context.Context) error {
		return errors.New(`/etc/vigil/rules/keys.yaml:12:5: unknown field "treshold"; did you mean "threshold"?`)
	}
	full := Handlers{Metrics: metricsText("vigil_up 1\n"), Ready: ready, Reload: reloadOK}

	tests := []struct {
		name     string
		h        Handlers
		method   string
		path     string
		want     int
		wantBody string // substring of the body
		wantHdr  [2]string
	}{
		{"healthz answers ok", full, "GET", "/healthz", 200, "ok", [2]string{}},
		{"healthz answers HEAD", full, "HEAD", "/healthz", 200, "", [2]string{}},
		{"healthz refuses POST", full, "POST", "/healthz", 405, "use GET", [2]string{"Allow", "GET, HEAD"}},
		{"healthz answers while not ready", Handlers{Ready: notReady}, "GET", "/healthz", 200, "ok", [2]string{}},
		{"readyz answers ready", full, "GET", "/readyz", 200, "ready", [2]string{}},
		{"readyz without a check answers ready", Handlers{}, "GET", "/readyz", 200, "ready", [2]string{}},
		{"readyz answers 503 with the reason", Handlers{Ready: notReady}, "GET", "/readyz", 503, "not ready: clickhouse 10.0.0.5:9000 not reachable", [2]string{}},
		{"metrics serves the handler passed in", full, "GET", "/metrics", 200, "vigil_up 1", [2]string{"Content-Type", "text/plain; version=0.0.4"}},
		{"metrics refuses POST", full, "POST", "/metrics", 405, "", [2]string{"Allow", "GET, HEAD"}},
		{"metrics without a handler is not found", Handlers{}, "GET", "/metrics", 404, "", [2]string{}},
		{"reload refuses GET", full, "GET", "/-/reload", 405, "use POST", [2]string{"Allow", "POST"}},
		{"reload answers 200 on POST", full, "POST", "/-/reload", 200, "reloaded", [2]string{}},
		{"reload answers 500 with the problems", Handlers{Reload: reloadBad}, "POST", "/-/reload", 500, `keys.yaml:12:5: unknown field "treshold"`, [2]string{}},
		{"reload without a handler is not found on POST", Handlers{}, "POST", "/-/reload", 404, "", [2]string{}},
		{"reload without a handler is not found on GET", Handlers{}, "GET", "/-/reload", 404, "", [2]string{}},
		{"an unknown path is not found", full, "GET", "/debug/pprof/", 404, "", [2]string{}},
		{"the root is not found", full, "GET", "/", 404, "", [2]string{}},
		{"a path with a trailing slash is not found", full, "GET", "/healthz/", 404, "", [2]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := start(t, Config{}, tt.h)
			r := do(t, client(t, nil), tt.method, "http://"+addr+tt.path)
			if r.code != tt.want {
				t.Errorf("status %d, want %d (body %q)", r.code, tt.want, r.body)
			}
			if !strings.Contains(r.body, tt.wantBody) {
				t.Errorf("body %q, want it to contain %q", r.body, tt.wantBody)
			}
			if k := tt.wantHdr[0]; k != "" && r.header.Get(k) != tt.wantHdr[1] {
				t.Errorf("header %s = %q, want %q", k, r.header.Get(k), tt.wantHdr[1])
			}
		})
	}
}

func TestReadyCheckHasADeadline(t *testing.T) {
	var deadline atomic.Bool
	addr := start(t, Config{}, Handlers{Ready: func(ctx context.Context) error {
		_, ok := ctx.Deadline()
		deadline.Store(ok)
		return nil
	}})
	do(t, client(t, nil), "GET", "http://"+addr+"/readyz")
	if !deadline.Load() {
		t.Error("the readiness check got a context without a deadline")
	}
}

func TestBasicAuth(t *testing.T) {
	const user, pass = "prom", "s3cret-pass"
	tests := []struct {
		name   string
		method string
		path   string
		auth   []string
		want   int
	}{
		{"the right credentials get the metrics", "GET", "/metrics", []string{user, pass}, 200},
		{"a wrong password is refused", "GET", "/metrics", []string{user, "hunter2"}, 401},
		{"a wrong user is refused", "GET", "/metrics", []string{"admin", pass}, 401},
		{"an empty password is refused", "GET", "/metrics", []string{user, ""}, 401},
		{"missing credentials are refused", "GET", "/metrics", nil, 401},
		{"a reload without credentials is refused", "POST", "/-/reload", nil, 401},
		{"a reload with the right credentials runs", "POST", "/-/reload", []string{user, pass}, 200},
		{"an unknown path without credentials does not reveal it is unknown", "GET", "/nope", nil, 401},
		{"healthz needs no credentials, for probes", "GET", "/healthz", nil, 200},
		{"readyz needs no credentials, for probes", "GET", "/readyz", nil, 200},
	}
	var logs logBuffer
	var reloads atomic.Int32
	addr := start(t, Config{BasicAuthUser: user, BasicAuthPassword: pass, Logger: newLogger(&logs)}, Handlers{
		Metrics: metricsText("vigil_up 1\n"),
		Reload:  func(context.Context) error { reloads.Add(1); return nil },
	})
	c := client(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := reloads.Load()
			r := do(t, c, tt.method, "http://"+addr+tt.path, tt.auth...)
			if r.code != tt.want {
				t.Errorf("status %d, want %d (body %q)", r.code, tt.want, r.body)
			}
			if tt.want == 401 {
				if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Basic ") {
					t.Errorf("WWW-Authenticate = %q, want a Basic challenge", got)
				}
				if reloads.Load() != before {
					t.Error("a refused request ran the reload")
				}
			}
		})
	}
	got := logs.String()
	for _, secret := range []string{pass, "hunter2"} {
		if strings.Contains(got, secret) {
			t.Errorf("the log holds %q:\n%s", secret, got)
		}
	}
	if !strings.Contains(got, "basic auth credentials missing or wrong") {
		t.Errorf("want a log line for refused credentials, got:\n%s", got)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	cert := selfSigned(t, 1)
	certFile, keyFile := writeCert(t, dir, "ops", cert)
	addr := start(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, Handlers{Metrics: metricsText("vigil_up 1\n")})

	trusting := &tls.Config{RootCAs: pool(cert)}
	t.Run("a client trusting the certificate is served over TLS 1.2 or newer", func(t *testing.T) {
		r := do(t, client(t, trusting), "GET", "https://"+addr+"/metrics")
		if r.code != 200 || !strings.Contains(r.body, "vigil_up 1") {
			t.Fatalf("status %d body %q", r.code, r.body)
		}
		if r.tls == nil || r.tls.Version < tls.VersionTLS12 {
			t.Fatalf("connection state %+v, want TLS 1.2 or newer", r.tls)
		}
	})
	t.Run("a client not trusting the certificate fails verification", func(t *testing.T) {
		_, err := client(t, &tls.Config{}).Get("https://" + addr + "/healthz")
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) {
			t.Fatalf("err = %v, want an unknown authority error", err)
		}
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		old := &tls.Config{RootCAs: pool(cert), MaxVersion: tls.VersionTLS11}
		if _, err := client(t, old).Get("https://" + addr + "/healthz"); err == nil {
			t.Fatal("a TLS 1.1 client was served")
		}
	})
	t.Run("plain HTTP gets no answer from the TLS port", func(t *testing.T) {
		resp, err := client(t, nil).Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				t.Fatal("plain HTTP was served on the TLS port")
			}
		}
	})
}

func TestTLSCertificateRotationIsPickedUp(t *testing.T) {
	dir := t.TempDir()
	first, second := selfSigned(t, 1), selfSigned(t, 2)
	certFile, keyFile := writeCert(t, dir, "ops", first)
	addr := start(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile}, Handlers{})
	c := client(t, &tls.Config{RootCAs: pool(first, second)})

	serial := func() int64 {
		t.Helper()
		r := do(t, c, "GET", "https://"+addr+"/healthz")
		return r.tls.PeerCertificates[0].SerialNumber.Int64()
	}
	if got := serial(); got != 1 {
		t.Fatalf("serial %d, want 1", got)
	}
	writeCert(t, dir, "ops", second)
	later := time.Now().Add(time.Minute) // a new mtime even on coarse file systems
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if got := serial(); got != 2 {
		t.Fatalf("after rotation serial %d, want 2", got)
	}

	// A broken file keeps the last good certificate in service.
	if err := os.WriteFile(certFile, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := serial(); got != 2 {
		t.Fatalf("with a broken file serial %d, want the previous 2", got)
	}
}

func TestRunDrainsInFlightRequestsThenReturns(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s, err := New(Config{Addr: "127.0.0.1:0"}, Handlers{Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "vigil_up 1\n")
	})})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	addr := s.Addr()
	c := client(t, nil)

	got := make(chan response, 1)
	go func() {
		resp, err := c.Get("http://" + addr + "/metrics")
		if err != nil {
			got <- response{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- response{code: resp.StatusCode, body: string(b)}
	}()
	<-entered
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if r := <-got; r.code != 200 || r.body != "vigil_up 1\n" {
		t.Errorf("the in-flight request got %d %q, want 200 and its body", r.code, r.body)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Error("the listener still accepts connections after Run returned")
	}
}

func TestRunReturnsAListenErrorAtOnce(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s, err := New(Config{Addr: busy.Addr().String()}, Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "change ops addr") {
			t.Fatalf("Run: %v, want a listen error saying what to do", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return a listen error at once")
	}
	if got := s.Addr(); got != "" {
		t.Errorf("Addr after a failed listen = %q, want empty", got)
	}
}

func TestRunCanBeCalledOnlyOnce(t *testing.T) {
	s, err := New(Config{Addr: "127.0.0.1:0"}, Handlers{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	s.Addr()
	if err := s.Run(ctx); err == nil || !strings.Contains(err.Error(), "called twice") {
		t.Errorf("second Run: %v, want an error", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("first Run: %v", err)
	}
}

// selfSigned returns a self-signed certificate for 127.0.0.1 and localhost
// with the given serial number, and its key.
func selfSigned(t *testing.T, serial int64) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "vigil ops test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// writeCert writes cert and its key as PEM files NAME.crt and NAME.key in
// dir and returns their paths.
func writeCert(t *testing.T, dir, name string, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func pool(certs ...tls.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c.Leaf)
	}
	return p
}
