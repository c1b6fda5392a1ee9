package mcsession

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// holdsFor checks cond every 5ms for the whole of d, and fails the test the
// first time it is false. It proves that something does not happen within
// a window of time.
func holdsFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		require.True(t, cond(), "within %v: %s, want it never to happen", d, what)
		time.Sleep(5 * time.Millisecond) // poll for the whole window
	}
}

// TestStickyHitCostsNoMemcachedOps proves that requests which only read a
// session held in process memory send nothing to memcached, whatever they
// read: strings, numbers, bools, times, the key list, the ID, an unchanged
// pointer value, or nothing at all.
func TestStickyHitCostsNoMemcachedOps(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newAppInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: opTimeout, Copies: 1}, typedApp())
	br := newBrowser(t)
	mustDo(t, br, a, "POST", "/typed")
	mustDo(t, br, a, "POST", "/set?key=k&value=v")
	// /cart/add changes the cart after Set: no backup may be encoding it.
	waitIdle(t, a.m)
	mustDo(t, br, a, "POST", "/cart/add?item=x")
	id := br.sessionID(a)
	// The writes above are backed up asynchronously: wait for them before
	// taking the baseline.
	waitIdle(t, a.m)
	before := serverStats(t, servers)
	st0 := a.m.Stats()

	reads := []struct {
		path, want string
	}{
		{"/typed", typedBody},
		{"/get?key=k", "v"},
		{"/get?key=missing", ""},
		{"/keys", "bool,cart,float,int,k,str,time"},
		{"/id", id},
		{"/cart", "x"}, // a pointer read but not changed: compared, not written
		{"/none", "none"},
	}
	for range 3 {
		for _, r := range reads {
			body := mustDo(t, br, a, "GET", r.path)
			assert.Equal(t, r.want, body, "GET %s = %q, want %q", r.path, body, r.want)
		}
	}
	waitIdle(t, a.m)

	after := serverStats(t, servers)
	for i := range servers {
		d := diffOps(before[i], after[i])
		assert.Zero(t, d.total(), "%d read-only requests: node n%d served %v, want no operations", 3*len(reads), i+1, d)
	}
	st1 := a.m.Stats()
	for _, c := range []struct {
		name          string
		before, after uint64
	}{
		{"BackupsWritten", st0.BackupsWritten, st1.BackupsWritten},
		{"Touches", st0.Touches, st1.Touches},
		{"Deletes", st0.Deletes, st1.Deletes},
		{"LoadsHit+LoadsMiss+LoadsError", st0.LoadsHit + st0.LoadsMiss + st0.LoadsError, st1.LoadsHit + st1.LoadsMiss + st1.LoadsError},
	} {
		assert.Equal(t, c.before, c.after, "Stats().%s = %d after read-only requests, want %d", c.name, c.after, c.before)
	}
	got := br.sessionID(a)
	assert.Equal(t, id, got, "session ID after reads = %q, want %q: reads keep the session where it is", got, id)
}

// TestHealthyNodesAreNotProbed proves that node health checking sends no
// data operation to nodes that are up, however often the prober runs.
func TestHealthyNodesAreNotProbed(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	const probe = 2 * time.Millisecond
	a := newInstance(t, Config{
		Nodes:            nodesOf(servers...),
		Route:            "a",
		OperationTimeout: opTimeout,
		ProbeInterval:    probe,
		RetryInterval:    probe,
	})
	br := newBrowser(t)
	mustDo(t, br, a, "POST", "/set?key=k&value=v") // a session to rescue, were a node thought down
	waitIdle(t, a.m)
	before := serverStats(t, servers)
	holdsFor(t, 50*probe, "memcached served data operations while every node was healthy", func() bool {
		for i, st := range serverStats(t, servers) {
			if d := diffOps(before[i], st); d.total() != 0 {
				t.Logf("node n%d: %v", i+1, d)
				return false
			}
		}
		return a.m.Stats().NodesUp == 2
	})
}

// TestChangeWritesOnceToItsNode proves that, with one copy, a request that
// changes its session costs exactly one set, on the node its ID names and
// none on the other, that memcached then holds the new state (also for a pointer value
// changed in place, without Set), and that requests that only read, or
// change nothing, cost nothing.
func TestChangeWritesOnceToItsNode(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newAppInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: opTimeout, Copies: 1}, typedApp())
	const post, get = "POST", "GET"
	type req struct{ method, path string }
	for _, tt := range []struct {
		name        string
		setup       []req
		req         req
		wantSets    uint64
		wantSkipped uint64 // Stats().BackupsSkipped delta
		want        map[string]any
	}{
		{"new session", nil, req{post, "/set?key=a&value=1"}, 1, 0,
			map[string]any{"a": "1"}},
		{"set another key", []req{{post, "/set?key=a&value=1"}}, req{post, "/set?key=b&value=2"}, 1, 0,
			map[string]any{"a": "1", "b": "2"}},
		{"overwrite", []req{{post, "/set?key=a&value=1"}}, req{post, "/set?key=a&value=2"}, 1, 0,
			map[string]any{"a": "2"}},
		{"delete", []req{{post, "/set?key=a&value=1"}, {post, "/set?key=b&value=2"}}, req{post, "/delete?key=a"}, 1, 0,
			map[string]any{"b": "2"}},
		{"renew ID", []req{{post, "/set?key=a&value=1"}}, req{post, "/renew"}, 1, 0,
			map[string]any{"a": "1"}},
		{"first cart item", []req{{post, "/set?key=a&value=1"}}, req{post, "/cart/add?item=x"}, 1, 0,
			map[string]any{"a": "1", "cart": &cart{Items: []string{"x"}}}},
		{"cart changed in place", []req{{post, "/cart/add?item=x"}}, req{post, "/cart/add?item=y"}, 1, 0,
			map[string]any{"cart": &cart{Items: []string{"x", "y"}}}},
		{"cart read unchanged", []req{{post, "/cart/add?item=x"}}, req{get, "/cart"}, 0, 1,
			map[string]any{"cart": &cart{Items: []string{"x"}}}},
		{"read string", []req{{post, "/set?key=a&value=1"}}, req{get, "/get?key=a"}, 0, 0,
			map[string]any{"a": "1"}},
		{"read immutables", []req{{post, "/typed"}}, req{get, "/typed"}, 0, 0,
			typedValues()},
		{"read keys", []req{{post, "/set?key=a&value=1"}}, req{get, "/keys"}, 0, 0,
			map[string]any{"a": "1"}},
		{"delete missing key", []req{{post, "/set?key=a&value=1"}}, req{post, "/delete?key=zzz"}, 0, 0,
			map[string]any{"a": "1"}},
		{"session untouched", []req{{post, "/set?key=a&value=1"}}, req{get, "/none"}, 0, 0,
			map[string]any{"a": "1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Sessions spread over the nodes by their random part: try
			// fresh sessions until each node has been the home of one.
			seen := make([]bool, len(servers))
			for try := 0; try < 64 && !(seen[0] && seen[1]); try++ {
				br := newBrowser(t)
				for _, r := range tt.setup {
					mustDo(t, br, a, r.method, r.path)
				}
				waitIdle(t, a.m)
				before, st0 := serverStats(t, servers), a.m.Stats()
				mustDo(t, br, a, tt.req.method, tt.req.path)
				waitIdle(t, a.m)
				after, st1 := serverStats(t, servers), a.m.Stats()

				id := br.sessionID(a)
				home := slices.Index(servers, serverOf(t, servers, mustParseID(t, id).node))
				if seen[home] {
					continue
				}
				seen[home] = true
				for i := range servers {
					d := diffOps(before[i], after[i])
					if i != home {
						assert.Zero(t, d.total(), "%s %s on session %s: node n%d (not its node) served %v, want nothing",
							tt.req.method, tt.req.path, id, i+1, d)
						continue
					}
					// Its node: exactly wantSets sets, and nothing else at
					// all when no set is wanted.
					if assert.Equal(t, tt.wantSets, d.sets, "%s %s on session %s: node n%d served %v, want %d set",
						tt.req.method, tt.req.path, id, i+1, d, tt.wantSets) && tt.wantSets == 0 {
						assert.Zero(t, d.total(), "%s %s on session %s: node n%d served %v, want nothing",
							tt.req.method, tt.req.path, id, i+1, d)
					}
				}
				skipped := st1.BackupsSkipped - st0.BackupsSkipped
				assert.Equal(t, tt.wantSkipped, skipped, "%s %s: Stats().BackupsSkipped grew by %d, want %d",
					tt.req.method, tt.req.path, skipped, tt.wantSkipped)
				got, found := storedSession(t, servers[home], id)
				if assert.True(t, found, "backup of %s after %s %s: not on its node n%d, want %s",
					id, tt.req.method, tt.req.path, home+1, jsonString(tt.want)) {
					assert.Equal(t, tt.want, got, "backup of %s after %s %s = %s, want %s",
						id, tt.req.method, tt.req.path, jsonString(got), jsonString(tt.want))
				}
			}
			require.True(t, seen[0] && seen[1], "nodes that were home to one of 64 new sessions = %v, want both", seen)
		})
	}
}

// TestBackupQueuedSessionIsQueuedOnce proves that a session changed many
// times while its backup waits in the queue is queued once and written
// once, with its latest state.
func TestBackupQueuedSessionIsQueuedOnce(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a, gate := newGatedInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", BackupWorkers: 1, OperationTimeout: opTimeout, Copies: 1})
	before := serverStats(t, servers)

	// Session x holds the only worker at the gate.
	x := newBrowser(t)
	mustDo(t, x, a, "POST", "/set?key=gate&value=1")
	gate.waitEntered(t)

	y := newBrowser(t)
	const changes = 20
	for i := 1; i <= changes; i++ {
		mustDo(t, y, a, "POST", fmt.Sprintf("/set?key=v&value=%d", i))
	}
	depth := a.m.Stats().QueueDepth
	assert.Equal(t, 1, depth, "after %d changes of one session behind a held worker: Stats().QueueDepth = %d, want 1", changes, depth)

	gate.open()
	waitIdle(t, a.m)
	var sets uint64
	for i, st := range serverStats(t, servers) {
		sets += diffOps(before[i], st).sets
	}
	// One set for x, one for all the changes of y.
	assert.Equal(t, uint64(2), sets, "%d changes of one queued session (and one other session): %d sets, want 2", changes, sets)
	want := map[string]any{"v": strconv.Itoa(changes)}
	id := y.sessionID(a)
	node := mustParseID(t, id).node
	got, found := storedSession(t, serverOf(t, servers, node), id)
	if assert.True(t, found, "backup of %s: not on its node %s, want %s", id, node, jsonString(want)) {
		assert.Equal(t, want, got, "backup of %s = %s, want %s, the latest state", id, jsonString(got), jsonString(want))
	}
}

// changeSessions gives each of n new browsers a session on in and changes
// it twice, concurrently: v=1, then v=2. It returns the browsers.
func changeSessions(t testing.TB, in *instance, n int) []*browser {
	t.Helper()
	browsers := make([]*browser, n)
	for i := range browsers {
		browsers[i] = newBrowser(t)
	}
	var wg sync.WaitGroup
	for _, br := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, v := range []string{"1", "2"} {
				// assert, not require: this is not the test's goroutine.
				code, body := br.do(in, "POST", "/set?key=v&value="+v)
				assert.Equal(t, http.StatusOK, code, "POST /set?key=v&value=%s = %d %q, want 200", v, code, body)
			}
		}()
	}
	wg.Wait()
	require.False(t, t.Failed(), "changeSessions(%d): the test has failed (see above), want every change answered 200 before it goes on", n)
	return browsers
}

// TestBackupQueueFullDropsNothing proves that sessions that find the backup
// queue full are counted and retried until memcached has their latest state.
func TestBackupQueueFullDropsNothing(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a, gate := newGatedInstance(t, Config{
		Nodes:            nodesOf(servers...),
		Route:            "a",
		BackupWorkers:    1,
		BackupQueueSize:  1,
		RetryInterval:    50 * time.Millisecond,
		OperationTimeout: opTimeout,
	})
	x := newBrowser(t)
	mustDo(t, x, a, "POST", "/set?key=gate&value=1")
	gate.waitEntered(t)

	const n = 10
	browsers := changeSessions(t, a, n)
	// The worker is held, so one session fits the queue and the others
	// find it full.
	st := a.m.Stats()
	assert.GreaterOrEqual(t, st.BackupsDropped, uint64(n-1), "%d sessions changed with a held worker and a queue of 1: Stats().BackupsDropped = %d, want >= %d",
		n, st.BackupsDropped, n-1)
	assert.NotZero(t, st.PendingRetries, "%d sessions changed with a held worker and a queue of 1: Stats().PendingRetries = %d, want > 0: dropped backups wait for a retry",
		n, st.PendingRetries)

	gate.open()
	want := map[string]any{"v": "2"}
	eventually(t, 3*time.Second, "not every dropped session reached memcached with its latest state", func() bool {
		for _, br := range browsers {
			if !holdsLatest(t, servers, br.sessionID(a), want) {
				return false
			}
		}
		return true
	})
	waitIdle(t, a.m)
}

// TestShutdownFlushesQueuedAndPending proves that Shutdown writes every
// session whose backup is queued, in progress or waiting for a retry, so
// another instance sees the latest state of each. The retry loop either
// never runs during the test or runs all the time, racing with the flush.
func TestShutdownFlushesQueuedAndPending(t *testing.T) {
	for _, tt := range []struct {
		name  string
		retry time.Duration
	}{
		{"retry loop idle", time.Hour},
		{"retry loop busy", time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			servers := memcachetest.StartN(t, 2)
			cfg := Config{
				Nodes:            nodesOf(servers...),
				Route:            "a",
				BackupWorkers:    1,
				BackupQueueSize:  1,
				RetryInterval:    tt.retry,
				OperationTimeout: opTimeout,
			}
			began := make(chan struct{})
			cfg.hooks.shutdownBegan = func() { close(began) }
			a, gate := newGatedInstance(t, cfg)
			cfg.Route = "b"
			cfg.hooks = hooks{}
			b := newInstance(t, cfg)

			x := newBrowser(t)
			mustDo(t, x, a, "POST", "/set?key=gate&value=1")
			gate.waitEntered(t)
			const n = 10
			browsers := changeSessions(t, a, n)
			st := a.m.Stats()
			require.NotZero(t, st.PendingRetries+st.QueueDepth, "Stats() = %+v before Shutdown, want queued or pending backups", st)

			a.srv.Close() // as http.Server.Shutdown would: no more requests
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.m.Shutdown(ctx) }()
			// Let the worker go only once Shutdown has begun, so it starts
			// with a full queue and sessions pending.
			waitFor(t, began, "Shutdown to begin")
			gate.open()
			select {
			case err := <-done:
				require.NoError(t, err, "Shutdown() = %v, want nil: it has 5s to flush", err)
			case <-time.After(5 * time.Second):
				require.FailNow(t, "Shutdown did not return within 5s", "want it to flush and return before its context ends")
			}

			for i, br := range append(browsers, x) {
				key, want := "v", "2"
				if br == x {
					key, want = "gate", "1"
				}
				body := mustDo(t, br, b, "GET", "/get?key="+key)
				assert.Equal(t, want, body, "session %d after Shutdown of its instance: GET /get?key=%s on another = %q, want %q", i, key, body, want)
			}
		})
	}
}

// TestShutdownFlushWaitsForRetryLoop pins a lost-backup race: the retry
// loop takes every pending session out of the pending set and then queues
// them one by one, so for a moment a session is neither pending nor queued.
// A Shutdown that checked "queue empty and nothing pending" in that moment
// returned nil and closed the Manager, and the session's last change never
// reached memcached. The test widens the moment by holding one pending
// session's lock while the retry loop wants it.
func TestShutdownFlushWaitsForRetryLoop(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{
		Nodes:            nodesOf(servers...),
		Route:            "a",
		BackupWorkers:    1,
		BackupQueueSize:  1,
		RetryInterval:    5 * time.Millisecond,
		OperationTimeout: opTimeout,
	}
	began := make(chan struct{})
	var retried sync.Map // *entry: the retry loop is about to queue it again
	var workersExited atomic.Int32
	cfg.hooks = hooks{
		shutdownBegan: func() { close(began) },
		retrying:      func(e *entry) { retried.Store(e, true) },
		workerExited:  func() { workersExited.Add(1) },
	}
	a, gate := newGatedInstance(t, cfg)
	cfg.hooks = hooks{}

	x := newBrowser(t)
	mustDo(t, x, a, "POST", "/set?key=gate&value=1")
	gate.waitEntered(t)
	browsers := changeSessions(t, a, 5) // one queued, four dropped and pending

	// Pick a session that is not in the queue: the retry loop keeps
	// taking it from the pending set and dropping it again.
	var victim *entry
	for _, br := range browsers {
		sid, _ := parseID(br.sessionID(a), true)
		e, ok := a.m.sessions.Get(sid.random)
		require.True(t, ok, "a.m.sessions.Get(%s) = _, false, want the session of %s held by a", sid.random, br.sessionID(a))
		e.mu.Lock()
		queued := e.queued
		e.mu.Unlock()
		if !queued {
			victim = e
			break
		}
	}
	require.NotNil(t, victim, "every session is queued, want some pending: the queue holds one")
	victim.mu.Lock()
	locked := true
	unlock := func() {
		if locked {
			locked = false
			victim.mu.Unlock()
		}
	}
	defer unlock()
	// The retry loop reaches the held session and blocks on its lock.
	retried.Delete(victim)
	eventually(t, 2*time.Second, "the retry loop did not reach the held session", func() bool {
		_, ok := retried.Load(victim)
		return ok
	})

	a.srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.m.Shutdown(ctx) }()
	waitFor(t, began, "Shutdown to begin")
	gate.open()
	// Wait until the worker has stored everything else: the backlog is
	// then only the retry pass blocked on the held session. Then either
	// Shutdown still waits for the retry loop (correct), or it has given up
	// on the held session and is closing the Manager: let the worker exit
	// first, so the held session can only be lost, never stored by luck.
	q := replicaOf(a.m).queue
	eventually(t, 3*time.Second, "the backup worker did not finish", func() bool {
		closing := a.m.closed.Load()
		return closing && workersExited.Load() == 1 ||
			!closing && q.backlog.Load() == 1 && len(q.ch) == 0
	})
	unlock()
	select {
	case err := <-done:
		require.NoError(t, err, "Shutdown() = %v, want nil: it has 5s to flush", err)
	case <-time.After(5 * time.Second):
		require.FailNow(t, "Shutdown did not return within 5s", "want it to flush and return before its context ends")
	}
	// Only now start instance b, so that while a stops, its goroutines
	// are the only backup goroutines in the process.
	cfg.Route = "b"
	b := newInstance(t, cfg)
	for i, br := range browsers {
		body := mustDo(t, br, b, "GET", "/get?key=v")
		assert.Equal(t, "2", body, "session %d after Shutdown of its instance: GET /get?key=v on another = %q, want %q", i, body, "2")
	}
}
