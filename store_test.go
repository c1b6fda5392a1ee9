package mcsession

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestDecideStore pins the store decision, the one place that says what a
// store of a session does from its state.
func TestDecideStore(t *testing.T) {
	up := storeState{nodeUp: true}
	with := func(f func(*storeState)) storeState { s := up; f(&s); return s }
	tests := []struct {
		name      string
		in        storeState
		want      storeAction
		mustWrite bool
	}{
		{"nothing to do", up, actNone, false},
		{"ended: delete its copy, even with changes", with(func(s *storeState) { s.removed, s.dirty = true, true }), actDelete, false},
		{"ended with every node down: still a delete (it waits for the node)", storeState{removed: true}, actDelete, false},
		{"node down", storeState{dirty: true}, actNoNode, false},
		{"changed", with(func(s *storeState) { s.dirty = true }), actWrite, true},
		{"new key (renewed, taken over, moved)", with(func(s *storeState) { s.moved = true }), actWrite, true},
		{"mutable read, not verified: compare hashes before writing", with(func(s *storeState) { s.readMutable = true }), actWrite, false},
		{"mutable read, values identical to the stored snapshot", with(func(s *storeState) { s.readMutable, s.verified = true, true }), actSettleRead, false},
		{"changed and verified: the change wins", with(func(s *storeState) { s.dirty, s.readMutable, s.verified = true, true, true }), actWrite, true},
		{"changed while a request holds it", with(func(s *storeState) { s.dirty, s.busy = true, true }), actBusy, false},
		{"mutable read while a request holds it", with(func(s *storeState) { s.readMutable, s.busy = true, true }), actBusy, false},
		{"verified read while a request holds it: wait, the value may change", with(func(s *storeState) { s.readMutable, s.verified, s.busy = true, true, true }), actBusy, false},
		{"copy expires first: touch", with(func(s *storeState) { s.touchDue = true }), actTouch, false},
		{"touch due while held: a touch reads no value", with(func(s *storeState) { s.touchDue, s.busy = true, true }), actTouch, false},
		{"touch due but changed: the write renews the TTL", with(func(s *storeState) { s.touchDue, s.dirty = true, true }), actWrite, true},
		{"touch due, node down", storeState{touchDue: true}, actNoNode, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, mustWrite := decideStore(tt.in)
			assert.Equal(t, tt.want, got, "decideStore(%+v) action", tt.in)
			assert.Equal(t, tt.mustWrite, mustWrite, "decideStore(%+v) mustWrite", tt.in)
		})
	}
}

// TestRenewDuringSetKeepsOldIDDead pins a race between a store and RenewID:
// a set decided under the old ID and answered after RenewID must not count
// as a store under the new ID. It used to: recording it removed the old
// ID's tombstone, and until the next store the old ID, whose copy that very
// set had just written, loaded the session again on this instance.
func TestRenewDuringSetKeepsOldIDDead(t *testing.T) {
	mc := memcachetest.Start(t)
	m := newTestManager(t, Config{Nodes: nodesOf(mc), Route: "a", RetryInterval: time.Hour})
	r := replicaOf(m)
	e := m.create()
	require.NoError(t, r.store(e, time.Now().Add(time.Second), true), "first store of the new session")
	e.mu.Lock()
	oldID, oldRandom := e.id, e.random
	e.values.set("k", "v")
	e.dirty = true
	e.mu.Unlock()

	e.writeMu.Lock()
	op, err := r.prepare(e, true) // decided and encoded under the old ID
	require.NoError(t, err, "prepare")
	require.NotNil(t, op, "prepare of a changed session: a set")
	renewed := make(chan struct{})
	go func() { // RenewID while the set is on the wire
		defer close(renewed)
		m.renew(e)
	}()
	eventually(t, 5*time.Second, "RenewID did not rename the session", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.renamed) > 0
	})
	for i := range op.sets {
		s := &op.sets[i]
		s.n.wire.SetJoined(&s.Set)
		require.NoError(t, s.Err, "the set of copy %d under the old key", i)
	}
	assert.NoError(t, r.record(op), "record")
	e.writeMu.Unlock()
	waitFor(t, renewed, "RenewID to delete the old copy once the set is recorded")
	_, found := storedSession(t, mc, oldID)
	assert.False(t, found, "the copy under the old ID %s, written by the set in flight during RenewID: deleted", oldID)

	tomb, ok := m.sessions.Get(oldRandom)
	require.True(t, ok, "the old random part after a set under the old ID was recorded: its tombstone must stay")
	assert.True(t, tomb.removed, "the entry under the old random part is a tombstone")
	got, gone := m.resolve(oldID)
	assert.Nil(t, got, "resolve(old ID %s) after RenewID: no session, though memcached holds a copy under it", oldID)
	assert.True(t, gone, "resolve(old ID) after RenewID: gone")
}
