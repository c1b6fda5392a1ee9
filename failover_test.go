package mcsession

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

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

// mustParseID parses a session ID that must carry a node part.
func mustParseID(t testing.TB, id string) sessionID {
	t.Helper()
	p, ok := parseID(id, true)
	if !ok {
		t.Fatalf("parseID(%q) failed, want a <random>.<node>[.<route>] ID", id)
	}
	return p
}

// serverOf returns the server behind node id "nK" of a nodesOf list.
func serverOf(t testing.TB, servers []*memcachetest.Server, node string) *memcachetest.Server {
	t.Helper()
	i, err := strconv.Atoi(strings.TrimPrefix(node, "n"))
	if err != nil || i < 1 || i > len(servers) {
		t.Fatalf("node %q is not one of n1..n%d", node, len(servers))
	}
	return servers[i-1]
}

// isStored reports whether s holds the backup of session id.
func isStored(t testing.TB, s *memcachetest.Server, id string) bool {
	t.Helper()
	_, found := storedSession(t, s, id)
	return found
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

// checkGet fails the test unless GET /get?key=key on in answers want.
func checkGet(t testing.TB, br *browser, in *instance, key, want string) {
	t.Helper()
	if code, body := br.do(in, "GET", "/get?key="+key); code != http.StatusOK || body != want {
		t.Fatalf("GET /get?key=%s = %d %q, want 200 %q", key, code, body, want)
	}
}

// checkSet fails the test unless POST /set?key=key&value=value on in
// answers 200 ok.
func checkSet(t testing.TB, br *browser, in *instance, key, value string) {
	t.Helper()
	if code, body := br.do(in, "POST", "/set?key="+key+"&value="+value); code != http.StatusOK || body != "ok" {
		t.Fatalf("POST /set?key=%s&value=%s = %d %q, want 200 \"ok\"", key, value, code, body)
	}
}

// newSessionOn returns a browser whose new session, holding key=value, has
// an ID naming node. New sessions are spread over the up primary nodes by
// their random part, so a few tries suffice.
func newSessionOn(t testing.TB, in *instance, node, key, value string) *browser {
	t.Helper()
	for range 64 {
		br := newBrowser(t)
		checkSet(t, br, in, key, value)
		if mustParseID(t, br.sessionID(in)).node == node {
			return br
		}
	}
	t.Fatalf("no new session on node %s in 64 tries", node)
	return nil
}

// checkStored fails the test unless s holds the backup of id with the
// string values want.
func checkStored(t testing.TB, s *memcachetest.Server, id string, want map[string]string) {
	t.Helper()
	values, found := storedSession(t, s, id)
	if !found {
		t.Fatalf("raw get of the key of %s on %s: not found, want the session's backup", id, s.Addr())
	}
	for k, v := range want {
		if got, _ := values[k].(string); got != v {
			t.Errorf("backup of %s on %s: %s = %q, want %q", id, s.Addr(), k, got, v)
		}
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
			br.do(a, "POST", "/cart/add?item=x")
			waitIdle(t, a.m)
			oldID := br.sessionID(a)
			old := mustParseID(t, oldID)
			home := serverOf(t, servers, old.node)
			checkStored(t, home, oldID, map[string]string{"k1": "v1"})

			home.Kill()

			// Reads are served from memory: no memcached call, no change.
			checkGet(t, br, a, "k1", "v1")
			if got := br.sessionID(a); got != oldID {
				t.Fatalf("cookie after a read = %s, want %s unchanged", got, oldID)
			}
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
			if moved.node == old.node || moved.random != old.random || moved.route != "a" {
				t.Fatalf("cookie after the write = %s, want %s.<a node other than %s>.a", newID, old.random, old.node)
			}
			if got := a.m.Stats().NodesUp; got != 1 {
				t.Errorf("Stats().NodesUp = %d, want 1 after SIGKILL of %s", got, old.node)
			}
			br.do(a, "POST", "/cart/add?item=y")
			waitIdle(t, a.m)
			if got := br.sessionID(a); got != newID {
				t.Fatalf("cookie = %s, want %s (the session moved once)", got, newID)
			}
			other := serverOf(t, servers, moved.node)
			checkStored(t, other, newID, map[string]string{"k1": "v1", "k2": "v2"})
			if got := a.m.Stats().Relocations; got == 0 {
				t.Errorf("Stats().Relocations = 0, want > 0")
			}

			a.crash()
			c := newInstance(t, failoverConfig("c", servers...))
			checkGet(t, br, c, "k1", "v1")
			checkGet(t, br, c, "k2", "v2")
			if _, body := br.do(c, "GET", "/cart"); body != "x,y" {
				t.Errorf("GET /cart on the third instance = %q, want %q", body, "x,y")
			}
			if got, want := br.sessionID(c), old.random+"."+moved.node+".c"; got != want {
				t.Errorf("cookie from the third instance = %s, want %s", got, want)
			}
			if st := c.m.Stats(); st.Takeovers != 1 || st.LoadsHit != 1 {
				t.Errorf("third instance: Takeovers, LoadsHit = %d, %d, want 1, 1", st.Takeovers, st.LoadsHit)
			}
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
	if got := br.sessionID(a); got != oldID {
		t.Fatalf("cookie = %s, want %s: the client must not know the new ID yet", got, oldID)
	}
	movedID := localID(a.m, old.random)
	if mustParseID(t, movedID).node == old.node {
		t.Fatalf("owner's ID = %s, want it moved off %s", movedID, old.node)
	}
	a.crash()

	c := newInstance(t, failoverConfig("c", servers...)) // believes every node up
	checkGet(t, br, c, "k", "v2")
	if got := mustParseID(t, br.sessionID(c)); got.random != old.random {
		t.Errorf("cookie from the third instance = %s, want random part %s", br.sessionID(c), old.random)
	}
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
		switch node := mustParseID(t, br.sessionID(a)).node; {
		case node == "n3":
			t.Errorf("new session %s is on failover node n3 while n1 and n2 are up", br.sessionID(a))
		case node == "n1" && onN1 == nil:
			onN1 = br
		}
		browsers = append(browsers, br)
	}
	if onN1 == nil {
		t.Fatal("none of 24 new sessions is on n1")
	}
	waitIdle(t, a.m)
	randomOf := func(br *browser) string { return mustParseID(t, br.sessionID(a)).random }

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
		if got := mustParseID(t, id).node; got != want {
			t.Errorf("session %s is now %s, want it on %s", br.sessionID(a), id, want)
		}
		if !isStored(t, serverOf(t, servers, want), id) {
			t.Errorf("session %s: no backup on %s", id, want)
		}
	}
	checkGet(t, onN1, a, "k", "after-n1")
	if got := mustParseID(t, onN1.sessionID(a)); got.node != "n2" {
		t.Fatalf("cookie after n1 died = %s, want it on n2", onN1.sessionID(a))
	}
	for range 8 {
		br := newBrowser(t)
		checkSet(t, br, a, "k", "new")
		if got := mustParseID(t, br.sessionID(a)).node; got != "n2" {
			t.Errorf("new session while n1 is down = %s, want it on n2", br.sessionID(a))
		}
	}

	// n2 dies too: only the failover node is left.
	servers[1].Kill()
	checkSet(t, onN1, a, "k", "after-n2")
	eventually(t, 3*time.Second, "n2 marked down", func() bool { return nodesUp(a.m) == 1 })
	waitIdle(t, a.m)
	checkGet(t, onN1, a, "k", "after-n2")
	onN3 := onN1.sessionID(a)
	if got := mustParseID(t, onN3).node; got != "n3" {
		t.Fatalf("cookie after n1 and n2 died = %s, want it on n3", onN3)
	}
	checkStored(t, servers[2], onN3, map[string]string{"k": "after-n2"})
	br := newBrowser(t)
	checkSet(t, br, a, "k", "new")
	if got := mustParseID(t, br.sessionID(a)).node; got != "n3" {
		t.Errorf("new session while only n3 is up = %s, want it on n3", br.sessionID(a))
	}

	// n1 is back: a request moves the session off the failover node.
	servers[0].Restart()
	eventually(t, 3*time.Second, "n1 marked up again", func() bool { return nodesUp(a.m) == 2 })
	checkGet(t, onN1, a, "k", "after-n2")
	backID := onN1.sessionID(a)
	if got := mustParseID(t, backID); got.node != "n1" || got.random != randomOf(onN1) {
		t.Fatalf("cookie after n1 came back = %s, want it back on n1", backID)
	}
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
	if got := mustParseID(t, active.sessionID(a)).random; got != activeRandom {
		t.Fatalf("cookie while every node is down = %s, want random part %s", active.sessionID(a), activeRandom)
	}
	if _, body := active.do(a, "GET", "/keys"); body != "k,k2" {
		t.Errorf("GET /keys while every node is down = %q, want %q", body, "k,k2")
	}
	if st := a.m.Stats(); st.PendingRetries+st.QueueDepth == 0 {
		t.Errorf("Stats() = %+v, want backups pending while every node is down", st)
	}

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
	if got, want := active.sessionID(a), localID(a.m, activeRandom); got != want {
		t.Errorf("cookie after the nodes came back = %s, want %s", got, want)
	}
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
				if d > limit {
					t.Errorf("%s %s took %v while a node is paused, want < %v", method, path, d, limit)
				}
				return code, body
			}

			home.Pause()
			for i := range 10 {
				v := "v" + strconv.Itoa(i+1)
				timed(br, "POST", "/set?key=k&value="+v)
				if _, body := timed(br, "GET", "/get?key=k"); body != v {
					t.Fatalf("GET /get?key=k = %q, want %q", body, v)
				}
				timed(newBrowser(t), "POST", "/set?key=k&value=new") // a new session
			}
			t.Logf("%s: slowest request while %s was paused: %v", syncName(syncMode), old.node, slowest)

			eventually(t, 3*time.Second, old.node+" marked down", func() bool { return nodesUp(a.m) == 1 })
			waitIdle(t, a.m)
			checkGet(t, br, a, "k", "v10")
			newID := br.sessionID(a)
			moved := mustParseID(t, newID)
			if moved.node == old.node || moved.random != old.random {
				t.Fatalf("cookie after %s was paused = %s, want %s.<another node>.a", old.node, newID, old.random)
			}
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
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusFound || loc != "/get?key=k" {
				t.Fatalf("POST /set...&redirect = %d Location %q, want 302 /get?key=k", resp.StatusCode, loc)
			}
			if _, body := br.do(other, "GET", loc); body != want {
				t.Fatalf("round %d: GET %s on the other instance = %q, want %q", i, loc, body, want)
			}
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
		held := &instance{m: newTestManager(t, cfg)}
		held.srv = httptest.NewServer(held.m.Middleware(mux))
		t.Cleanup(held.srv.Close)
		for i := range 20 {
			br := newBrowser(t)
			want := "held" + strconv.Itoa(i)
			resp, err := br.client.Post(held.srv.URL+"/set-held?value="+want, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, body := br.do(other, "GET", resp.Header.Get("Location"))
			release <- struct{}{}
			resp.Body.Close()
			if resp.StatusCode != http.StatusFound || body != want {
				t.Fatalf("round %d: 302 then GET on the other instance = %d, %q, want 302, %q", i, resp.StatusCode, body, want)
			}
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
					browsers[i].do(a, "POST", "/set?key=k&value=before")
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
			if got := localID(a.m, mustParseID(t, id).random); got != id {
				t.Errorf("session ID after the restart = %s, want %s: the node was marked down", got, id)
			}
			checkStored(t, s, id, map[string]string{"k": "after"})
			if st := a.m.Stats(); st.NodesUp != 2 || st.Relocations != 0 {
				t.Errorf("Stats() NodesUp, Relocations = %d, %d, want 2, 0", st.NodesUp, st.Relocations)
			}
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
		if onN1 == 0 {
			t.Fatal("no new session on n1")
		}
		waitIdle(t, a.m)

		// Remove n1, keep n2, add n3.
		nodes := fmt.Sprintf("n2:%s n3:%s", servers[1].Addr(), servers[2].Addr())
		if err := a.m.SetNodes(nodes, ""); err != nil {
			t.Fatalf("SetNodes(%q) error = %v", nodes, err)
		}
		if st := a.m.Stats(); st.Nodes != 2 || st.NodesUp != 2 {
			t.Errorf("Stats() Nodes, NodesUp = %d, %d, want 2, 2", st.Nodes, st.NodesUp)
		}
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
			if before.node == "n2" && id != br.sessionID(a) {
				t.Errorf("session %s on kept node n2 moved to %s", br.sessionID(a), id)
			}
			checkGet(t, br, a, "k", "v"+strconv.Itoa(i))
			if got := br.sessionID(a); got != id {
				t.Errorf("cookie after SetNodes = %s, want %s", got, id)
			}
		}
	})

	t.Run("bad input", func(t *testing.T) {
		servers := memcachetest.StartN(t, 1)
		m := newTestManager(t, failoverConfig("a", servers...))
		addr := servers[0].Addr()
		for _, tc := range []struct {
			nodes, failover, want string
		}{
			{"", "", "at least one node"},
			{"n1:" + addr + " n1:127.0.0.1:1", "", `"n1" appears twice`},
			{"n1:" + addr, "n2", `failover node "n2" is not in the node list`},
			{"n1:" + addr, "n1", "at least one must be a primary"},
			{"n-1:" + addr, "", `node id "n-1" may hold only letters`},
			{"n1:127.0.0.1:99999", "", "port must be 1..65535"},
			{"n1:" + addr + " n2:" + addr, "", "have the same address"},
		} {
			err := m.SetNodes(tc.nodes, tc.failover)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("SetNodes(%q, %q) = %v, want a *ConfigError containing %q", tc.nodes, tc.failover, err, tc.want)
			}
		}
		if st := m.Stats(); st.Nodes != 1 || st.NodesUp != 1 {
			t.Errorf("after rejected SetNodes: Stats() Nodes, NodesUp = %d, %d, want 1, 1", st.Nodes, st.NodesUp)
		}
	})

	t.Run("manager without nodes", func(t *testing.T) {
		m := newTestManager(t, Config{})
		err := m.SetNodes("n1:127.0.0.1:11211", "")
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Field != "Nodes" {
			t.Errorf("SetNodes on a Manager without nodes = %v, want a *ConfigError for Nodes", err)
		}
	})

	t.Run("closed", func(t *testing.T) {
		servers := memcachetest.StartN(t, 1)
		m := newTestManager(t, failoverConfig("a", servers...))
		m.Close()
		if err := m.SetNodes(nodesOf(servers...), ""); !errors.Is(err, ErrClosed) {
			t.Errorf("SetNodes after Close = %v, want ErrClosed", err)
		}
	})
}
