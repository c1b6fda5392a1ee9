package mcsession

import (
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

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
			// assert, not require: this is not the test's goroutine.
			code, body := browsers[i].do(a, http.MethodPost, fmt.Sprintf("/set?key=user&value=u%d", i))
			assert.Equal(t, http.StatusOK, code, "user %d: POST /set?key=user&value=u%d = %d %q, want 200", i, i, code, body)
		}()
	}
	wg.Wait()
	waitIdle(t, a.m)

	st := a.m.Stats()
	require.GreaterOrEqual(t, st.BackupsWritten, uint64(users), "Stats().BackupsWritten = %d after %d new sessions, want at least %d", st.BackupsWritten, users, users)
	// The requests arrive as fast as the client sends them; on a slow
	// machine they may trickle in, so only some batching is certain here.
	// TestQueuedSessionsGoOutInFullBatches pins the batch size.
	assert.NotZero(t, st.BackupBatches, "Stats().BackupBatches = 0 for %d sets, want at least one batch", st.CopiesWritten)
	assert.Less(t, st.BackupBatches, st.CopiesWritten, "Stats().BackupBatches = %d for %d sets (two copies each), want fewer batches than sets", st.BackupBatches, st.CopiesWritten)
	t.Logf("%d sets in %d batches", st.CopiesWritten, st.BackupBatches)

	a.crash()
	b := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, br := range browsers {
		_, got := br.do(b, http.MethodGet, "/get?key=user")
		assert.Equal(t, fmt.Sprintf("u%d", i), got, "user %d after the crash: GET /get?key=user on another instance = %q, want u%d", i, got, i)
	}
	takeovers := b.m.Stats().Takeovers
	assert.Equal(t, uint64(users), takeovers, "Stats().Takeovers = %d on the instance that took over, want %d, one per user", takeovers, users)
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
		id := br.sessionID(a)
		assert.Contains(t, id, ".n2.", "user %d: ID %q after n1 died, want it on n2", i, id)
	}
	a.crash()
	b := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, br := range browsers {
		_, got := br.do(b, http.MethodGet, "/get?key=v")
		assert.Equal(t, fmt.Sprint(i+2), got, "user %d after the owner crashed: GET /get?key=v on another instance = %q, want %d", i, got, i+2)
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
		replicaOf(m).schedule(e)
	}
	waitIdle(t, m)
	st := m.Stats()
	require.Equal(t, uint64(n), st.BackupsWritten, "Stats().BackupsWritten = %d after %d sessions were queued, want %d", st.BackupsWritten, n, n)
	fewest := uint64((n + maxBatch - 1) / maxBatch)
	assert.GreaterOrEqual(t, st.BackupBatches, fewest, "Stats().BackupBatches = %d for %d sessions queued at once, want %d to %d (batches of up to %d)", st.BackupBatches, n, fewest, fewest+2, maxBatch)
	assert.LessOrEqual(t, st.BackupBatches, fewest+2, "Stats().BackupBatches = %d for %d sessions queued at once, want %d to %d (batches of up to %d)", st.BackupBatches, n, fewest, fewest+2, maxBatch)
	other := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, e := range entries {
		id, _ := parseID(e.id, true)
		l := replicaOf(other).load(id)
		if !assert.NotNil(t, l.e, "session %d: load(%s) by another Manager found nothing, want it in memcached", i, e.id) {
			continue
		}
		v, _ := l.e.values.get("user")
		assert.Equal(t, fmt.Sprintf("u%d", i), v, "session %d: stored user = %v, want u%d", i, v, i)
	}
}
