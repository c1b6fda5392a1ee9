package mcsession

import (
	"strings"
	"testing"
	"time"

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
	victim.do(in, "POST", "/set?key=user&value=ada")
	waitIdle(t, in.m)
	oldID := victim.sessionID(in)

	holder := newBrowser(t)
	holder.do(in, "POST", "/set?key=gate&value=1")
	gate.waitEntered(t)
	victim.do(in, "POST", "/invalidate")
	thief := newBrowser(t)
	thief.setSessionID(in, oldID)
	if _, body := thief.do(in, "GET", "/get?key=user"); body != "" {
		t.Fatalf("GET with the invalidated cookie while its delete is queued = %q, want no session", body)
	}

	gate.open()
	waitIdle(t, in.m)
	if _, found, err := servers[0].Get(memcacheKey(DefaultKeyPrefix, oldID)); err != nil || found {
		t.Fatalf("backup of the invalidated session: found %v, %v; want deleted", found, err)
	}
	thief.setSessionID(in, oldID)
	if _, body := thief.do(in, "GET", "/get?key=user"); body != "" {
		t.Fatalf("GET with the invalidated cookie after its delete = %q, want no session", body)
	}
	if n := in.m.Stats().LocalSessions; n != 1 {
		t.Fatalf("LocalSessions after the delete = %d, want 1 (the holder's; the tombstone gone)", n)
	}
}

// TestRenewedIDIsDeadAtOnce pins that after RenewID the old (possibly
// fixated) ID cannot load the pre-renewal backup, even before the session
// is stored under its new ID.
func TestRenewedIDIsDeadAtOnce(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	in, gate := newGatedInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", BackupWorkers: 1})
	victim := newBrowser(t)
	victim.do(in, "POST", "/set?key=user&value=anonymous")
	waitIdle(t, in.m)
	oldID := victim.sessionID(in)

	holder := newBrowser(t)
	holder.do(in, "POST", "/set?key=gate&value=1")
	gate.waitEntered(t)
	victim.do(in, "POST", "/renew")
	victim.do(in, "POST", "/set?key=user&value=ada")
	attacker := newBrowser(t)
	attacker.setSessionID(in, oldID)
	if _, body := attacker.do(in, "GET", "/get?key=user"); body != "" {
		t.Fatalf("GET with the pre-renewal ID while the renewal is queued = %q, want no session", body)
	}

	gate.open()
	waitIdle(t, in.m)
	attacker.setSessionID(in, oldID)
	if _, body := attacker.do(in, "GET", "/get?key=user"); body != "" {
		t.Fatalf("GET with the pre-renewal ID after the store = %q, want no session", body)
	}
	if _, body := victim.do(in, "GET", "/get?key=user"); body != "ada" {
		t.Fatalf("GET with the new ID = %q, want ada", body)
	}
	if n := in.m.Stats().LocalSessions; n != 2 {
		t.Fatalf("LocalSessions = %d, want 2 (victim and holder; the tombstone gone)", n)
	}
}

// TestOldCopyOnPausedNodeIsDeletedWhenBack pins that a session moved away
// from a black-holed node does not leave its old copy there once the node
// answers again: the delete is deferred until then.
func TestOldCopyOnPausedNodeIsDeletedWhenBack(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	in := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: 200 * time.Millisecond,
		ProbeInterval: 50 * time.Millisecond, RetryInterval: 50 * time.Millisecond})
	br := newBrowser(t)
	var home *memcachetest.Server
	for home == nil || strings.Contains(br.sessionID(in), ".n2.") {
		br = newBrowser(t) // a session on n1
		br.do(in, "POST", "/set?key=user&value=ada")
		home = servers[0]
	}
	waitIdle(t, in.m)
	oldID := br.sessionID(in)

	home.Pause()
	br.do(in, "POST", "/set?key=user&value=grace") // times out on n1, moves to n2
	eventually(t, 5*time.Second, "session not moved to n2", func() bool {
		_, found, err := servers[1].Get(memcacheKey(DefaultKeyPrefix, strings.Replace(oldID, ".n1.", ".n2.", 1)))
		return err == nil && found
	})
	home.Resume()
	eventually(t, 5*time.Second, "old copy still on n1 after it came back", func() bool {
		_, found, err := home.Get(memcacheKey(DefaultKeyPrefix, oldID))
		return err == nil && !found
	})
}
