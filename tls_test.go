package mcsession

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// testCA is a certificate authority made for one test, and the PEM files
// of a certificate it issued for 127.0.0.1.
type testCA struct {
	pool  *x509.CertPool
	files memcachetest.TLSFiles
}

// newTestCA makes a CA and a server certificate for 127.0.0.1, in t's
// temporary directory.
func newTestCA(t *testing.T) testCA {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mcsession test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)

	dir := t.TempDir()
	files := memcachetest.TLSFiles{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	chain := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})...)
	require.NoError(t, os.WriteFile(files.CertFile, chain, 0o600))
	require.NoError(t, os.WriteFile(files.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return testCA{pool: pool, files: files}
}

// tlsNodes returns Config.Nodes for the TLS listeners of servers.
func tlsNodes(servers ...*memcachetest.Server) string {
	var b strings.Builder
	for i, s := range servers {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("n" + string(rune('1'+i)) + ":" + s.TLSAddr())
	}
	return b.String()
}

// TestTLSToMemcached pins Config.TLS against Debian's memcached with -Z: a
// session is stored over TLS (sets, the pipelined batches too) and taken
// over by another instance, and its reads cost nothing as before.
func TestTLSToMemcached(t *testing.T) {
	ca := newTestCA(t)
	servers := memcachetest.StartN(t, 2, memcachetest.Options{TLS: &ca.files})
	cfg := Config{Nodes: tlsNodes(servers...), Route: "a", Keys: testKeys(), TLS: &tls.Config{RootCAs: ca.pool}}
	a := newInstance(t, cfg)
	br := newBrowser(t)
	checkSet(t, br, a, "user", "ada")
	mustDo(t, br, a, "POST", "/cart/add?item=book")
	waitIdle(t, a.m)
	st := a.m.Stats()
	require.Equal(t, 2, st.NodesUp, "nodes up over TLS")
	require.Positive(t, st.CopiesWritten, "copies written over TLS")

	a.crash()
	cfg.Route = "b"
	b := newInstance(t, cfg)
	assert.Equal(t, "ada", mustDo(t, br, b, "GET", "/get?key=user"), "a session taken over through TLS")
	assert.Equal(t, "book", mustDo(t, br, b, "GET", "/cart"), "its cart")
}

// TestTLSHandshakeFailureMarksNodeDown pins that a node whose certificate
// does not verify, or that does not speak TLS, is marked down like one
// that refuses connections, and that this is logged once with the reason.
func TestTLSHandshakeFailureMarksNodeDown(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t) // a CA the servers' certificates are not from
	servers := memcachetest.StartN(t, 2, memcachetest.Options{TLS: &ca.files})
	for name, tt := range map[string]struct {
		nodes  string
		reason string
	}{
		"unknown authority": {tlsNodes(servers...), "certificate signed by unknown authority"},
		"plain server":      {"n1:" + servers[0].Addr() + " n2:" + servers[1].Addr(), "first record does not look like a TLS handshake"},
	} {
		t.Run(name, func(t *testing.T) {
			logs := &logRecorder{}
			m := newTestManager(t, Config{Nodes: tt.nodes, Route: "a", TLS: &tls.Config{RootCAs: other.pool},
				Keys: testKeys(), Logger: slog.New(logs), OperationTimeout: time.Second, ProbeInterval: time.Hour})
			for range 3 {
				serveSession(m, "", func(s *Session) { s.Set("user", "ada") })
			}
			waitIdleOrDown(t, m)
			assert.Zero(t, m.Stats().NodesUp, "nodes up after failed handshakes")
			var down []string
			for _, r := range logs.take() {
				if r.level >= slog.LevelError && strings.Contains(r.msg, "node down") {
					down = append(down, fmt.Sprint(r.attrs["err"]))
				}
			}
			assert.Len(t, down, 2, "node-down errors: one per node, logged once: %q", down)
			for _, reason := range down {
				assert.Contains(t, reason, tt.reason, "the logged reason")
			}
		})
	}
}

// waitIdleOrDown waits until every node of m is down.
func waitIdleOrDown(t *testing.T, m *Manager) {
	t.Helper()
	eventually(t, 5*time.Second, "the nodes were not marked down", func() bool { return m.Stats().NodesUp == 0 })
}
