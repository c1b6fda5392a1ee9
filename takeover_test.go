package mcsession

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
	if !strings.HasSuffix(oldID, ".a") {
		t.Fatalf("session ID from instance a = %q, want route suffix .a", oldID)
	}
	home, _ := serverFor(t, servers, oldID)
	a.crash()

	// The first request through b takes the session over.
	if body := mustDo(t, br, b, "GET", "/keys"); body != "bool,cart,float,int,str,time,user" {
		t.Errorf("GET /keys through b = %q, want every key set through a", body)
	}
	newID := br.sessionID(b)
	oldSID, _ := parseID(oldID, true)
	if want := oldSID.random + "." + oldSID.node + ".b"; newID != want {
		t.Errorf("session ID after takeover = %q, want %q (same random part and node, route b)", newID, want)
	}
	for _, r := range []struct{ path, want string }{
		{"/typed", typedBody},
		{"/get?key=user", "alice"},
		{"/get?key=gone", ""},
		{"/cart", "x,y"},
	} {
		if body := mustDo(t, br, b, "GET", r.path); body != r.want {
			t.Errorf("GET %s through b after takeover = %q, want %q", r.path, body, r.want)
		}
	}
	waitIdle(t, b.m)
	if got := b.m.Stats().Takeovers; got != 1 {
		t.Errorf("Stats().Takeovers on b = %d, want 1", got)
	}

	oldKey, newKey := memcacheKey(DefaultKeyPrefix, oldID), memcacheKey(DefaultKeyPrefix, newID)
	keys, err := home.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(keys, oldKey) {
		t.Errorf("node of %s still holds the old key %s after the takeover (keys %q)", oldID, oldKey, keys)
	}
	if !slices.Contains(keys, newKey) {
		t.Errorf("node of %s lacks the new key %s after the takeover (keys %q)", oldID, newKey, keys)
	}
	want := typedValues()
	want["user"] = "alice"
	want["cart"] = &cart{Items: []string{"x", "y"}}
	if !holdsLatest(t, servers, newID, want) {
		got, _ := storedSession(t, home, newID)
		t.Errorf("backup of %s = %s, want %s", newID, jsonString(got), jsonString(want))
	}
}

// TestTakeoverConcurrentRequestsShareOneLoad proves that concurrent
// requests for one session that an instance does not hold cause a single
// get: the node is paused until every request is waiting for the load, so
// a second get could not be avoided by luck of timing.
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
	home, _ := serverFor(t, servers, oldID)
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
			code, body := c.do(b, "GET", "/get?key=user")
			if code != http.StatusOK {
				t.Errorf("request %d: GET /get?key=user = %d %q, want 200", i, code, body)
			}
			bodies[i] = body
		}()
	}
	eventually(t, 2*time.Second, "the concurrent requests did not all reach the session load", func() bool {
		return replicaOf(b.m).flights.Waiters(oldID[:randomLen]) == n-1
	})
	home.Resume()
	wg.Wait()

	for i, body := range bodies {
		if body != "alice" {
			t.Errorf("request %d for taken-over session = %q, want %q", i, body, "alice")
		}
	}
	after := serverStats(t, servers)
	for i := range servers {
		d := diffOps(before[i], after[i])
		want := uint64(0)
		if servers[i] == home {
			want = 1
		}
		if d.gets != want {
			t.Errorf("%d concurrent requests for one missing session: node n%d served %d gets, want %d (%v)", n, i+1, d.gets, want, d)
		}
	}
	if st := b.m.Stats(); st.LoadsHit != 1 || st.Takeovers != 1 {
		t.Errorf("Stats() on b: LoadsHit = %d, Takeovers = %d, want 1 and 1", st.LoadsHit, st.Takeovers)
	}
}
