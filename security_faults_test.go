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

// Faults of signed IDs, sealed copies, TLS and MaxSessions found by an
// adversarial review: each test's comment describes the scenario as it
// failed; the test pins that it holds now.

// faultCopyKeys returns, for the unsigned session ID id (with node part),
// the memcached key of its copy on each of servers (n1, n2, ...): a copy
// on node nX is stored under the key of the ID with node part nX.
func faultCopyKeys(t *testing.T, id string, servers int) []string {
	t.Helper()
	p := mustParseID(t, id)
	keys := make([]string, servers)
	for i := range keys {
		keys[i] = memcacheKey(DefaultKeyPrefix, sessionID{p.random, fmt.Sprint("n", i+1), p.route}.String())
	}
	return keys
}

// faultRewriteHeader decodes blob's envelope, lets edit change it, and
// re-encodes it in front of the untouched (sealed) payload.
func faultRewriteHeader(t *testing.T, blob []byte, edit func(*envelope)) []byte {
	t.Helper()
	env, rest, err := decodeEnvelope(blob, "")
	require.NoError(t, err)
	require.True(t, env.sealed, "the copy is sealed")
	edit(&env)
	return appendEnvelope(nil, env, rest)
}

// TestSealedHeaderLifetimeIsAuthenticated: with Keys, a writer to memcached
// rewrites the clear envelope header of a sealed copy (created = now) and
// a session past its Lifetime is loaded again: the header is not bound to
// the seal (the associated data is the memcached key only).
func TestSealedHeaderLifetimeIsAuthenticated(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", Keys: testKeys(), SyncBackup: true, Lifetime: time.Second}
	a := newInstance(t, cfg)
	br := newBrowser(t)
	checkSet(t, br, a, "user", "ada")
	cookie := br.sessionID(a)
	id := cookie[:len(cookie)-macHexLen-1]
	a.crash()

	time.Sleep(1500 * time.Millisecond) // the session's Lifetime is over
	for i, k := range faultCopyKeys(t, id, len(servers)) {
		blob, found, err := servers[i].Get(k)
		if err != nil || !found {
			continue
		}
		forged := faultRewriteHeader(t, blob, func(e *envelope) { e.created = time.Now() })
		require.NoError(t, servers[i].Set(k, forged, 3600))
	}
	cfg.Route = "b"
	b := newInstance(t, cfg)
	got := mustDo(t, br, b, "GET", "/get?key=user")
	assert.Empty(t, got, "a session past its 1s Lifetime, its sealed copies' clear header rewritten in memcached: must not load (OpenFailures=%d)", b.m.Stats().OpenFailures)
}

// TestSealedHeaderGenerationIsAuthenticated: with Keys, a writer to memcached
// raises the generation in the clear header of an older sealed copy of the
// session and so rolls the session back to it ("role" admin after it was
// set to user).
func TestSealedHeaderGenerationIsAuthenticated(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", Keys: testKeys(), SyncBackup: true}
	a := newInstance(t, cfg)
	br := newBrowser(t)
	checkSet(t, br, a, "role", "admin")
	cookie := br.sessionID(a)
	id := cookie[:len(cookie)-macHexLen-1]
	keys := faultCopyKeys(t, id, len(servers))
	old, found, err := servers[0].Get(keys[0])
	require.True(t, found && err == nil, "the copy on n1")
	checkSet(t, br, a, "role", "user") // generation 2 on both nodes
	a.crash()

	forged := faultRewriteHeader(t, old, func(e *envelope) { e.gen = 99 })
	require.NoError(t, servers[0].Set(keys[0], forged, 3600))
	cfg.Route = "b"
	b := newInstance(t, cfg)
	assert.Equal(t, "user", mustDo(t, br, b, "GET", "/get?key=role"),
		"an old sealed copy replayed with its clear generation raised: must not outrank the newer copy (OpenFailures=%d)", b.m.Stats().OpenFailures)
}

// TestTamperedCookieOnHoldingInstanceIsRejected: the README promises that "a
// forged or tampered ID is rejected before any memcached operation
// (ForgedIDs)". On the instance holding the session, a cookie whose route
// and MAC were changed is served the session, costs memcached gets on
// every request (refresh runs before any MAC check) and is not counted.
func TestTamperedCookieOnHoldingInstanceIsRejected(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a", Keys: testKeys(), SyncBackup: true})
	rec := serveSession(m, "", func(s *Session) { s.Set("user", "ada") })
	cookie := setCookieValue(t, rec.Result().Header)
	id := mustParseID(t, cookie[:len(cookie)-macHexLen-1])
	tampered := sessionID{id.random, id.node, "zz"}.String() + "." + strings.Repeat("0", macHexLen)

	before := serverStats(t, servers)
	var got any
	const requests = 100
	for range requests {
		serveSession(m, DefaultCookieName+"="+tampered, func(s *Session) { got = s.Get("user") })
	}
	after := serverStats(t, servers)
	var ops uint64
	for i := range servers {
		ops += diffOps(before[i], after[i]).total()
	}
	assert.Zero(t, ops, "memcached operations for %d requests with a tampered cookie (route and MAC changed)", requests)
	assert.Equal(t, uint64(requests), m.Stats().ForgedIDs, "Stats().ForgedIDs")
	assert.Nil(t, got, "the session served to a cookie whose MAC does not verify")
}

// TestTLSServerNameForEveryConnection: Config.TLS says "ServerName defaults to
// the node's host". The pipelined sets dial the node's host name, but
// gomemcache (gets, touches, deletes, pings) dials the resolved IP, so
// with a certificate for the host name (the usual case) every get fails
// verification: a session stored over TLS cannot be taken over.
func TestTLSServerNameForEveryConnection(t *testing.T) {
	ca, files := faultHostCA(t, "localhost")
	servers := memcachetest.StartN(t, 2, memcachetest.Options{TLS: &files})
	var nodes []string
	for i, s := range servers {
		_, port, err := net.SplitHostPort(s.TLSAddr())
		require.NoError(t, err)
		nodes = append(nodes, fmt.Sprintf("n%d:localhost:%s", i+1, port))
	}
	cfg := Config{Nodes: strings.Join(nodes, " "), Route: "a", Keys: testKeys(), SyncBackup: true,
		TLS: &tls.Config{RootCAs: ca}, OperationTimeout: time.Second, ProbeInterval: time.Hour}
	a := newInstance(t, cfg)
	br := newBrowser(t)
	checkSet(t, br, a, "user", "ada")
	require.Positive(t, a.m.Stats().CopiesWritten, "copies written over TLS (sets dial \"localhost\")")
	a.crash()

	cfg.Route = "b"
	b := newInstance(t, cfg)
	assert.Equal(t, "ada", mustDo(t, br, b, "GET", "/get?key=user"),
		"a takeover over TLS with a certificate for the node's host name (NodesUp=%d, LoadsError=%d)", b.m.Stats().NodesUp, b.m.Stats().LoadsError)
}

// faultHostCA makes a CA and a server certificate for the DNS name host
// only (no IP address).
func faultHostCA(t *testing.T, host string) (*x509.CertPool, memcachetest.TLSFiles) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "review CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	ca, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
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
	return pool, files
}

// faultDrop takes the session with random part random out of memory as
// makeRoom does under MaxSessions pressure (evictOne samples the map).
func faultDrop(t *testing.T, m *Manager, random string) {
	t.Helper()
	waitIdle(t, m) // a session with a queued touch is not dropped, it would be ended
	for range 10_000 {
		if _, ok := m.sessions.Get(random); !ok {
			return
		}
		m.evictOne()
	}
	t.Fatal("the session was never dropped")
}

// TestReleasedSessionDroppedKeepsChange: a request releases its
// session (Session.Release, documented: "using the session again after
// Release takes it again"); MaxSessions pressure drops it from memory
// (it is safe in memcached); another request of the user loads it again;
// the first request then changes it. entryLocked re-acquires the dropped
// entry, so its change goes to an entry no longer in the map: the user's
// next request does not see it, and one of the two changes is lost.
func TestReleasedSessionDroppedKeepsChange(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a", Keys: testKeys(), SyncBackup: true})
	rec := serveSession(m, "", func(s *Session) { s.Set("n", "1") })
	cookie := DefaultCookieName + "=" + setCookieValue(t, rec.Result().Header)
	serveSession(m, cookie, func(s *Session) { s.Get("n") }) // the client came back
	random := strings.TrimPrefix(cookie, DefaultCookieName+"=")[:randomLen]

	serveSession(m, cookie, func(s *Session) {
		s.Get("n")
		s.Release() // a stream that stays open
		faultDrop(t, m, random)
		serveSession(m, cookie, func(s *Session) { s.Set("other", "x") }) // the user's next tab
		s.Set("n", "2")                                                   // used again after Release
	})
	var n, other any
	serveSession(m, cookie, func(s *Session) { n, other = s.Get("n"), s.Get("other") })
	assert.Equal(t, "2", n, "the change made after Release, once the session was dropped and loaded again")
	assert.Equal(t, "x", other, "the other request's change")
}

// TestLoadedSessionNotDroppedBeforeUse: resolve calls makeRoom after a
// load has put the session in the map but before acquiring it, so the
// session just loaded for a request may be the one dropped ("a session in
// use by a request is never taken"): the request then works on an entry
// that is not in the map, and a concurrent request of the same user loads
// another one; one's change is lost.
func TestLoadedSessionNotDroppedBeforeUse(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a", Keys: testKeys(), SyncBackup: true, MaxSessions: 1})
	rec := serveSession(m, "", func(s *Session) { s.Set("n", "0") })
	cookie := DefaultCookieName + "=" + setCookieValue(t, rec.Result().Header)
	serveSession(m, cookie, func(s *Session) { s.Get("n") })
	random := strings.TrimPrefix(cookie, DefaultCookieName+"=")[:randomLen]

	droppedInUse := 0
	for i := 1; i <= 200 && droppedInUse == 0; i++ {
		faultDrop(t, m, random)
		serveSession(m, cookie, func(s *Session) {
			s.Get("n") // loads it
			if _, ok := m.sessions.Get(random); ok {
				return
			}
			droppedInUse++
			serveSession(m, cookie, func(s *Session) { s.Set("other", "x") }) // the user's next tab
			s.Set("n", "changed")
		})
	}
	require.Zero(t, droppedInUse, "a session loaded for a request was dropped from memory by that request's own makeRoom before it was acquired")
}

// TestRenewIDFloodStaysWithinMaxSessions: a bot flood on a login
// endpoint (create a session, RenewID, never send the cookie back) past
// UnconfirmedBudget leaves one stand-in per RenewID in the session map
// that nothing can evict (removed, not buried) until the next store, which
// never comes for a session waiting for its client: MaxSessions does not
// bound memory, and the README admits only stand-ins of ended sessions
// waiting for a down node.
func TestRenewIDFloodStaysWithinMaxSessions(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	const maxSessions, bots = 50, 2000
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a", Keys: testKeys(), MaxSessions: maxSessions, UnconfirmedBudget: 5})
	for range bots {
		serveSession(m, "", func(s *Session) {
			s.Set("bot", "1")
			s.RenewID() // login
		})
	}
	waitIdle(t, m)
	assert.LessOrEqual(t, m.Stats().LocalSessions, maxSessions, "Stats().LocalSessions after %d bot logins (MaxSessions %d)", bots, maxSessions)
}
