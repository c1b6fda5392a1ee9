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
