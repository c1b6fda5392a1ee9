package mcsession

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestMemcachedHoldsNoSessionID pins the promise that a dump of memcached
// reveals no usable session ID: neither its keys nor its values contain a
// session's ID, its random part, or the random part's raw bytes. (Before
// envelope version 2 every stored value carried its whole ID in clear.)
func TestMemcachedHoldsNoSessionID(t *testing.T) {
	mc := memcachetest.Start(t)
	cfg := Config{Nodes: nodesOf(mc), Route: "app1", SyncBackup: true}
	a := newInstance(t, cfg)
	cfg.Route = "app2"
	b := newInstance(t, cfg)

	var ids []string
	for range 3 {
		br := newBrowser(t)
		code, _ := br.do(a, http.MethodPost, "/set?key=user&value=alice")
		require.Equal(t, http.StatusOK, code, "POST /set: the session must be created")
		ids = append(ids, br.sessionID(a))
		br.do(a, http.MethodPost, "/cart/add?item=book")
		br.do(a, http.MethodPost, "/renew") // stored again under a new ID
		ids = append(ids, br.sessionID(a))
		br.do(b, http.MethodPost, "/set?key=seen&value=b") // a takeover by b: stored under b's route
		ids = append(ids, br.sessionID(b))
	}
	waitIdle(t, a.m)
	waitIdle(t, b.m)

	keys, err := mc.Keys()
	require.NoError(t, err, "list memcached's keys")
	require.NotEmpty(t, keys, "memcached must hold the sessions' copies")
	for _, key := range keys {
		value, found, err := mc.Get(key)
		require.NoError(t, err, "get %q", key)
		if !found {
			continue // deleted between the listing and the get
		}
		for _, id := range ids {
			require.NotEmpty(t, id, "every request must have left a session cookie")
			random := id[:randomLen]
			raw, err := hex.DecodeString(random)
			require.NoError(t, err, "the random part %q is hex", random)
			for _, secret := range [][]byte{[]byte(id), []byte(random), raw} {
				assert.False(t, strings.Contains(key, string(secret)),
					"memcached key %q contains %q of session %s: a key dump must reveal no session ID", key, secret, id)
				assert.False(t, bytes.Contains(value, secret),
					"memcached value under %q contains %q of session %s: a value dump must reveal no session ID", key, secret, id)
			}
		}
	}
}

// TestVersion1CopyIsWrittenBack pins that a copy in the old format, which
// holds the ID in clear, is replaced by the current format once loaded,
// even when the loading instance keeps the ID (same route) and the session
// is only read: a rolling deploy must not leave IDs in memcached.
func TestVersion1CopyIsWrittenBack(t *testing.T) {
	mc := memcachetest.Start(t)
	in := newInstance(t, Config{Nodes: nodesOf(mc), Route: "app1"})
	id := newRandom() + ".n1.app1"
	payload, err := in.m.encode(valuesOf(map[string]any{"user": "alice"}))
	require.NoError(t, err, "encode the planted session")
	key := memcacheKey(DefaultKeyPrefix, id)
	env := envelope{created: time.Now(), idleTimeout: DefaultIdleTimeout}
	require.NoError(t, mc.Set(key, appendEnvelopeV1(nil, env, id, payload), 3600), "plant a version 1 copy")

	br := newBrowser(t)
	br.setSessionID(in, id)
	require.Equal(t, "alice", mustDo(t, br, in, http.MethodGet, "/get?key=user"), "GET with the version 1 copy's ID: loaded")
	require.Equal(t, id, br.sessionID(in), "same route: the ID is kept")
	waitIdle(t, in.m)
	blob, found, err := mc.Get(key)
	require.NoError(t, err, "get the copy")
	require.True(t, found, "the copy under %s after the load", id)
	assert.Equal(t, byte(envelopeVersion), blob[len(envelopeMagic)], "format version of the copy after a load: rewritten as the current one")
	assert.NotContains(t, string(blob), id[:randomLen], "the copy after a load must not hold the random part")
}
