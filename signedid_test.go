package mcsession

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// key returns a 32-byte test key made of b.
func key(b byte) []byte { return bytes.Repeat([]byte{b}, minKeyLen) }

// TestForgedSignedIDsCostNothing pins issue 12's first point: with Keys,
// 10,000 distinct forged but well-formed IDs cost no memcached operation
// (without Keys each cost one get per node: 20,000 on 2 nodes), and each
// is counted and its cookie removed.
func TestForgedSignedIDsCostNothing(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a", Keys: [][]byte{key('k')}})
	before := serverStats(t, servers)
	const forged = 10_000
	for i := range forged {
		id := fmt.Sprintf("%032x.n%d.a.%032x", i, 1+i%2, i*7919)
		rec := serveSession(m, DefaultCookieName+"="+id, func(s *Session) { s.Get("user") })
		if i == 0 {
			c := setCookies(t, rec.Result().Header, DefaultCookieName)
			require.Len(t, c, 1, "a forged cookie: removed")
			assert.Empty(t, c[0].Value, "a forged cookie: removed")
		}
	}
	after := serverStats(t, servers)
	for i := range servers {
		assert.Zero(t, diffOps(before[i], after[i]).total(), "memcached operations on n%d for %d forged IDs", i+1, forged)
	}
	assert.Equal(t, uint64(forged), m.Stats().ForgedIDs, "Stats().ForgedIDs")
}

// TestSignedIDTakeoverAndTampering pins that a signed ID is taken over by
// another instance with the same keys, and that one whose MAC, node or
// route was changed is rejected there without a lookup.
func TestSignedIDTakeoverAndTampering(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", Keys: [][]byte{key('k')}, SyncBackup: true}
	a := newInstance(t, cfg)
	br := newBrowser(t)
	checkSet(t, br, a, "user", "ada")
	signed := br.sessionID(a)
	require.Equal(t, 3, strings.Count(signed, "."), "a signed cookie %q: <random>.<node>.<route>.<mac>", signed)
	require.Len(t, signed[strings.LastIndexByte(signed, '.')+1:], macHexLen, "the MAC of %q", signed)
	assert.Equal(t, signed, mustDo(t, br, a, "GET", "/id"), "Session.ID(): the cookie's value")

	cfg.Route = "b"
	b := newInstance(t, cfg)
	last := len(signed) - 1
	flipped := signed[:last] + string("0123456789abcdef"[(strings.IndexByte("0123456789abcdef", signed[last])+1)%16])
	unsigned := signed[:len(signed)-macHexLen-1]
	moved := strings.Replace(unsigned, ".n", ".x", 1) // another node part, same MAC
	for name, bad := range map[string]string{"flipped MAC": flipped, "unsigned": unsigned, "other node": moved + signed[len(unsigned):]} {
		attacker := newBrowser(t)
		attacker.setSessionID(b, bad)
		assert.Empty(t, mustDo(t, attacker, b, "GET", "/get?key=user"), "%s cookie %q on another instance: no session", name, bad)
	}
	assert.Equal(t, uint64(2), b.m.Stats().ForgedIDs, "Stats().ForgedIDs on b: the well-formed tampered ones (the unsigned one does not parse)")
	assert.Equal(t, "ada", mustDo(t, br, b, "GET", "/get?key=user"), "the real cookie on another instance: taken over")
	taken := br.sessionID(b)
	assert.True(t, strings.HasSuffix(taken[:len(taken)-macHexLen-1], ".b"), "the cookie after the takeover, signed for route b: %q", taken)
}

// TestKeyRotation pins rotation: an instance with {k2, k1} takes over a
// session signed with k1 and signs its new ID with k2; an instance with
// only {k3} cannot use either.
func TestKeyRotation(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", Keys: [][]byte{key(1)}, SyncBackup: true}
	a := newInstance(t, cfg)
	br := newBrowser(t)
	checkSet(t, br, a, "user", "ada")
	old := br.sessionID(a)

	cfg.Route, cfg.Keys = "b", [][]byte{key(2), key(1)}
	b := newInstance(t, cfg)
	assert.Equal(t, "ada", mustDo(t, br, b, "GET", "/get?key=user"), "a k1 cookie on an instance with {k2, k1}")
	renewed := br.sessionID(b)
	k2, err := newHMACIDs([][]byte{key(2)})
	require.NoError(t, err)
	assert.True(t, k2.verify(renewed), "the new cookie %q is signed with k2", renewed)

	cfg.Route, cfg.Keys = "c", [][]byte{key(3)}
	c := newInstance(t, cfg)
	for _, id := range []string{old, renewed} {
		attacker := newBrowser(t)
		attacker.setSessionID(c, id)
		assert.Empty(t, mustDo(t, attacker, c, "GET", "/get?key=user"), "cookie %q on an instance with only k3", id)
	}
}

// TestUnsignedIDsWithKeysAreNoSession pins that IDs issued before Keys
// were set do not parse: no session, no lookup.
func TestUnsignedIDsWithKeysAreNoSession(t *testing.T) {
	mc := memcachetest.Start(t)
	plain := newTestManager(t, Config{Nodes: nodesOf(mc), Route: "a", Keys: nil, Logger: testLogger(t)})
	rec := serveSession(plain, "", func(s *Session) { s.Set("user", "ada") })
	id := setCookieValue(t, rec.Result().Header)
	waitIdle(t, plain)

	signed := newTestManager(t, Config{Nodes: nodesOf(mc), Route: "b", Keys: [][]byte{key('k')}})
	before := serverStats(t, []*memcachetest.Server{mc})
	var got any
	serveSession(signed, DefaultCookieName+"="+id, func(s *Session) { got = s.Get("user") })
	assert.Nil(t, got, "an unsigned ID %q on a Manager with Keys: no session", id)
	assert.Zero(t, diffOps(before[0], serverStats(t, []*memcachetest.Server{mc})[0]).total(), "memcached operations for it")
}

// TestShortKeyIsAConfigError pins the key length check.
func TestShortKeyIsAConfigError(t *testing.T) {
	_, err := New(Config{Keys: [][]byte{key('k'), []byte("short")}})
	var ce *ConfigError
	require.True(t, errors.As(err, &ce), "New with a 5-byte key: %v, want a *ConfigError", err)
	assert.Equal(t, "Keys", ce.Field, "the field named")
}

// TestSignedIDsInProcess pins that an in-process Manager signs its IDs too
// and finds its sessions by them.
func TestSignedIDsInProcess(t *testing.T) {
	m := newTestManager(t, Config{Keys: [][]byte{key('k')}})
	rec := serveSession(m, "", func(s *Session) { s.Set("user", "ada") })
	id := setCookieValue(t, rec.Result().Header)
	require.Len(t, id, randomLen+1+macHexLen, "an in-process signed ID %q: <random>.<mac>", id)
	var got any
	serveSession(m, DefaultCookieName+"="+id, func(s *Session) { got = s.Get("user") })
	assert.Equal(t, "ada", got, "the session by its signed cookie")
}

// FuzzSignedID checks that splitting and verifying any cookie value never
// panics, and that whatever verifies is exactly what was signed.
func FuzzSignedID(f *testing.F) {
	h, err := newHMACIDs([][]byte{key('k'), key('j')})
	require.NoError(f, err)
	j, err := newHMACIDs([][]byte{key('j')})
	require.NoError(f, err)
	f.Add(h.sign(testRandom + ".n1.a"))
	f.Add(testRandom + ".n1.a")
	f.Add("." + strings.Repeat("0", macHexLen))
	f.Add(testRandom + "." + strings.Repeat("g", macHexLen))
	f.Fuzz(func(t *testing.T, v string) {
		id, ok := h.split(v)
		if !ok {
			assert.False(t, h.verify(v), "verify(%q) of a value split rejects", v)
			return
		}
		require.Equal(t, v[:len(id)], id, "split(%q) returns a prefix", v)
		if h.verify(v) {
			require.True(t, v == h.sign(id) || v == j.sign(id), "verify(%q) holds only for what one of the keys signs", v)
		}
		if h.verify(v) {
			_, err := hex.DecodeString(v[len(id)+1:])
			require.NoError(t, err, "verify(%q) accepted a MAC that is not hex", v)
		}
	})
}
