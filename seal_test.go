package mcsession

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestSealedCopiesHoldNoPlaintext pins issue 12's second point: with Keys,
// nothing a session holds is readable in memcached, another instance with
// the same keys takes it over, and a read-only request still costs no
// memcached operation (the unchanged-payload check hashes the plaintext).
func TestSealedCopiesHoldNoPlaintext(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", Keys: [][]byte{key('k')}}
	a := newInstance(t, cfg)
	br := newBrowser(t)
	const secret = "card-4242-4242"
	checkSet(t, br, a, "user", secret)
	mustDo(t, br, a, "POST", "/cart/add?item="+secret)
	waitIdle(t, a.m)

	copies := 0
	for _, s := range servers {
		keys, err := s.Keys()
		require.NoError(t, err, "memcached's keys")
		for _, k := range keys {
			v, found, err := s.Get(k)
			require.NoError(t, err)
			if !found {
				continue
			}
			copies++
			assert.NotContains(t, string(v), secret, "copy under %s: the value in clear", k)
			assert.NotContains(t, string(v), "card", "copy under %s: part of the value in clear", k)
		}
	}
	require.Equal(t, 2, copies, "the session's two copies")

	before := serverStats(t, servers)
	for range 5 {
		mustDo(t, br, a, "GET", "/cart")
	}
	waitIdle(t, a.m)
	after := serverStats(t, servers)
	for i := range servers {
		assert.Zero(t, diffOps(before[i], after[i]).total(), "n%d: memcached operations of reads of a sealed session", i+1)
	}

	a.crash()
	cfg.Route = "b"
	b := newInstance(t, cfg)
	assert.Equal(t, secret, mustDo(t, br, b, "GET", "/get?key=user"), "a sealed session taken over by an instance with the same keys")
	assert.Zero(t, b.m.Stats().OpenFailures, "Stats().OpenFailures")
}

// TestSealedCopyDoesNotOpenElsewhere pins the associated data and the
// checks: a sealed blob moved to another session's key, a tampered one,
// and a copy in clear planted while Keys are set are all misses, counted
// in OpenFailures, never a panic.
func TestSealedCopyDoesNotOpenElsewhere(t *testing.T) {
	mc := memcachetest.Start(t)
	cfg := Config{Nodes: nodesOf(mc), Route: "a", Keys: [][]byte{key('k')}, SyncBackup: true}
	a := newInstance(t, cfg)
	victim := newBrowser(t)
	checkSet(t, victim, a, "user", "ada")
	vid := victim.sessionID(a)
	blob, found, err := mc.Get(memcacheKey(DefaultKeyPrefix, vid[:len(vid)-macHexLen-1]))
	require.True(t, found && err == nil, "the victim's copy")

	cfg.Route = "b"
	b := newInstance(t, cfg)
	tampered := bytes.Clone(blob)
	tampered[len(tampered)-1] ^= 1
	planted, err := GobTranscoder{}.Encode(map[string]any{"user": "mallory"})
	require.NoError(t, err)
	inClear := appendEnvelope(nil, envelope{created: time.Now(), idleTimeout: DefaultIdleTimeout, gen: 1}, planted)
	for name, v := range map[string][]byte{"moved": blob, "tampered": tampered, "in clear": inClear} {
		id := sessionID{newRandom(), "n1", "x"}
		require.NoError(t, mc.Set(memcacheKey(DefaultKeyPrefix, id.String()), v, 3600))
		attacker := newBrowser(t)
		attacker.setSessionID(b, b.m.macs.sign(id.String()))
		assert.Empty(t, mustDo(t, attacker, b, "GET", "/get?key=user"), "%s copy under another session's key: no session", name)
	}
	assert.Equal(t, uint64(3), b.m.Stats().OpenFailures, "Stats().OpenFailures")
}

// TestSealedRotation pins rotation of the sealing keys: an instance with
// {k2, k1} reads a copy sealed with k1 and writes it again sealed with k2;
// an instance with only {k3} cannot open either.
func TestSealedRotation(t *testing.T) {
	mc := memcachetest.Start(t)
	cfg := Config{Nodes: nodesOf(mc), Route: "a", Keys: [][]byte{key(1)}, SyncBackup: true}
	a := newInstance(t, cfg)
	br := newBrowser(t)
	checkSet(t, br, a, "user", "ada")
	a.crash()

	cfg.Route, cfg.Keys = "b", [][]byte{key(2), key(1)}
	b := newInstance(t, cfg)
	assert.Equal(t, "ada", mustDo(t, br, b, "GET", "/get?key=user"), "a k1 copy on an instance with {k2, k1}")
	waitIdle(t, b.m)
	id := br.sessionID(b)
	unsigned := id[:len(id)-macHexLen-1]
	k := memcacheKey(DefaultKeyPrefix, unsigned)
	blob, found, err := mc.Get(k)
	require.True(t, found && err == nil, "the copy written by b")
	env, payload, err := decodeEnvelope(blob, unsigned)
	require.NoError(t, err)
	require.True(t, env.sealed, "b's copy is sealed")
	k2, err := newAEADCopies([][]byte{key(2)})
	require.NoError(t, err)
	_, err = k2.open(k, blob[:len(blob)-len(payload)], payload)
	assert.NoError(t, err, "b's copy opens with k2 alone")
	b.crash()

	cfg.Route, cfg.Keys = "c", [][]byte{key(3)}
	c := newInstance(t, cfg)
	attacker := newBrowser(t)
	attacker.setSessionID(c, c.m.macs.sign(unsigned)) // even a valid MAC under k3
	assert.Empty(t, mustDo(t, attacker, c, "GET", "/get?key=user"), "a k2 copy on an instance with only k3")
	assert.Positive(t, c.m.Stats().OpenFailures, "Stats().OpenFailures on c")
}

// FuzzOpenSealed checks that opening arbitrary bytes never panics and that
// only what was sealed for a key opens for it.
func FuzzOpenSealed(f *testing.F) {
	a, err := newAEADCopies([][]byte{key('k')})
	require.NoError(f, err)
	header := []byte("MCS\x03header")
	f.Add("mcs:k1", header, a.seal(nil, "mcs:k1", header, []byte("payload")))
	f.Add("mcs:k1", header, []byte{})
	f.Add("mcs:k2", header, a.seal(nil, "mcs:k1", header, []byte("payload")))
	f.Add("mcs:k1", []byte("MCS\x03changed"), a.seal(nil, "mcs:k1", header, []byte("payload")))
	f.Fuzz(func(t *testing.T, k string, h, b []byte) {
		p, err := a.open(k, h, b)
		if err != nil {
			require.ErrorIs(t, err, errOpen, "open(%q, %x, %x)", k, h, b)
			return
		}
		// Only a genuine seal opens: sealing again opens to the same.
		again, err := a.open(k, h, a.seal(nil, k, h, p))
		require.NoError(t, err)
		require.Equal(t, p, again)
		require.True(t, strings.HasPrefix(string(b), string(a.keys[0].id[:])), "opened bytes name the key")
	})
}

// BenchmarkSeal4KB measures sealing and opening the payload of a 4 KB
// session (50 cart items), once per copy written or loaded.
func BenchmarkSeal4KB(b *testing.B) {
	a, err := newAEADCopies([][]byte{key('k')})
	require.NoError(b, err)
	payload := bytes.Repeat([]byte("x"), 4096)
	header := []byte("MCS\x03 header of about 20 bytes")
	dst := make([]byte, 0, 4096+64)
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		for b.Loop() {
			dst = a.seal(dst[:0], "mcs:0123456789abcdef0123456789abcdef01234567", header, payload)
		}
	})
	sealed := a.seal(nil, "mcs:k", header, payload)
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.open("mcs:k", header, sealed); err != nil {
				b.Fatal(err)
			}
		}
	})
}
