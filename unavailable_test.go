package mcsession

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestUnreachableHomeIsNotGone pins "unavailable is not gone": a session
// whose home node is hung (and so known down) while another instance takes
// it over is out of reach, not gone, even when every other node answers
// "miss": the cookie is kept, the handler sees no session meanwhile, and
// the session is back, intact, once its node answers again. (It used to be
// declared gone at the second request: the cookie was deleted and the
// session lost, though its data was intact.)
func TestUnreachableHomeIsNotGone(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	// One copy: with two, the other node holds the session and serves it
	// (TestTwoCopiesSurviveInstanceAndNode).
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: opTimeout, ProbeInterval: 20 * time.Millisecond, Copies: 1}
	a := newInstance(t, cfg)
	br := newBrowser(t)
	checkSet(t, br, a, "user", "alice")
	waitIdle(t, a.m)
	id := br.sessionID(a)
	home := serverOf(t, servers, mustParseID(t, id).node)
	a.crash()

	cfg.Route = "b"
	b := newInstance(t, cfg)
	home.Pause()
	t.Cleanup(home.Resume)
	br.setSessionID(b, id)
	for i := range 3 { // the first finds the node hung, the others know it down
		code, body := br.do(b, http.MethodGet, "/get?key=user")
		require.Equal(t, http.StatusOK, code, "request %d while the home node hangs", i)
		assert.Empty(t, body, "request %d while the home node hangs: the handler sees no session", i)
		assert.Equal(t, id, br.sessionID(b), "request %d while the home node hangs: the cookie is kept", i)
	}
	st := b.m.Stats()
	assert.Equal(t, 1, st.NodesUp, "Stats().NodesUp while the home node hangs")
	assert.Zero(t, st.LoadsMiss, "Stats().LoadsMiss: out of reach is no miss")

	home.Resume()
	eventually(t, 5*time.Second, "the home node was not marked up again", func() bool { return b.m.Stats().NodesUp == 2 })
	code, body := br.do(b, http.MethodGet, "/get?key=user")
	require.Equal(t, http.StatusOK, code, "request once the home node answers again")
	assert.Equal(t, "alice", body, "the session once its home node answers again: taken over intact")
}
