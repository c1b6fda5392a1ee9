package mcsession

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestTakeoverAfterInstanceCrash proves that when the instance owning a
// session dies without a Shutdown, another instance sharing the memcached
// nodes serves the session with every value, moves it to its own route
// under the same random part, and replaces the old memcached key with the
// new one.
func TestTakeoverAfterInstanceCrash(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: opTimeout}
	a := newAppInstance(t, cfg, typedApp())
	cfg.Route = "b"
	b := newAppInstance(t, cfg, typedApp())

	br := newBrowser(t)
	mustDo(t, br, a, "POST", "/typed")
	mustDo(t, br, a, "POST", "/set?key=user&value=alice")
	mustDo(t, br, a, "POST", "/set?key=gone&value=1")
	mustDo(t, br, a, "POST", "/delete?key=gone")
	// /cart/add changes the cart after Set or Get: no backup may be
	// encoding it meanwhile.
	waitIdle(t, a.m)
	mustDo(t, br, a, "POST", "/cart/add?item=x")
	waitIdle(t, a.m)
	mustDo(t, br, a, "POST", "/cart/add?item=y")
	waitIdle(t, a.m)
	oldID := br.sessionID(a)
	oldSID, ok := parseID(oldID, true)
	require.True(t, ok, "parseID(%q) = _, false, want the ID instance a gave", oldID)
	require.Equal(t, "a", oldSID.route, "route of session ID %q from instance a", oldID)
	home := serverOf(t, servers, oldSID.node)
	a.crash()

	// The first request through b takes the session over.
	assert.Equal(t, "bool,cart,float,int,str,time,user", mustDo(t, br, b, "GET", "/keys"),
		"GET /keys through b after a crashed: every key set through a must survive")
	newID := br.sessionID(b)
	assert.Equal(t, oldSID.random+"."+oldSID.node+".b", newID,
		"session ID after takeover: same random part and node, route b")
	for _, r := range []struct{ path, want string }{
		{"/typed", typedBody},
		{"/get?key=user", "alice"},
		{"/get?key=gone", ""},
		{"/cart", "x,y"},
	} {
		assert.Equal(t, r.want, mustDo(t, br, b, "GET", r.path),
			"GET %s through b after takeover: the value must be what a last stored", r.path)
	}
	waitIdle(t, b.m)
	takeovers := b.m.Stats().Takeovers
	assert.Equal(t, uint64(1), takeovers, "Stats().Takeovers on b = %d, want 1 after it loaded a's session", takeovers)

	oldKey, newKey := memcacheKey(DefaultKeyPrefix, oldID), memcacheKey(DefaultKeyPrefix, newID)
	keys, err := home.Keys()
	require.NoError(t, err, "Keys() of the node of %s", oldID)
	assert.NotContains(t, keys, oldKey, "keys on the node of %s after the takeover: the old key must be deleted", oldID)
	assert.Contains(t, keys, newKey, "keys on the node of %s after the takeover: the session must be stored under its new ID", oldID)
	want := typedValues()
	want["user"] = "alice"
	want["cart"] = &cart{Items: []string{"x", "y"}}
	if !holdsLatest(t, servers, newID, want) {
		got, _ := storedSession(t, home, newID)
		assert.Fail(t, "backup after takeover", "backup of %s = %s, want %s", newID, jsonString(got), jsonString(want))
	}
}

// TestTakeoverConcurrentRequestsShareOneLoad proves that concurrent
// requests for one session that an instance does not hold cause a single
// get: the node is paused until every request but the loading one waits for
// the shared load, so a second get could not be avoided by luck of timing.
func TestTakeoverConcurrentRequestsShareOneLoad(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: opTimeout}
	a := newInstance(t, cfg)
	cfg.Route = "b"
	cfg.OperationTimeout = 3 * time.Second // the node stays paused while the requests gather
	b := newInstance(t, cfg)

	br := newBrowser(t)
	mustDo(t, br, a, "POST", "/set?key=user&value=alice")
	waitIdle(t, a.m)
	oldID := br.sessionID(a)
	home := serverOf(t, servers, mustParseID(t, oldID).node)
	a.crash()
	before := serverStats(t, servers)

	home.Pause()
	t.Cleanup(home.Resume)
	const n = 20
	bodies := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		c := newBrowser(t)
		c.setSessionID(b, oldID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// assert, not require: this is not the test's goroutine.
			code, body := c.do(b, "GET", "/get?key=user")
			assert.Equal(t, http.StatusOK, code, "request %d: GET /get?key=user = %d %q, want 200", i, code, body)
			bodies[i] = body
		}()
	}
	eventually(t, 2*time.Second, "the concurrent requests did not all reach the session load", func() bool {
		return replicaOf(b.m).flights.Waiters(oldID[:randomLen]) == n-1
	})
	// The get sent by the first request cannot be answered before Resume.
	require.True(t, home.Paused(), "the session's node must still be paused while the requests gather")
	home.Resume()
	wg.Wait()

	for i, body := range bodies {
		assert.Equal(t, "alice", body, "request %d for the taken-over session: every request must see the loaded session", i)
	}
	after := serverStats(t, servers)
	for i := range servers {
		d := diffOps(before[i], after[i])
		// Each node holds one of the session's two copies: one load reads both.
		assert.Equal(t, uint64(1), d.gets,
			"%d concurrent requests for one missing session: node n%d served %d gets, want 1 (%v); concurrent loads must share one load of its two copies", n, i+1, d.gets, d)
	}
	st := b.m.Stats()
	assert.Equal(t, uint64(1), st.LoadsHit, "Stats().LoadsHit on b = %d, want 1: one shared load", st.LoadsHit)
	assert.Equal(t, uint64(1), st.Takeovers, "Stats().Takeovers on b = %d, want 1: one session taken over", st.Takeovers)
}
