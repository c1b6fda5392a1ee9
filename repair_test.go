package mcsession

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/mcwire"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestRestartedNodeIsRepaired pins restart repair: a memcached node that
// restarts empty while nothing writes (reads cost no memcached operation)
// is noticed by the periodic check, and every local session that had its
// copy there is stored again, so the next instance crash loses none. (It
// used to go unnoticed: the next crash lost every session on that node.)
func TestRestartedNodeIsRepaired(t *testing.T) {
	servers := memcachetest.StartN(t, 3)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: opTimeout, RestartCheckInterval: 20 * time.Millisecond}
	m := newTestManager(t, cfg)
	const n = 60
	ids := make([]string, n)
	for i := range ids {
		rec := serveSession(m, "", func(s *Session) { s.Set("user", "alice") })
		ids[i] = setCookieValue(t, rec.Result().Header)
		require.NotEmpty(t, ids[i], "session %d's cookie", i)
	}
	waitIdle(t, m)
	r := replicaOf(m)
	n1 := r.cluster.load().byID["n1"]
	eventually(t, 5*time.Second, "n1's server process was never seen", func() bool {
		n1.mu.Lock()
		defer n1.mu.Unlock()
		return n1.instance != (mcwire.Instance{})
	})
	var onN1 []string // sessions with a copy on n1: their home, or their second node
	for _, id := range ids {
		e := localEntry(t, m, id)
		e.mu.Lock()
		if e.stored.on("n1") {
			onN1 = append(onN1, id)
		}
		e.mu.Unlock()
	}
	require.NotEmpty(t, onN1, "some of %d sessions have a copy on n1", n)
	require.Less(t, len(onN1), n, "some of %d sessions have no copy on n1", n)

	servers[0].Restart() // empty; nothing writes meanwhile
	eventually(t, 5*time.Second, "the restart of n1 was not noticed", func() bool { return m.Stats().NodeRestarts == 1 })
	waitIdle(t, m)
	// Every session has a copy where its ID says. (A check that ran while
	// n1 was restarting found it down: then its sessions moved to n2, new
	// IDs and all, which protects them just as well.)
	for _, id := range ids {
		e := localEntry(t, m, id)
		e.writeMu.Lock()
		cur, stored := e.id, e.stored
		e.writeMu.Unlock()
		assert.Equal(t, mustParseID(t, cur).node, stored[0].node, "session %s: its first copy is on its home node", cur)
		for _, a := range stored {
			require.NotEmpty(t, a.key, "session %s (first %s): two copies after n1 restarted empty, have %v", cur, id, stored)
			at := mustParseID(t, cur)
			at.node = a.node
			v, found := storedSession(t, serverOf(t, servers, a.node), at.String())
			assert.True(t, found, "session %s (first %s): its copy on %s, after n1 restarted empty", cur, id, a.node)
			assert.Equal(t, "alice", v["user"], "session %s's copy on %s", cur, a.node)
		}
	}
	st := m.Stats()
	assert.LessOrEqual(t, st.SessionsRepaired, uint64(len(onN1)), "Stats().SessionsRepaired: at most the sessions with a copy on n1")
	assert.Positive(t, st.SessionsRepaired+st.Relocations, "Stats(): the sessions of n1 were repaired in place or moved")
}
