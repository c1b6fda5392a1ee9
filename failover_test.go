package mcsession

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// Failover tests: memcached nodes that die, hang, restart or are replaced,
// against real memcached processes. Intervals are short so each test takes
// a second or two.

// failoverConfig returns a Config for servers (nodes n1, n2, ... as nodesOf
// names them) with the short intervals these tests rely on.
func failoverConfig(route string, servers ...*memcachetest.Server) Config {
	return Config{
		Nodes:            nodesOf(servers...),
		Route:            route,
		ProbeInterval:    50 * time.Millisecond,
		RetryInterval:    50 * time.Millisecond,
		OperationTimeout: 200 * time.Millisecond,
	}
}

// localID returns the current ID of m's session with random part random,
// or "" if m does not hold it.
func localID(m *Manager, random string) string {
	e, ok := m.sessions.Get(random)
	if !ok {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.id
}

// nodesUp returns m's Stats().NodesUp.
func nodesUp(m *Manager) int { return m.Stats().NodesUp }

// checkGet fails the test unless GET /get?key=key on in answers 200 want.
func checkGet(t testing.TB, br *browser, in *instance, key, want string) {
	t.Helper()
	code, body := br.do(in, "GET", "/get?key="+key)
	require.Equal(t, http.StatusOK, code, "GET /get?key=%s = %d %q, want 200", key, code, body)
	require.Equal(t, want, body, "GET /get?key=%s = %q, want %q", key, body, want)
}

// checkStored fails the test unless s holds the backup of id, and reports
// every value of want that the backup does not hold as a string.
func checkStored(t testing.TB, s *memcachetest.Server, id string, want map[string]string) {
	t.Helper()
	values, found := storedSession(t, s, id)
	require.True(t, found, "raw get of the key of %s on %s: not found, want the session's backup", id, s.Addr())
	for k, v := range want {
		got, _ := values[k].(string)
		assert.Equal(t, v, got, "backup of %s on %s: %s = %q, want %q", id, s.Addr(), k, got, v)
	}
}

func syncName(sync bool) string {
	if sync {
		return "sync"
	}
	return "async"
}

// TestFailoverNodeKilled kills the memcached node named in a session's ID:
// the session keeps working from memory, moves to the other node (same
// random part, new cookie) and a third instance recovers it from there once
// its owner crashes.
func TestFailoverNodeKilled(t *testing.T) {
	for _, syncMode := range []bool{false, true} {
		t.Run(syncName(syncMode), func(t *testing.T) {
			servers := memcachetest.StartN(t, 2)
			cfg := failoverConfig("a", servers...)
			cfg.SyncBackup = syncMode
			a := newInstance(t, cfg)
			br := newBrowser(t)
			checkSet(t, br, a, "k1", "v1")
			require.Equal(t, "x", mustDo(t, br, a, "POST", "/cart/add?item=x"),
				"POST /cart/add?item=x on a new cart: the cart must hold x")
			waitIdle(t, a.m)
			oldID := br.sessionID(a)
			old := mustParseID(t, oldID)
			home := serverOf(t, servers, old.node)
			checkStored(t, home, oldID, map[string]string{"k1": "v1"})

			home.Kill()

			// Reads are served from memory: no memcached call, no change.
			checkGet(t, br, a, "k1", "v1")
			require.Equal(t, oldID, br.sessionID(a),
				"cookie after a read: a read must not move the session off its dead node")
			// The first write finds the node dead and moves the session.
			// With SyncBackup that happens before this response, so it
			// carries the new cookie; without, the next response does.
			checkSet(t, br, a, "k2", "v2")
			if !syncMode {
				waitIdle(t, a.m)
				checkGet(t, br, a, "k2", "v2")
			}
			newID := br.sessionID(a)
			moved := mustParseID(t, newID)
			require.NotEqual(t, old.node, moved.node,
				"node of the cookie %s after the write: the session must leave dead node %s", newID, old.node)
			require.Equal(t, old.random, moved.random,
				"random part of the cookie %s after the write: a move keeps the random part", newID)
			require.Equal(t, "a", moved.route,
				"route of the cookie %s after the write: the session stays on instance a", newID)
			assert.Equal(t, 1, a.m.Stats().NodesUp, "Stats().NodesUp after SIGKILL of %s", old.node)
			assert.Equal(t, "x,y", mustDo(t, br, a, "POST", "/cart/add?item=y"),
				"POST /cart/add?item=y after the move: the cart must still hold x")
			waitIdle(t, a.m)
			require.Equal(t, newID, br.sessionID(a), "cookie after another write: the session moves only once")
			other := serverOf(t, servers, moved.node)
			checkStored(t, other, newID, map[string]string{"k1": "v1", "k2": "v2"})
			assert.NotZero(t, a.m.Stats().Relocations, "Stats().Relocations after the session left %s", old.node)

			a.crash()
			c := newInstance(t, failoverConfig("c", servers...))
			checkGet(t, br, c, "k1", "v1")
			checkGet(t, br, c, "k2", "v2")
			_, body := br.do(c, "GET", "/cart")
			assert.Equal(t, "x,y", body, "GET /cart on the third instance: the cart must survive the move and the owner's crash")
			assert.Equal(t, old.random+"."+moved.node+".c", br.sessionID(c),
				"cookie from the third instance: same random part, the node it moved to, route c")
			st := c.m.Stats()
			assert.Equal(t, uint64(1), st.Takeovers, "third instance: Stats().Takeovers = %d, want 1 after loading a's session", st.Takeovers)
			assert.Equal(t, uint64(1), st.LoadsHit, "third instance: Stats().LoadsHit = %d, want 1 after loading a's session", st.LoadsHit)
		})
	}
}

// TestTakeoverFindsSessionMovedBeforeClientLearnedNewID: the session's node
// dies, the owner moves the session to another node in the background, and
// crashes before the client makes another request, so the client still
// sends the ID naming the dead node. The instance that takes over finds the
// node dead on its first get and must look where the owner moved it.
func TestTakeoverFindsSessionMovedBeforeClientLearnedNewID(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newInstance(t, failoverConfig("a", servers...))
	br := newBrowser(t)
	checkSet(t, br, a, "k", "v1")
	waitIdle(t, a.m)
	oldID := br.sessionID(a)
	old := mustParseID(t, oldID)
	serverOf(t, servers, old.node).Kill()

	checkSet(t, br, a, "k", "v2") // async: moved after the response went out
	waitIdle(t, a.m)
	require.Equal(t, oldID, br.sessionID(a), "cookie after an async write: the client must not know the new ID yet")
	movedID := localID(a.m, old.random)
	require.NotEqual(t, old.node, mustParseID(t, movedID).node, "owner's ID %s: want it moved off %s", movedID, old.node)
	a.crash()

	c := newInstance(t, failoverConfig("c", servers...)) // believes every node up
	checkGet(t, br, c, "k", "v2")
	assert.Equal(t, old.random, mustParseID(t, br.sessionID(c)).random,
		"random part of the cookie %s from the third instance: it took over the same session", br.sessionID(c))
}

// TestFailoverNodesOnlyWhenNoPrimaryUp uses n1, n2 and failover node n3:
// new sessions never go to n3 while n1 or n2 is up, killing n1 moves its
// sessions to n2, killing n2 as well moves them to n3, and when a primary
// is back they leave n3 again.
func TestFailoverNodesOnlyWhenNoPrimaryUp(t *testing.T) {
	servers := memcachetest.StartN(t, 3)
	cfg := failoverConfig("a", servers...)
	cfg.FailoverNodes = "n3"
	a := newInstance(t, cfg)

	var browsers []*browser
	var onN1 *browser
	for i := range 24 {
		br := newBrowser(t)
		checkSet(t, br, a, "k", "v"+strconv.Itoa(i))
		node := mustParseID(t, br.sessionID(a)).node
		assert.NotEqual(t, "n3", node, "node of new session %s: n3 is a failover node and n1, n2 are up", br.sessionID(a))
		if node == "n1" && onN1 == nil {
			onN1 = br
		}
		browsers = append(browsers, br)
	}
	require.NotNil(t, onN1, "none of 24 new sessions is on n1")
	waitIdle(t, a.m)
	// The random part onN1's session must keep through every move.
	onN1Random := mustParseID(t, onN1.sessionID(a)).random

	// n1 dies: its sessions move to n2, never n3; the others stay put.
	servers[0].Kill()
	checkSet(t, onN1, a, "k", "after-n1")
	eventually(t, 3*time.Second, "n1 marked down", func() bool { return nodesUp(a.m) == 2 })
	waitIdle(t, a.m) // the rescue of n1's other sessions is done too
	for _, br := range browsers {
		before := mustParseID(t, br.sessionID(a))
		id := localID(a.m, before.random)
		want := before.node
		if want == "n1" {
			want = "n2"
		}
		assert.Equal(t, want, mustParseID(t, id).node,
			"node of session %s (now %s) after n1 died: n1's sessions go to n2, never to failover n3", br.sessionID(a), id)
		assert.True(t, isStored(t, serverOf(t, servers, want), id), "session %s: want its backup on %s", id, want)
	}
	checkGet(t, onN1, a, "k", "after-n1")
	require.Equal(t, "n2", mustParseID(t, onN1.sessionID(a)).node,
		"node of the cookie %s after n1 died: the session must move to n2", onN1.sessionID(a))
	for range 8 {
		br := newBrowser(t)
		checkSet(t, br, a, "k", "new")
		assert.Equal(t, "n2", mustParseID(t, br.sessionID(a)).node,
			"node of new session %s while n1 is down: n2 is the only primary up", br.sessionID(a))
	}

	// n2 dies too: only the failover node is left.
	servers[1].Kill()
	checkSet(t, onN1, a, "k", "after-n2")
	eventually(t, 3*time.Second, "n2 marked down", func() bool { return nodesUp(a.m) == 1 })
	waitIdle(t, a.m)
	checkGet(t, onN1, a, "k", "after-n2")
	onN3 := onN1.sessionID(a)
	require.Equal(t, "n3", mustParseID(t, onN3).node, "node of the cookie %s after n1 and n2 died: only n3 is left", onN3)
	checkStored(t, servers[2], onN3, map[string]string{"k": "after-n2"})
	br := newBrowser(t)
	checkSet(t, br, a, "k", "new")
	assert.Equal(t, "n3", mustParseID(t, br.sessionID(a)).node,
		"node of new session %s while only n3 is up: the failover node is used when no primary is", br.sessionID(a))

	// n1 is back: a request moves the session off the failover node.
	servers[0].Restart()
	eventually(t, 3*time.Second, "n1 marked up again", func() bool { return nodesUp(a.m) == 2 })
	checkGet(t, onN1, a, "k", "after-n2")
	backID := onN1.sessionID(a)
	back := mustParseID(t, backID)
	require.Equal(t, "n1", back.node, "node of the cookie %s after n1 came back: the session must leave failover n3", backID)
	require.Equal(t, onN1Random, back.random, "random part of the cookie %s after n1 came back: moves keep it", backID)
	waitIdle(t, a.m)
	checkStored(t, servers[0], backID, map[string]string{"k": "after-n2"})
}

// TestFailoverAllNodesDown kills every node: requests keep working from
// memory with the same cookie, and once the nodes are back the sessions are
// written again by the retry loop, without further requests, including a
// session nobody used during the outage (its node restarted empty).
func TestFailoverAllNodesDown(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newInstance(t, failoverConfig("a", servers...))
	active := newBrowser(t)
	checkSet(t, active, a, "k", "v1")
	activeID := mustParseID(t, active.sessionID(a))
	activeRandom := activeID.random
	// The idle session is on the other node, which is found down second:
	// by then there is no node left to move the idle session to.
	idleNode := "n1"
	if activeID.node == "n1" {
		idleNode = "n2"
	}
	idle := newSessionOn(t, a, idleNode, "k", "idle")
	waitIdle(t, a.m)
	idleID := idle.sessionID(a)

	servers[0].Kill()
	servers[1].Kill()

	checkGet(t, active, a, "k", "v1")
	checkSet(t, active, a, "k", "v2")
	eventually(t, 3*time.Second, "both nodes marked down", func() bool { return nodesUp(a.m) == 0 })
	checkSet(t, active, a, "k2", "w")
	checkGet(t, active, a, "k", "v2")
	checkGet(t, active, a, "k2", "w")
	require.Equal(t, activeRandom, mustParseID(t, active.sessionID(a)).random,
		"random part of the cookie %s while every node is down: the session must stay the same", active.sessionID(a))
	_, body := active.do(a, "GET", "/keys")
	assert.Equal(t, "k,k2", body, "GET /keys while every node is down: the session is served from memory")
	// The unstored change cycles between the pending set, the queue and a
	// worker's failed try: wait for a moment it is seen waiting.
	eventually(t, 3*time.Second, "no backup waiting to be retried while every node is down", func() bool {
		st := a.m.Stats()
		return st.PendingRetries+st.QueueDepth > 0
	})

	// The idle session's node comes back first, empty: the session must be
	// written there again, not assumed to be still stored.
	idleServer := serverOf(t, servers, idleNode)
	idleServer.Restart()
	eventually(t, 3*time.Second, idleNode+" marked up again", func() bool { return nodesUp(a.m) == 1 })
	eventually(t, 3*time.Second, "idle session written to its restarted node", func() bool {
		return isStored(t, idleServer, localID(a.m, mustParseID(t, idleID).random))
	})
	for _, s := range servers {
		if s != idleServer {
			s.Restart()
		}
	}
	eventually(t, 3*time.Second, "every node marked up again", func() bool { return nodesUp(a.m) == 2 })
	// No request since the restarts: the retry loop writes the session.
	eventually(t, 3*time.Second, "active session written again", func() bool {
		id := localID(a.m, activeRandom)
		v, ok := storedSession(t, serverOf(t, servers, mustParseID(t, id).node), id)
		return ok && v["k"] == "v2" && v["k2"] == "w"
	})
	waitIdle(t, a.m)
	checkGet(t, active, a, "k", "v2")
	assert.Equal(t, localID(a.m, activeRandom), active.sessionID(a),
		"cookie after the nodes came back: the client must hold the session's current ID")
}

// TestFailoverNodePaused black-holes the session's node with SIGSTOP: no
// request waits much longer than OperationTimeout with SyncBackup, and none
// waits at all without it; the node is marked down, the session moves, and
// after SIGCONT the node is marked up again.
func TestFailoverNodePaused(t *testing.T) {
	for _, syncMode := range []bool{false, true} {
		t.Run(syncName(syncMode), func(t *testing.T) {
			servers := memcachetest.StartN(t, 2)
			cfg := failoverConfig("a", servers...)
			cfg.SyncBackup = syncMode
			// Sync: one operation may wait OperationTimeout (200ms) before
			// the node is marked down, bounded by BackupTimeout (1s); 1.5s
			// leaves room for a loaded CI machine. Async: the request never
			// waits on memcached; OperationTimeout is raised to 1s so that a
			// request that did wait would fail the 300ms limit.
			limit := 1500 * time.Millisecond
			if !syncMode {
				limit = 300 * time.Millisecond
				cfg.OperationTimeout = time.Second
			}
			a := newInstance(t, cfg)
			br := newBrowser(t)
			checkSet(t, br, a, "k", "v0")
			waitIdle(t, a.m)
			oldID := br.sessionID(a)
			old := mustParseID(t, oldID)
			home := serverOf(t, servers, old.node)
			var slowest time.Duration
			timed := func(br *browser, method, path string) (int, string) {
				t.Helper()
				start := time.Now()
				code, body := br.do(a, method, path)
				d := time.Since(start)
				slowest = max(slowest, d)
				assert.LessOrEqual(t, d, limit, "%s %s took %v while a node is paused, want < %v", method, path, d, limit)
				assert.Equal(t, http.StatusOK, code, "%s %s while a node is paused: the session works from memory", method, path)
				return code, body
			}

			home.Pause()
			for i := range 10 {
				v := "v" + strconv.Itoa(i+1)
				timed(br, "POST", "/set?key=k&value="+v)
				_, body := timed(br, "GET", "/get?key=k")
				require.Equal(t, v, body, "GET /get?key=k after setting it while %s is paused", old.node)
				timed(newBrowser(t), "POST", "/set?key=k&value=new") // a new session
			}
			t.Logf("%s: slowest request while %s was paused: %v", syncName(syncMode), old.node, slowest)

			eventually(t, 3*time.Second, old.node+" marked down", func() bool { return nodesUp(a.m) == 1 })
			waitIdle(t, a.m)
			checkGet(t, br, a, "k", "v10")
			newID := br.sessionID(a)
			moved := mustParseID(t, newID)
			require.NotEqual(t, old.node, moved.node,
				"node of the cookie %s after %s was paused: the session must leave it", newID, old.node)
			require.Equal(t, old.random, moved.random,
				"random part of the cookie %s after %s was paused: a move keeps it", newID, old.node)
			checkStored(t, serverOf(t, servers, moved.node), newID, map[string]string{"k": "v10"})

			home.Resume()
			eventually(t, 3*time.Second, old.node+" marked up after SIGCONT", func() bool { return nodesUp(a.m) == 2 })
		})
	}
}

// TestSyncBackupVisibleOnOtherInstance: with SyncBackup a handler that
// changes the session and redirects has stored the change before the 302
// leaves, so the client's next request, sent to another instance, sees it.
//
// Async mode is not tested here: its worker usually stores the session
// while the client follows the redirect, but nothing orders the two, so the
// other instance may load the old copy.
func TestSyncBackupVisibleOnOtherInstance(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := failoverConfig("a", servers...)
	cfg.SyncBackup = true
	a := newInstance(t, cfg)
	cfg.Route = "b"
	other := newInstance(t, cfg)

	t.Run("redirect", func(t *testing.T) {
		for i := range 20 {
			br := newBrowser(t)
			checkSet(t, br, a, "k", "old"+strconv.Itoa(i)) // an existing session with a stored copy
			want := "new" + strconv.Itoa(i)
			resp, err := br.client.Post(a.srv.URL+"/set?key=k&value="+want+"&redirect="+url.QueryEscape("/get?key=k"), "", nil)
			require.NoError(t, err, "POST /set...&redirect")
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			require.Equal(t, http.StatusFound, resp.StatusCode, "POST /set...&redirect status")
			require.Equal(t, "/get?key=k", loc, "POST /set...&redirect Location")
			_, body := br.do(other, "GET", loc)
			require.Equal(t, want, body,
				"round %d: GET %s on the other instance: the change must be stored before the 302 leaves", i, loc)
		}
	})

	// The handler holds its response open after the 302 until the other
	// instance has answered, so the write cannot have come from the
	// middleware's end-of-request backup: it was done before the status
	// line.
	t.Run("response held open", func(t *testing.T) {
		release := make(chan struct{}, 1)
		mux := http.NewServeMux()
		mux.HandleFunc("POST /set-held", func(w http.ResponseWriter, r *http.Request) {
			FromContext(r.Context()).Set("k", r.FormValue("value"))
			http.Redirect(w, r, "/get?key=k", http.StatusFound)
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		})
		cfg.Route = "a"
		held := newAppInstance(t, cfg, mux)
		for i := range 20 {
			br := newBrowser(t)
			want := "held" + strconv.Itoa(i)
			resp, err := br.client.Post(held.srv.URL+"/set-held?value="+want, "", nil)
			require.NoError(t, err, "round %d: POST /set-held", i)
			_, body := br.do(other, "GET", resp.Header.Get("Location"))
			release <- struct{}{}
			resp.Body.Close()
			require.Equal(t, http.StatusFound, resp.StatusCode, "round %d: POST /set-held status", i)
			require.Equal(t, want, body,
				"round %d: GET on the other instance while the 302 is held open: the change must be stored before the status line", i)
		}
	})
}

// TestStaleConnectionsAfterRestartDoNotMarkNodeDown restarts a node (same
// port, empty): the client's pooled connections to the old process are
// dead, and the first operations on them fail with io.EOF or a reset. That
// must not mark the node down: the next write goes to the same node.
func TestStaleConnectionsAfterRestartDoNotMarkNodeDown(t *testing.T) {
	for _, syncMode := range []bool{false, true} {
		t.Run(syncName(syncMode), func(t *testing.T) {
			servers := memcachetest.StartN(t, 2)
			cfg := failoverConfig("a", servers...)
			cfg.SyncBackup = syncMode
			a := newInstance(t, cfg)
			// Concurrent writes leave several idle connections per node.
			browsers := make([]*browser, 16)
			var wg sync.WaitGroup
			for i := range browsers {
				browsers[i] = newBrowser(t)
				wg.Add(1)
				go func() {
					defer wg.Done()
					// assert, not require: this is not the test's goroutine.
					code, body := browsers[i].do(a, "POST", "/set?key=k&value=before")
					assert.Equal(t, http.StatusOK, code, "browser %d: POST /set?key=k&value=before = %d %q, want 200", i, code, body)
				}()
			}
			wg.Wait()
			waitIdle(t, a.m)
			br := browsers[0]
			id := br.sessionID(a)
			s := serverOf(t, servers, mustParseID(t, id).node)
			if st, err := s.Stats(); err == nil {
				t.Logf("connections to %s before the restart: %d", s.Addr(), st.CurrConnections-1)
			}

			s.Restart()
			checkSet(t, br, a, "k", "after")
			waitIdle(t, a.m)
			assert.Equal(t, id, localID(a.m, mustParseID(t, id).random),
				"session ID after the restart: a stale connection must not mark the node down and move the session")
			checkStored(t, s, id, map[string]string{"k": "after"})
			st := a.m.Stats()
			assert.Equal(t, 2, st.NodesUp, "Stats().NodesUp after a restart: stale connections are no sign of a dead node")
			assert.Zero(t, st.Relocations, "Stats().Relocations after a restart: no session may have moved")
		})
	}
}

// TestSetNodes replaces the node list at runtime and checks its errors.
func TestSetNodes(t *testing.T) {
	t.Run("replace", func(t *testing.T) {
		servers := memcachetest.StartN(t, 3)
		a := newInstance(t, failoverConfig("a", servers[0], servers[1]))
		var browsers []*browser
		onN1 := 0
		for i := 0; i < 32 && onN1 < 3; i++ {
			br := newBrowser(t)
			checkSet(t, br, a, "k", "v"+strconv.Itoa(i))
			if mustParseID(t, br.sessionID(a)).node == "n1" {
				onN1++
			}
			browsers = append(browsers, br)
		}
		require.NotZero(t, onN1, "no new session on n1 in %d tries", len(browsers))
		waitIdle(t, a.m)

		// Remove n1, keep n2, add n3.
		nodes := fmt.Sprintf("n2:%s n3:%s", servers[1].Addr(), servers[2].Addr())
		require.NoError(t, a.m.SetNodes(nodes, ""), "SetNodes(%q, \"\")", nodes)
		st := a.m.Stats()
		assert.Equal(t, 2, st.Nodes, "Stats().Nodes after SetNodes(%q)", nodes)
		assert.Equal(t, 2, st.NodesUp, "Stats().NodesUp after SetNodes(%q): both new nodes are up", nodes)
		// Without a request, the sessions on n1 move to n2 or n3.
		byID := map[string]*memcachetest.Server{"n2": servers[1], "n3": servers[2]}
		for i, br := range browsers {
			before := mustParseID(t, br.sessionID(a))
			var id string
			eventually(t, 3*time.Second, "session "+br.sessionID(a)+" stored on a listed node", func() bool {
				id = localID(a.m, before.random)
				s := byID[mustParseID(t, id).node]
				return s != nil && isStored(t, s, id)
			})
			if before.node == "n2" {
				assert.Equal(t, br.sessionID(a), id, "ID of session %s after SetNodes: n2 was kept, so its sessions stay", br.sessionID(a))
			}
			checkGet(t, br, a, "k", "v"+strconv.Itoa(i))
			assert.Equal(t, id, br.sessionID(a), "cookie after SetNodes and a request: the client must learn the session's ID")
		}
	})

	t.Run("bad input", func(t *testing.T) {
		servers := memcachetest.StartN(t, 1)
		m := newTestManager(t, failoverConfig("a", servers...))
		addr := servers[0].Addr()
		for _, tc := range []struct {
			name, nodes, failover, want string
		}{
			{"empty", "", "", "at least one node"},
			{"duplicate id", "n1:" + addr + " n1:127.0.0.1:1", "", `"n1" appears twice`},
			{"unknown failover node", "n1:" + addr, "n2", `failover node "n2" is not in the node list`},
			{"no primary", "n1:" + addr, "n1", "at least one must be a primary"},
			{"bad id", "n-1:" + addr, "", `node id "n-1" may hold only letters`},
			{"bad port", "n1:127.0.0.1:99999", "", "port must be 1..65535"},
			{"duplicate address", "n1:" + addr + " n2:" + addr, "", "have the same address"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				err := m.SetNodes(tc.nodes, tc.failover)
				var ce *ConfigError
				assert.ErrorAs(t, err, &ce, "SetNodes(%q, %q) = %v, want a *ConfigError", tc.nodes, tc.failover, err)
				assert.ErrorContains(t, err, tc.want, "SetNodes(%q, %q) = %v, want an error saying what is wrong", tc.nodes, tc.failover, err)
			})
		}
		st := m.Stats()
		assert.Equal(t, 1, st.Nodes, "Stats().Nodes after rejected SetNodes: the old list stays")
		assert.Equal(t, 1, st.NodesUp, "Stats().NodesUp after rejected SetNodes: the old list stays")
	})

	t.Run("manager without nodes", func(t *testing.T) {
		m := newTestManager(t, Config{})
		err := m.SetNodes("n1:127.0.0.1:11211", "")
		var ce *ConfigError
		require.ErrorAs(t, err, &ce, "SetNodes on a Manager without nodes = %v, want a *ConfigError", err)
		assert.Equal(t, "Nodes", ce.Field, "SetNodes on a Manager without nodes: the error must name Config.Nodes")
	})

	t.Run("closed", func(t *testing.T) {
		servers := memcachetest.StartN(t, 1)
		m := newTestManager(t, failoverConfig("a", servers...))
		m.Close()
		err := m.SetNodes(nodesOf(servers...), "")
		assert.ErrorIs(t, err, ErrClosed, "SetNodes after Close = %v, want ErrClosed", err)
	})
}
