package mcsession

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestInvalidatedSessionStaysDeadUntilDeleted pins the bug where, in async
// mode, a request with the old cookie that arrived before the backup's
// delete loaded the logged-out session back from memcached. The only backup
// worker is held at a gate, so the delete waits in the queue.
func TestInvalidatedSessionStaysDeadUntilDeleted(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	in, gate := newGatedInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", BackupWorkers: 1})
	victim := newBrowser(t)
	mustDo(t, victim, in, "POST", "/set?key=user&value=ada")
	waitIdle(t, in.m)
	oldID := victim.sessionID(in)
	require.True(t, isStored(t, servers[0], oldID), "backup of %s before the logout: the delete must have a copy to remove", oldID)

	holder := newBrowser(t)
	mustDo(t, holder, in, "POST", "/set?key=gate&value=1")
	gate.waitEntered(t)
	mustDo(t, victim, in, "POST", "/invalidate")
	thief := newBrowser(t)
	thief.setSessionID(in, oldID)
	require.Empty(t, mustDo(t, thief, in, "GET", "/get?key=user"),
		"GET /get?key=user with the invalidated cookie while its delete is queued: the stored copy must not be loaded back")

	gate.open()
	waitIdle(t, in.m)
	_, found, err := servers[0].Get(memcacheKey(DefaultKeyPrefix, oldID))
	require.NoError(t, err, "memcached Get(key of %s)", oldID)
	require.False(t, found, "backup of the invalidated session %s after the queue drained: want deleted", oldID)
	thief.setSessionID(in, oldID)
	require.Empty(t, mustDo(t, thief, in, "GET", "/get?key=user"),
		"GET /get?key=user with the invalidated cookie after its delete: want no session")
	assert.Equal(t, 1, in.m.Stats().LocalSessions,
		"Stats().LocalSessions after the delete: only the holder's session; the tombstone must be gone")
}

// TestRenewedIDIsDeadAtOnce pins that after RenewID the old (possibly
// fixated) ID cannot load the pre-renewal backup, even before the session
// is stored under its new ID.
func TestRenewedIDIsDeadAtOnce(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	in, gate := newGatedInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", BackupWorkers: 1})
	victim := newBrowser(t)
	mustDo(t, victim, in, "POST", "/set?key=user&value=anonymous")
	waitIdle(t, in.m)
	oldID := victim.sessionID(in)
	require.True(t, isStored(t, servers[0], oldID), "backup of %s before RenewID: the pre-renewal copy an attacker could load", oldID)

	holder := newBrowser(t)
	mustDo(t, holder, in, "POST", "/set?key=gate&value=1")
	gate.waitEntered(t)
	mustDo(t, victim, in, "POST", "/renew")
	mustDo(t, victim, in, "POST", "/set?key=user&value=ada")
	require.NotEqual(t, oldID, victim.sessionID(in), "cookie after POST /renew: RenewID must give a new ID")
	attacker := newBrowser(t)
	attacker.setSessionID(in, oldID)
	require.Empty(t, mustDo(t, attacker, in, "GET", "/get?key=user"),
		"GET /get?key=user with the pre-renewal ID while the renewal is queued: the old backup must not be loaded")

	gate.open()
	waitIdle(t, in.m)
	attacker.setSessionID(in, oldID)
	require.Empty(t, mustDo(t, attacker, in, "GET", "/get?key=user"),
		"GET /get?key=user with the pre-renewal ID after the store: want no session")
	require.Equal(t, "ada", mustDo(t, victim, in, "GET", "/get?key=user"),
		"GET /get?key=user with the new ID: the session keeps its values")
	assert.Equal(t, 2, in.m.Stats().LocalSessions,
		"Stats().LocalSessions after the store: victim and holder; the tombstone must be gone")
}

// TestOldCopyOnPausedNodeIsDeletedWhenBack pins that a session moved away
// from a black-holed node does not leave its old copy there once the node
// answers again: the delete is deferred until then.
func TestOldCopyOnPausedNodeIsDeletedWhenBack(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	in := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: 200 * time.Millisecond,
		ProbeInterval: 50 * time.Millisecond, RetryInterval: 50 * time.Millisecond})
	br := newSessionOn(t, in, "n1", "user", "ada")
	home := servers[0]
	waitIdle(t, in.m)
	oldID := br.sessionID(in)
	require.True(t, isStored(t, home, oldID), "backup of %s on n1 before the pause: the copy that must be deleted later", oldID)
	old := mustParseID(t, oldID)
	movedID := sessionID{random: old.random, node: "n2", route: old.route}.String()

	home.Pause()
	mustDo(t, br, in, "POST", "/set?key=user&value=grace") // times out on n1, moves to n2
	// n2 holds the second copy under movedID's key from the start: wait
	// for the move itself.
	eventually(t, 5*time.Second, "session not moved to n2", func() bool {
		_, found, err := servers[1].Get(memcacheKey(DefaultKeyPrefix, movedID))
		return err == nil && found && in.m.Stats().Relocations > 0
	})
	home.Resume()
	// Once n1 is back it is the session's second node again, and the key
	// of oldID on n1 is the key of its second copy: the old state must be
	// gone from there, deleted or overwritten by the current one.
	eventually(t, 5*time.Second, "old copy still on n1 after it came back", func() bool {
		values, found := storedSession(t, home, oldID)
		return !found || values["user"] == "grace"
	})
}
