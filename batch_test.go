package mcsession

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

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
	if st.BackupsWritten != n {
		t.Fatalf("BackupsWritten = %d, want %d", st.BackupsWritten, n)
	}
	if min := uint64((n + maxBatch - 1) / maxBatch); st.BackupBatches < min || st.BackupBatches > min+2 {
		t.Errorf("BackupBatches = %d for %d sessions queued at once, want %d to %d (batches of up to %d)", st.BackupBatches, n, min, min+2, maxBatch)
	}
	other := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "b"})
	for i, e := range entries {
		id, _ := parseID(e.id, true)
		l := replicaOf(other).load(id)
		if l.e == nil {
			t.Errorf("session %d: not in memcached", i)
			continue
		}
		if v, _ := l.e.values.get("user"); v != fmt.Sprintf("u%d", i) {
			t.Errorf("session %d: stored %v, want u%d", i, v, i)
		}
	}
}
