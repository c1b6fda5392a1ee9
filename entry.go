package mcsession

import (
	"slices"
	"sync"
	"time"
)

// entry is a session's state, shared by every request that uses it. The
// fields a request reads come first, so a lookup among many sessions
// touches as few cache lines as it can; those only stores use come last.
//
// Locks, in the order they are taken: Session.mu (one request's handle),
// then entry.writeMu (one store of the session at a time), then entry.mu
// (its fields), then a shard lock of the session map. Two exceptions, both
// safe because the lock taken out of order is never waited for:
//
//   - the in-place check (inplace.go) holds mu and only tries writeMu
//     (TryLock), giving up if a store holds it;
//   - Map.Range callbacks (the sweeper, rewriteWhere) take mu under a
//     shard's read lock; nothing that holds mu ever takes a shard lock.
type entry struct {
	// mu guards the fields up to writeMu.
	mu          sync.Mutex
	removed     bool   // expired or invalidated: delete from memcached, never store again
	evicted     bool   // dropped from memory (makeRoom), safe in memcached: a request loads it again
	dirty       bool   // changed since the last store began
	readMutable bool   // a mutable value was handed out since the last store began
	unstorable  bool   // the last store failed in a way only a change can fix
	queued      bool   // waiting in the backup queue
	confirmed   bool   // its client has sent its cookie back (or it was loaded by one)
	budgeted    bool   // stored while unconfirmed: counts in memcacheReplica.unconfirmed
	lost        string // a node that lost e's copy (it restarted empty): the next store writes it again
	relocated   bool   // its places changed (a new ID, a node down or back): the next store writes the missing copies
	active      int    // requests using the session now: no async encode while > 0
	lastAccess  time.Time
	values      values
	node        string    // the ID's node part; "" without memcached (set by setID)
	id          string    // the whole current ID (set by setID), unsigned
	cookie      string    // id as the cookie holds it (signed, with Config.Keys), or "" until made (Manager.cookieLocked)
	storedUntil time.Time // when memcached's copy expires; zero if unknown
	created     time.Time
	random      string   // the ID's random part, the local map's key (set by setID)
	key         string   // memcached key of id, or "" until derived (see keyLocked)
	second      copyAt   // the second copy's node and key there, once derived (see keyOnLocked)
	renamed     []string // random parts before RenewID, tombstoned until the next store
	// takenFrom is the route of the instance this one took the session
	// over from, until the client sends this instance's cookie: requests
	// still carrying the old cookie are not a sign of a failback.
	takenFrom string

	// writeMu serialises stores of this session, so a write of an older
	// state can never land after a write of a newer one.
	writeMu sync.Mutex
	// stored* describe what memcached holds; guarded by writeMu.
	storedHash uint64 // hash of the last payload written
	storedGen  uint64 // generation of the last copy written, or of the copy a takeover loaded
	// stored lists where memcached holds copies: the nodes of the last
	// write that succeeded, or where a takeover found them. A copy is
	// deleted once the session is stored elsewhere. Written with mu held
	// too, so that rewriteWhere's callbacks may read it under mu.
	stored     copies
	tombstoned bool     // ended, and a tombstone written because a copy's node was down
	left       []copyAt // copies whose delete waits for their node (deferredDeletes): a logout writes tombstones
	rejected   uint64   // hash of the last payload that could not be stored (too large, say)
	verified   values   // snapshot of values known to be what storedHash stands for, or nil (inplace.go)
}

// forgetLeft removes a from e.left: its delete is done, or it is a live
// copy again. e.writeMu is held.
func (e *entry) forgetLeft(a copyAt) {
	if i := slices.Index(e.left, a); i >= 0 {
		e.left = slices.Delete(e.left, i, i+1)
	}
}

// needsStoreLocked reports whether memcached lacks something of e: a
// change, a read of a mutable value not yet found unchanged, or its end.
// e.mu is held.
func (e *entry) needsStoreLocked() bool {
	return e.dirty || e.readMutable || e.removed || e.lost != "" || e.relocated
}

// onlyReadMutableLocked reports whether the only change e may have is a
// value changed in place: a mutable value was read, and nothing else
// changed. e.mu is held.
func (e *entry) onlyReadMutableLocked() bool {
	return e.readMutable && !e.dirty && !e.removed
}

// needsTouchLocked reports whether memcached's copy of e, if it has one
// that e could replace, expires before e does at expiry. e.mu is held.
func (e *entry) needsTouchLocked(expiry time.Time) bool {
	return !e.unstorable && e.storedUntil.Before(expiry)
}

// needsStore is needsStoreLocked, taking e.mu.
func (e *entry) needsStore() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.needsStoreLocked()
}

// acquire records that a request is using e, until it calls release. The
// backup workers do not encode e meanwhile, so a request may change its
// values in place. A nil e is ignored.
func (e *entry) acquire() {
	if e != nil {
		e.mu.Lock()
		e.acquireLocked()
		e.mu.Unlock()
	}
}

// acquireUnlessEvicted is acquire, unless e was dropped from memory
// (makeRoom): then it reports false and acquires nothing.
func (e *entry) acquireUnlessEvicted() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.evicted {
		return false
	}
	e.acquireLocked()
	return true
}

// acquireLocked is acquire with e.mu held.
func (e *entry) acquireLocked() { e.active++ }

// release ends a use begun by acquire.
func (e *entry) release() {
	e.mu.Lock()
	e.releaseLocked()
	e.mu.Unlock()
}

// releaseLocked is release with e.mu held.
func (e *entry) releaseLocked() { e.active-- }

// setID sets e's ID and its parts. The random part is a substring of the ID,
// so a session holds its ID's bytes once.
func (e *entry) setID(id sessionID) {
	e.id, e.cookie = id.String(), ""
	e.key, e.second = "", copyAt{} // derived again from the new ID when needed
	e.random, e.node = e.id[:randomLen], id.node
	if e.node != "" {
		e.node = e.id[randomLen+1 : randomLen+1+len(id.node)]
	}
}
