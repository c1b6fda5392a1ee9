package mcsession

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// Faults of the two copies found by an adversarial review: each test
// describes the scenario as it failed, and pins that it holds now.

// faultConfig is a Config with short intervals for these tests.
func faultConfig(route string, servers ...*memcachetest.Server) Config {
	return Config{
		Nodes:            nodesOf(servers...),
		Route:            route,
		SyncBackup:       true,
		ProbeInterval:    20 * time.Millisecond,
		RetryInterval:    50 * time.Millisecond,
		OperationTimeout: 300 * time.Millisecond,
	}
}

// TestTakeoverRemembersCopyOnHungNode: a takes a session (copies on n1
// and n2), dies; n2 is hung at that moment. b takes the session over from
// n1's copy; the copy on n2 did not answer, so b never learns of it, never
// deletes it, and no tombstone covers it. The user logs out on b. When n2
// comes back, the logged-out cookie loads the session again, on b itself.
func TestTakeoverRemembersCopyOnHungNode(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newInstance(t, faultConfig("a", servers...))
	br := newSessionOn(t, a, "n1", "user", "ada")
	stolen := br.sessionID(a)
	second := mustParseID(t, stolen)
	second.node = "n2"
	require.True(t, isStored(t, servers[1], second.String()), "the second copy on n2")

	servers[1].Pause()
	t.Cleanup(servers[1].Resume)
	a.crash()
	b := newInstance(t, faultConfig("b", servers...))
	checkGet(t, br, b, "user", "ada") // takeover from n1; n2 times out
	require.Contains(t, br.sessionID(b), ".b", "the cookie after b took the session over")
	mustDo(t, br, b, "POST", "/invalidate")

	servers[1].Resume()
	eventually(t, 5*time.Second, "b sees n2 up again", func() bool { return nodesUp(b.m) == 2 })
	attacker := newBrowser(t)
	attacker.setSessionID(b, stolen)
	assert.Empty(t, mustDo(t, attacker, b, "GET", "/get?key=user"),
		"the pre-takeover cookie %s after the user logged out on b: the copy on n2 (hung during the takeover) is loaded", stolen)
}

// TestTombstoneReadWithOneCopy: with one copy kept (Copies: 1, or a
// single primary with failover nodes), a logout while the session's node is
// hung writes the tombstone on the next node, but a load stops at the
// first copy it finds (hits >= ns.copies), so once the node comes back and
// the instance is dead the logged-out session loads again.
func TestTombstoneReadWithOneCopy(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  func(servers []*memcachetest.Server) Config
	}{
		{"Copies 1", func(servers []*memcachetest.Server) Config {
			cfg := faultConfig("a", servers...)
			cfg.Copies = 1
			return cfg
		}},
		{"one primary and a failover node", func(servers []*memcachetest.Server) Config {
			cfg := faultConfig("a", servers...)
			cfg.FailoverNodes = "n2"
			return cfg
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			servers := memcachetest.StartN(t, 2)
			cfg := tt.cfg(servers)
			a := newInstance(t, cfg)
			br := newSessionOn(t, a, "n1", "user", "ada")
			id := br.sessionID(a)
			hung := servers[0]
			hung.Pause()
			t.Cleanup(hung.Resume)
			replicaOf(a.m).cluster.failed(replicaOf(a.m).cluster.load().byID["n1"], errTimeoutForTest{})
			mustDo(t, br, a, "POST", "/invalidate")
			require.Equal(t, uint64(1), a.m.Stats().Tombstones, "Stats().Tombstones on a: the logout wrote a tombstone")
			a.crash()
			hung.Resume()
			require.True(t, isStored(t, hung, id), "the old copy is back with n1")

			cfg.Route = "b"
			b := newInstance(t, cfg)
			attacker := newBrowser(t)
			attacker.setSessionID(b, id)
			assert.Empty(t, mustDo(t, attacker, b, "GET", "/get?key=user"),
				"the logged-out ID %s after the logout with n1 hung and the instance dead", id)
		})
	}
}

// TestLogoutElsewhereAfterTakeoverBack: the session starts on b, a
// takes it over (a's entry remembers takenFrom "b"), the user goes back to
// b (failback: b adopts a's newer copy) and logs out there. The original
// b cookie replayed to a finds nothing in memcached, but refresh treats a
// cookie of the route a took the session from as "client has not seen
// a's cookie yet" and keeps serving the logged-out session.
func TestLogoutElsewhereAfterTakeoverBack(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newInstance(t, faultConfig("a", servers...))
	b := newInstance(t, faultConfig("b", servers...))
	br := newBrowser(t)
	checkSet(t, br, b, "user", "ada")
	stolen := br.sessionID(b)
	checkSet(t, br, a, "user", "ada2") // a takes it over
	require.Contains(t, br.sessionID(a), ".a", "the cookie after a took the session over")
	checkGet(t, br, b, "user", "ada2") // failback: b serves a's newer copy
	require.Contains(t, br.sessionID(b), ".b", "the cookie after the failback to b")
	mustDo(t, br, b, "POST", "/invalidate")
	require.Empty(t, br.sessionID(b), "the cookie is removed by the logout")

	attacker := newBrowser(t)
	attacker.setSessionID(a, stolen)
	assert.Empty(t, mustDo(t, attacker, a, "GET", "/get?key=user"),
		"the session's first cookie %s, replayed to a after the user logged out on b", stolen)
}

// TestSetNodesMovesSecondCopy: SetNodes gives the node of a
// session's second copy a new address (a new, empty server). setNodes
// rewrites only the sessions whose home moved; e.stored still says the
// second copy is on that node, so it is never written there, and the
// session is lost when its instance and its home node die together.
func TestSetNodesMovesSecondCopy(t *testing.T) {
	servers := memcachetest.StartN(t, 3)
	cfg := faultConfig("a", servers[:2]...)
	a := newInstance(t, cfg)
	br := newSessionOn(t, a, "n1", "user", "ada")
	id := mustParseID(t, br.sessionID(a))
	second := id
	second.node = "n2"
	require.True(t, isStored(t, servers[1], second.String()), "the second copy on n2 before SetNodes")

	moved := fmt.Sprintf("n1:%s n2:%s", servers[0].Addr(), servers[2].Addr())
	require.NoError(t, a.m.SetNodes(moved, ""))
	time.Sleep(300 * time.Millisecond) // the rescue and retry loop run
	waitIdle(t, a.m)
	checkGet(t, br, a, "user", "ada")
	waitIdle(t, a.m)
	assert.True(t, isStored(t, servers[2], second.String()),
		"the second copy on n2's new server after SetNodes moved n2 (still at its old server: %v)", isStored(t, servers[1], second.String()))

	a.crash()
	servers[0].Kill()
	cfg.Nodes = moved
	cfg.Route = "b"
	b := newInstance(t, cfg)
	checkGet(t, br, b, "user", "ada")
}

// TestTombstoneUnderCopiesRoute: b takes a session over and loads
// both of a's copies (route a keys); n2 hangs before b's first store, so
// the delete of a's copy on n2 is deferred. The user logs out on b: the
// tombstone is written under b's route, which no load of the old cookie
// (route a) ever asks. b dies before n2 is back; n2 brings back a's copy
// and the old cookie loads the logged-out session.
func TestTombstoneUnderCopiesRoute(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newInstance(t, faultConfig("a", servers...))
	br := newSessionOn(t, a, "n1", "user", "ada")
	stolen := br.sessionID(a)
	a.crash()

	hung := servers[1]
	t.Cleanup(hung.Resume)
	app := testApp()
	b := newAppInstance(t, faultConfig("b", servers...), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/takeover" {
			v, _ := Get[string](FromContext(r.Context()), "user") // loads both copies
			hung.Pause()                                          // n2 hangs before the store
			io.WriteString(w, v)
			return
		}
		app.ServeHTTP(w, r)
	}))
	require.Equal(t, "ada", mustDo(t, br, b, "GET", "/takeover"))
	mustDo(t, br, b, "POST", "/invalidate")
	require.Empty(t, br.sessionID(b), "the cookie is removed by the logout")
	require.Equal(t, uint64(1), b.m.Stats().Tombstones, "Stats().Tombstones on b: the logout wrote a tombstone (under route b)")
	b.crash()
	hung.Resume()

	c := newInstance(t, faultConfig("c", servers...))
	attacker := newBrowser(t)
	attacker.setSessionID(c, stolen)
	assert.Empty(t, mustDo(t, attacker, c, "GET", "/get?key=user"),
		"the pre-takeover cookie %s after the logout on b with n2 hung, b dead, n2 back", stolen)
}

// TestLeftCopiesClearedWhenDeleted: entry.left (then a flag) was set when a delete
// of a copy is deferred (its node down) and never cleared, so once a
// session had one deferred delete, every later Invalidate or RenewID
// writes a tombstone (a set in the request, counted in Stats.Tombstones)
// although every node is up and every copy was deleted.
func TestLeftCopiesClearedWhenDeleted(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newInstance(t, faultConfig("a", servers...))
	br := newSessionOn(t, a, "n1", "user", "ada")
	r := replicaOf(a.m)
	r.cluster.failed(r.cluster.load().byID["n2"], errTimeoutForTest{}) // n2 down for a moment
	mustDo(t, br, a, "POST", "/renew")                                 // the delete on n2 is deferred: a tombstone
	require.Equal(t, uint64(1), a.m.Stats().Tombstones, "Stats().Tombstones after RenewID with n2 down")
	eventually(t, 5*time.Second, "n2 up again", func() bool { return nodesUp(a.m) == 2 })
	checkSet(t, br, a, "user", "grace")
	waitIdle(t, a.m)
	time.Sleep(200 * time.Millisecond) // the deferred delete has run
	before := serverStats(t, servers)
	mustDo(t, br, a, "POST", "/invalidate") // every node up, every copy deletable
	after := serverStats(t, servers)
	var sets uint64
	for i := range servers {
		sets += diffOps(before[i], after[i]).sets
	}
	assert.Equal(t, uint64(1), a.m.Stats().Tombstones, "Stats().Tombstones after an Invalidate with every node up")
	assert.Zero(t, sets, "memcached sets during an Invalidate with every node up")
}
