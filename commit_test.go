package mcsession

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/mcwire"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

// joinerOf returns the wire of node id of m, whose Batching says what its
// group commit is doing.
func joinerOf(m *Manager, id string) *mcwire.Node {
	return replicaOf(m).cluster.load().byID[id].wire
}

// startStores sends a /set for each browser from its own goroutine, in
// order, the first alone until it is in flight and the others queued
// behind it, and returns a wait for all the responses.
func startStores(t *testing.T, in *instance, j *mcwire.Node, browsers []*browser, value func(i int) string) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for i, br := range browsers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// assert, not require: this is not the test's goroutine.
			code, body := br.do(in, http.MethodPost, "/set?key=v&value="+value(i))
			assert.Equal(t, http.StatusOK, code, "user %d: POST /set?key=v&value=%s = %d %q, want 200", i, value(i), code, body)
		}()
		if i == 0 {
			eventually(t, 5*time.Second, "the first store in flight", func() bool { busy, _ := j.Batching(); return busy })
		}
	}
	eventually(t, 5*time.Second, fmt.Sprintf("%d stores queued behind the first", len(browsers)-1), func() bool {
		_, n := j.Batching()
		return n == len(browsers)-1
	})
	return wg.Wait
}

// Synchronous stores that overlap share a batch: while one set waits for a
// paused memcached, ten more queue, and all ten go in the next write. Each
// session is then readable by another instance.
func TestSyncStoresShareABatch(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", SyncBackup: true,
		OperationTimeout: 5 * time.Second, BackupTimeout: 8 * time.Second}
	a := newInstance(t, cfg)
	browsers := make([]*browser, 11)
	for i := range browsers {
		browsers[i] = newBrowser(t)
		browsers[i].do(a, http.MethodPost, "/set?key=v&value=first")
	}
	before, ops := a.m.Stats(), servers[0].Ops(t)

	servers[0].Pause()
	wait := startStores(t, a, joinerOf(a.m, "n1"), browsers, func(i int) string { return fmt.Sprint(i) })
	servers[0].Resume()
	wait()

	after := a.m.Stats()
	written := after.BackupsWritten - before.BackupsWritten
	assert.Equal(t, uint64(11), written, "Stats().BackupsWritten grew by %d, want 11, one per store", written)
	batches := after.BackupBatches - before.BackupBatches
	assert.Equal(t, uint64(2), batches, "Stats().BackupBatches grew by %d, want 2 (the one in flight, then the ten queued behind it)", batches)
	served := opsDelta(t, servers[0], ops)
	assert.Equal(t, uint64(11), served, "memcached served %d operations, want 11 sets", served)
	busy, n := joinerOf(a.m, "n1").Batching()
	assert.False(t, busy, "n1 Batching() after the stores = busy %v, %d queued, want idle", busy, n)
	assert.Zero(t, n, "n1 Batching() after the stores = busy %v, %d queued, want idle", busy, n)
	a.crash()
	b := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, br := range browsers {
		_, got := br.do(b, http.MethodGet, "/get?key=v")
		assert.Equal(t, fmt.Sprint(i), got, "user %d after the owner crashed: GET /get?key=v on another instance = %q, want %d", i, got, i)
	}
}

// Sets queued behind a batch that finds its node dead are not sent there:
// they fail at once and move to the other node, with the one that was in
// flight.
func TestQueuedSyncStoresMoveOffAKilledNode(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", SyncBackup: true, Copies: 1,
		OperationTimeout: 5 * time.Second, BackupTimeout: 8 * time.Second}
	a := newInstance(t, cfg)
	var onN1 []*browser // users whose sessions live on n1
	for len(onN1) < 6 {
		br := newBrowser(t)
		br.do(a, http.MethodPost, "/set?key=v&value=first")
		if strings.Contains(br.sessionID(a), ".n1.") {
			onN1 = append(onN1, br)
		}
	}
	opsN2 := servers[1].Ops(t)

	servers[0].Pause()
	wait := startStores(t, a, joinerOf(a.m, "n1"), onN1, func(i int) string { return fmt.Sprint("v", i) })
	servers[0].Kill() // the set in flight sees the connection close
	wait()

	// Each session is written to n2 once by its request; the rescue pass
	// that the node's death starts may find a session whose copy is still
	// listed on n1 while that write is in flight, and write it once more.
	served := opsDelta(t, servers[1], opsN2)
	assert.GreaterOrEqual(t, served, uint64(len(onN1)), "n2 served %d operations, want at least %d sets (every session moved)", served, len(onN1))
	assert.LessOrEqual(t, served, uint64(2*len(onN1)), "n2 served %d operations, want at most %d sets (each session at most twice)", served, 2*len(onN1))
	for i, br := range onN1 {
		br.do(a, http.MethodGet, "/get?key=v") // brings the new cookie if the ID changed after the response
		id := br.sessionID(a)
		assert.Contains(t, id, ".n2.", "user %d: ID %q after n1 died, want it on n2", i, id)
	}
	a.crash()
	b := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, br := range onN1 {
		_, got := br.do(b, http.MethodGet, "/get?key=v")
		assert.Equal(t, fmt.Sprint("v", i), got, "user %d after the owner crashed: GET /get?key=v on another instance = %q, want v%d", i, got, i)
	}
}

// A set for a node marked down is not sent: the node's wire asks the
// Manager's health, and fails the set at once with an error that moves the
// session to another node.
func TestSetToADownNodeIsNotSent(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a"})
	r := replicaOf(m)
	n := r.cluster.load().byID["n1"]
	r.cluster.failed(n, io.ErrUnexpectedEOF)
	require.False(t, n.up.Load(), "n1 after an unreachable error: marked down")
	ops := servers[0].Ops(t)

	set := &mcwire.Set{Key: "k", Value: []byte("v"), Exp: 60}
	n.wire.SetJoined(set)
	assert.ErrorIs(t, set.Err, mcwire.ErrNotSent, "set to a down node: not sent")
	assert.Equal(t, mcwire.Unreachable, mcwire.Classify(set.Err), "set to a down node: classed unreachable, so the store moves on")
	assert.Zero(t, opsDelta(t, servers[0], ops), "memcached operations for a set to a node marked down")
	busy, q := n.wire.Batching()
	assert.False(t, busy, "after the set: no batch in flight")
	assert.Zero(t, q, "after the set: nothing queued")
}

// Many users writing at once with SyncBackup: every store shares batches
// with whatever else is in flight, and each user's last value is the one
// another instance reads after the owner crashes.
func TestConcurrentSyncUsersLoseNothing(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	a := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", SyncBackup: true})
	const users, writes = 30, 10
	browsers := make([]*browser, users)
	var wg sync.WaitGroup
	for i := range browsers {
		browsers[i] = newBrowser(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range writes {
				browsers[i].do(a, http.MethodPost, fmt.Sprintf("/set?key=v&value=%d-%d", i, w))
			}
		}()
	}
	wg.Wait()
	st := a.m.Stats()
	assert.GreaterOrEqual(t, st.BackupsWritten, uint64(users*writes), "Stats().BackupsWritten = %d after %d writes, want at least %d", st.BackupsWritten, users*writes, users*writes)
	assert.LessOrEqual(t, st.BackupBatches, st.CopiesWritten, "Stats().BackupBatches = %d for %d sets (copies), want no more batches than sets", st.BackupBatches, st.CopiesWritten)
	t.Logf("%d sets in %d batches", st.CopiesWritten, st.BackupBatches)
	a.crash()
	b := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, br := range browsers {
		_, got := br.do(b, http.MethodGet, "/get?key=v")
		assert.Equal(t, fmt.Sprintf("%d-%d", i, writes-1), got, "user %d after the owner crashed: GET /get?key=v on another instance = %q, want %d-%d, the last write", i, got, i, writes-1)
	}
}

// TestNotSentSetLeavesTheNodeUp pins that a set the group commit did not
// send, because the node was down when its batch's turn came, proves
// nothing about the node now: a probe may have marked it up meanwhile, and
// it must not be marked down again (with an ERROR and its sessions moved).
func TestNotSentSetLeavesTheNodeUp(t *testing.T) {
	mc := memcachetest.Start(t)
	logs := &logRecorder{}
	m := newTestManager(t, Config{Nodes: nodesOf(mc), Route: "a", SyncBackup: true, Logger: slog.New(logs)})
	n := replicaOf(m).cluster.load().list[0]
	var looked atomic.Bool
	old := n.wire
	// The batch's sender finds the node down; right after, it is up again.
	n.wire = mcwire.New(n.Addr, time.Second, 4, func() bool { return looked.Swap(true) && n.up.Load() }, nil)
	old.Close()

	serveSession(m, "", func(s *Session) { s.Set("k", "v") })
	st := m.Stats()
	assert.Equal(t, 1, st.NodesUp, "Stats().NodesUp after a set that was not sent: the node stays up")
	assert.Empty(t, logs.atLeast(slog.LevelError), "errors logged for a set that was not sent: none")
	assert.Equal(t, uint64(1), st.BackupsWritten, "Stats().BackupsWritten: the store is retried and written")
}
