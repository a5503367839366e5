package ingest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/vigil-sec/vigil/event"
)

// TLS and SASL settings reach every connection the package opens: the
// group reader's, the dead-letter writer's and the admin client's (topic
// check, Commit, Lag). devbroker has neither, so this uses kfake directly.
func TestTLSAndSASL(t *testing.T) {
	serverTLS, clientTLS := selfSignedTLS(t)
	cases := []struct {
		name      string
		tls       bool
		kfakeMech string // "" = no SASL
		mech      string
		password  string // what the client sends; the broker knows "secret"
		wantErr   string
	}{
		{name: "plain", kfakeMech: "PLAIN", mech: "plain", password: "secret"},
		{name: "scram-sha-256", kfakeMech: "SCRAM-SHA-256", mech: "scram-sha-256", password: "secret"},
		{name: "scram-sha-512", kfakeMech: "SCRAM-SHA-512", mech: "scram-sha-512", password: "secret"},
		{name: "tls", tls: true},
		{name: "tls and scram-sha-512", tls: true, kfakeMech: "SCRAM-SHA-512", mech: "scram-sha-512", password: "secret"},
		{name: "wrong password", kfakeMech: "SCRAM-SHA-256", mech: "scram-sha-256", password: "wrong", wantErr: "unexpected EOF"}, // kfake hangs up,
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log := testLogger(t)
			opts := []kfake.Opt{
				kfake.NumBrokers(1),
				kfake.SeedTopics(2, "in"),
				kfake.GroupMinSessionTimeout(100 * time.Millisecond),
			}
			if tc.tls {
				opts = append(opts, kfake.TLS(serverTLS))
			}
			if tc.kfakeMech != "" {
				opts = append(opts, kfake.EnableSASL(), kfake.Superuser(tc.kfakeMech, "vigil", "secret"))
			}
			cluster, err := kfake.NewCluster(opts...)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cluster.Close)

			cfg := testConfig(t, cluster.ListenAddrs()[0], "g-sec", map[string]event.Source{"in": event.Audit})
			cfg.Logger = log
			if tc.tls {
				cfg.TLS = clientTLS
			}
			cfg.SASLMechanism, cfg.SASLUser, cfg.SASLPassword = tc.mech, "vigil", tc.password

			if tc.wantErr != "" {
				c, err := NewConsumer(cfg)
				if err == nil {
					c.Close()
					t.Fatal("NewConsumer succeeded with a wrong password")
				}
				if !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %q does not mention %q", err, tc.wantErr)
				}
				return
			}

			// The dead-letter writer doubles as the producer here.
			wcfg := cfg
			wcfg.DeadLetterTopic = "in"
			w, err := NewDeadLetterWriter(wcfg)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if err := w.Write(ctx, []DeadLetter{{Msg: Message{Source: event.Audit, Topic: "x", Key: []byte("k"), Value: []byte(`{"a":1}`)}, Reason: "test"}}); err != nil {
				t.Fatal(err)
			}

			c := newConsumer(t, cfg)
			m, err := c.Fetch(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if string(m.Value) != `{"a":1}` || m.Source != event.Audit {
				t.Fatalf("fetched %+v", m)
			}
			c.MarkStored(m)
			if err := c.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			lag, err := c.Lag(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if lag["in"][m.Partition] != 0 || len(lag["in"]) != 2 {
				t.Fatalf("Lag() = %v", lag)
			}
		})
	}
}

// selfSignedTLS returns a server config with a self-signed certificate for
// 127.0.0.1 and a client config that trusts it.
func selfSignedTLS(t *testing.T) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kfake"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}},
		&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
