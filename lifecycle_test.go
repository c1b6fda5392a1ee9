package mcsession

import (
	"context"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestChangeAfterShutdownIsNoOutage pins what Shutdown's doc promises: after
// Shutdown the Manager still serves sessions from memory but writes nothing
// to memcached, whether SyncBackup is set or not, and that is not a node
// outage. (Before, a SyncBackup store after Shutdown met the closed
// connections, was taken for an unreachable node, marked every node down
// for good and logged an ERROR.)
func TestChangeAfterShutdownIsNoOutage(t *testing.T) {
	for _, sync := range []bool{false, true} {
		name := map[bool]string{false: "async", true: "SyncBackup"}[sync]
		t.Run(name, func(t *testing.T) {
			mc := memcachetest.Start(t)
			logs := &logRecorder{}
			in := newInstance(t, Config{Nodes: nodesOf(mc), Route: "a", SyncBackup: sync, Logger: slog.New(logs)})
			br := newBrowser(t)
			code, _ := br.do(in, http.MethodPost, "/set?key=k&value=before")
			require.Equal(t, http.StatusOK, code, "POST /set before Shutdown")
			id := br.sessionID(in)
			require.NoError(t, in.m.Shutdown(context.Background()), "Shutdown with a healthy node")
			stored, found := storedSession(t, mc, id)
			require.True(t, found, "Shutdown must have written session %s", id)
			require.Equal(t, "before", stored["k"], "the copy Shutdown wrote")
			opsBefore := mc.Ops(t)

			code, _ = br.do(in, http.MethodPost, "/set?key=k&value=after")
			require.Equal(t, http.StatusOK, code, "POST /set after Shutdown: requests are still served")
			_, body := br.do(in, http.MethodGet, "/get?key=k")
			assert.Equal(t, "after", body, "GET /get?key=k after Shutdown: the change is kept in memory")

			st := in.m.Stats()
			assert.Equal(t, st.Nodes, st.NodesUp, "Stats() after a change made after Shutdown: NodesUp = %d, want all %d (closing is not an outage)", st.NodesUp, st.Nodes)
			assert.Zero(t, st.BackupsFailed, "Stats().BackupsFailed after Shutdown: a change made after Shutdown is not a failed backup")
			assert.Equal(t, uint64(1), st.ChangesAfterClose, "Stats().ChangesAfterClose: the one change made after Shutdown")
			assert.Empty(t, logs.atLeast(slog.LevelError), "errors logged: a change after Shutdown must not read as a node failure")
			assert.Equal(t, uint64(0), mc.Ops(t)-opsBefore, "memcached operations after Shutdown: none")
			stored, _ = storedSession(t, mc, id)
			assert.Equal(t, "before", stored["k"], "memcached's copy after Shutdown: unchanged")
		})
	}
}

// TestLogoutAfterShutdownTakesEffect pins that the security operations work
// whatever the order of shutdown: after Shutdown nothing is written, but an
// Invalidate still deletes the session's copy and a RenewID the copy under
// the old ID, at once, so no other instance can load them. (They were
// skipped with every other write once the connections were closed.)
func TestLogoutAfterShutdownTakesEffect(t *testing.T) {
	for _, op := range []string{"/invalidate", "/renew"} {
		t.Run(op, func(t *testing.T) {
			mc := memcachetest.Start(t)
			cfg := Config{Nodes: nodesOf(mc), Route: "a"}
			a := newInstance(t, cfg)
			br := newBrowser(t)
			checkSet(t, br, a, "user", "alice")
			waitIdle(t, a.m)
			id := br.sessionID(a)
			_, found := storedSession(t, mc, id)
			require.True(t, found, "session %s stored before Shutdown", id)
			require.NoError(t, a.m.Shutdown(context.Background()), "Shutdown")

			code, _ := br.do(a, http.MethodPost, op)
			require.Equal(t, http.StatusOK, code, "POST %s after Shutdown", op)
			_, found = storedSession(t, mc, id)
			assert.False(t, found, "copy under %s after POST %s after Shutdown: deleted at once", id, op)
			assert.Equal(t, uint64(1), a.m.Stats().ChangesAfterClose, "Stats().ChangesAfterClose after POST %s after Shutdown", op)

			cfg.Route = "b"
			b := newInstance(t, cfg)
			other := newBrowser(t)
			other.setSessionID(b, id)
			_, body := other.do(b, http.MethodGet, "/get?key=user")
			assert.Empty(t, body, "GET /get?key=user with the old ID %s on another instance: the session must not be taken over", id)
		})
	}
}

// TestLoadAfterShutdownIsNoLoadError pins that a closed Manager's loads
// fail quietly: its connections are closed, not the node, so nothing is
// counted as a load error or logged as a backend fault, and the cookie is
// kept (the session is out of reach, not gone).
func TestLoadAfterShutdownIsNoLoadError(t *testing.T) {
	mc := memcachetest.Start(t)
	cfg := Config{Nodes: nodesOf(mc), Route: "a", Keys: testKeys()} // Keys: no startup warning
	a := newInstance(t, cfg)
	br := newBrowser(t)
	checkSet(t, br, a, "user", "alice")
	require.NoError(t, a.m.Shutdown(context.Background()), "Shutdown of a")

	logs := &logRecorder{}
	cfg.Route, cfg.Logger = "b", slog.New(logs)
	b := newInstance(t, cfg)
	require.NoError(t, b.m.Shutdown(context.Background()), "Shutdown of b")
	br.setSessionID(b, br.sessionID(a))
	code, _ := br.do(b, http.MethodGet, "/get?key=user")
	require.Equal(t, http.StatusOK, code, "GET after Shutdown: served")
	st := b.m.Stats()
	assert.Zero(t, st.LoadsError, "Stats().LoadsError of a closed Manager's load: none, no node failed")
	assert.Equal(t, st.Nodes, st.NodesUp, "Stats().NodesUp after a closed Manager's load")
	assert.Empty(t, logs.atLeast(slog.LevelWarn), "warnings for a closed Manager's load: none")
}
