package mcsession

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/mcsession/mcsession/internal/memcacheserver"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

func newOps(prefix string, sizes ...int) []*setOp {
	var ops []*setOp
	for i, n := range sizes {
		ops = append(ops, &setOp{key: fmt.Sprintf("%s-%d", prefix, i), blob: bytes.Repeat([]byte{byte('a' + i)}, n), exp: 600})
	}
	return ops
}

// A batch gets one reply per set, in order, even when one set in the middle
// is refused: memcached drops that item's data and goes on with the next.
func TestSetterBatchRepliesPerSet(t *testing.T) {
	srv := memcachetest.Start(t, memcachetest.Options{MaxItemSize: "1m"})
	s := newSetter(srv.Addr(), time.Second, 2)
	defer s.close()

	ops := newOps("batch", 100, 2<<20, 300, 0, 40<<10)
	s.setMany(ops)
	for i, op := range ops {
		if i == 1 {
			if op.err == nil || !refusedTooLarge(op.err) || classify(op.err) != classBadRequest {
				t.Errorf("op %d (2 MB, -I 1m): err = %v, want memcached's too-large refusal, a bad request", i, op.err)
			}
			continue
		}
		if op.err != nil {
			t.Errorf("op %d: err = %v, want stored", i, op.err)
			continue
		}
		got, found, err := srv.Get(op.key)
		if err != nil || !found || !bytes.Equal(got, op.blob) {
			t.Errorf("op %d: memcached has %d bytes (found %v, err %v), want the %d bytes sent", i, len(got), found, err, len(op.blob))
		}
	}
	if _, found, _ := srv.Get(ops[1].key); found {
		t.Errorf("the refused item is in memcached")
	}

	// The connection went back to the pool and still works.
	again := newOps("again", 10, 20)
	s.setMany(again)
	for i, op := range again {
		if op.err != nil {
			t.Errorf("second batch op %d: %v", i, op.err)
		}
	}
	// memcached counts no set for the item it refused for its size.
	if st, err := srv.Stats(); err != nil || st.CmdSet != 6 {
		t.Errorf("memcached counted %d sets (err %v), want 6: one per accepted op, no resends", st.CmdSet, err)
	}
}

// After a restart every pooled connection is dead; the batch goes out again
// on a fresh connection instead of failing. With the server gone, every set
// of the batch fails as unreachable.
func TestSetterKilledAndRestarted(t *testing.T) {
	srv := memcachetest.Start(t)
	s := newSetter(srv.Addr(), time.Second, 2)
	defer s.close()
	ops := newOps("k", 10, 10)
	s.setMany(ops)
	if ops[0].err != nil || ops[1].err != nil {
		t.Fatalf("first batch: %v, %v", ops[0].err, ops[1].err)
	}

	srv.Kill()
	down := newOps("down", 10, 10, 10)
	s.setMany(down)
	for i, op := range down {
		if op.err == nil || classify(op.err) != classUnreachable {
			t.Errorf("server killed: op %d err = %v, want an unreachable-node error", i, op.err)
		}
	}

	srv.Restart()
	s.setMany(newOps("warm", 1)) // whatever the pool holds now
	srv.Kill()
	srv.Restart()
	up := newOps("up", 10, 10)
	s.setMany(up)
	for i, op := range up {
		if op.err != nil {
			t.Errorf("after a restart: op %d err = %v, want stored on a fresh connection", i, op.err)
		}
		if _, found, _ := srv.Get(op.key); !found {
			t.Errorf("after a restart: op %d not in memcached", i)
		}
	}
}

// A paused (SIGSTOP) node is a black hole: the batch fails within the
// timeout, every set with a timeout.
func TestSetterPausedNodeTimesOut(t *testing.T) {
	srv := memcachetest.Start(t)
	s := newSetter(srv.Addr(), 200*time.Millisecond, 2)
	defer s.close()
	srv.Pause()
	defer srv.Resume()

	ops := newOps("p", 10, 10, 10)
	start := time.Now()
	s.setMany(ops)
	took := time.Since(start)
	if took > 2*time.Second {
		t.Errorf("batch to a paused node took %v, want about the 200ms timeout", took)
	}
	for i, op := range ops {
		if op.err == nil || classify(op.err) != classUnreachable {
			t.Errorf("op %d err = %v, want a timeout (unreachable)", i, op.err)
		}
	}
}

func TestSetterClosed(t *testing.T) {
	s := newSetter("127.0.0.1:1", time.Second, 2)
	s.close()
	ops := newOps("c", 1)
	s.setMany(ops)
	if ops[0].err != errSetterClosed {
		t.Errorf("after close: err = %v, want errSetterClosed", ops[0].err)
	}
}

// Sessions changed close together are written in batches, and every one of
// them lands intact: another instance takes each over with its value.
func TestAsyncBackupsAreBatched(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "a"})
	const users = 120
	browsers := make([]*browser, users)
	var wg sync.WaitGroup
	for i := range browsers {
		browsers[i] = newBrowser(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if code, _ := browsers[i].do(a, http.MethodPost, fmt.Sprintf("/set?key=user&value=u%d", i)); code != http.StatusOK {
				t.Errorf("user %d: set: status %d", i, code)
			}
		}()
	}
	wg.Wait()
	waitIdle(t, a.m)

	st := a.m.Stats()
	if st.BackupsWritten < users {
		t.Fatalf("BackupsWritten = %d, want at least %d", st.BackupsWritten, users)
	}
	// The requests arrive as fast as the client sends them; on a slow
	// machine they may trickle in, so only some batching is certain here.
	// TestQueuedSessionsGoOutInFullBatches pins the batch size.
	if st.BackupBatches == 0 || st.BackupBatches >= st.BackupsWritten {
		t.Errorf("BackupBatches = %d for %d sets, want fewer batches than sets", st.BackupBatches, st.BackupsWritten)
	}
	t.Logf("%d sets in %d batches", st.BackupsWritten, st.BackupBatches)

	a.crash()
	b := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, br := range browsers {
		if _, got := br.do(b, http.MethodGet, "/get?key=user"); got != fmt.Sprintf("u%d", i) {
			t.Errorf("user %d after the crash: value %q, want u%d", i, got, i)
		}
	}
	if got := b.m.Stats().Takeovers; got != users {
		t.Errorf("Takeovers = %d, want %d", got, users)
	}
}

// A batch that meets a dead node marks it down and moves its sessions: each
// session of the batch is stored on the other node within the same pass.
func TestBatchMovesSessionsOffAKilledNode(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "a"})
	const users = 40
	browsers := make([]*browser, users)
	for i := range browsers {
		browsers[i] = newBrowser(t)
		browsers[i].do(a, http.MethodPost, "/set?key=v&value=1")
	}
	waitIdle(t, a.m)

	servers[0].Kill()
	var wg sync.WaitGroup
	for i, br := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br.do(a, http.MethodPost, fmt.Sprintf("/set?key=v&value=%d", i+2))
		}()
	}
	wg.Wait()
	waitIdle(t, a.m)
	// Every session now lives on n2 (a second request brings the new cookie).
	for i, br := range browsers {
		br.do(a, http.MethodGet, "/get?key=v")
		if id := br.sessionID(a); !strings.Contains(id, ".n2.") {
			t.Errorf("user %d: ID %q after n1 died, want it on n2", i, id)
		}
	}
	a.crash()
	b := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, br := range browsers {
		if _, got := br.do(b, http.MethodGet, "/get?key=v"); got != fmt.Sprint(i+2) {
			t.Errorf("user %d after the owner crashed: %q, want %d", i, got, i+2)
		}
	}
}

// The embedded server (the demo's fallback) answers batches the same way.
func TestSetterBatchOnEmbeddedServer(t *testing.T) {
	srv, err := memcacheserver.Start("127.0.0.1:0", memcacheserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	s := newSetter(srv.Addr(), time.Second, 2)
	defer s.close()
	ops := newOps("e", 10, 5000, 0, 70)
	s.setMany(ops)
	for i, op := range ops {
		if op.err != nil {
			t.Errorf("op %d: %v", i, op.err)
		}
	}
	c := memcache.New(srv.Addr())
	for i, op := range ops {
		it, err := c.Get(op.key)
		if err != nil || !bytes.Equal(it.Value, op.blob) {
			t.Errorf("op %d: get: %v", i, err)
		}
	}
}

// Sessions queued together go out together: 150 sessions queued at once
// are written in three or so batches (at most 64 sets each), and each
// lands under its own key with its own value.
func TestQueuedSessionsGoOutInFullBatches(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a", BackupWorkers: 1})
	const n = 150
	entries := make([]*entry, n)
	for i := range entries {
		e := m.create()
		e.mu.Lock()
		e.values.set("user", fmt.Sprintf("u%d", i))
		e.mu.Unlock()
		entries[i] = e
	}
	// One worker, busy collecting the first session for 2 ms: every other
	// session is queued before it sends.
	for _, e := range entries {
		m.backup.schedule(e)
	}
	waitIdle(t, m)
	st := m.Stats()
	if st.BackupsWritten != n {
		t.Fatalf("BackupsWritten = %d, want %d", st.BackupsWritten, n)
	}
	if min := uint64((n + maxBatch - 1) / maxBatch); st.BackupBatches < min || st.BackupBatches > min+2 {
		t.Errorf("BackupBatches = %d for %d sessions queued at once, want %d to %d (batches of up to %d)", st.BackupBatches, n, min, min+2, maxBatch)
	}
	other := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, e := range entries {
		id, _ := parseID(e.id, true)
		l := other.backup.load(id)
		if l.e == nil {
			t.Errorf("session %d: not in memcached", i)
			continue
		}
		if v, _ := l.e.values.get("user"); v != fmt.Sprintf("u%d", i) {
			t.Errorf("session %d: stored %v, want u%d", i, v, i)
		}
	}
}
