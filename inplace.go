package mcsession

// Changes made in place. A handler that reads a slice, map or pointer from
// its session may change it without calling Set, so after such a read the
// session is compared with its backup when the last request using it
// releases it (memcacheReplica.release). The comparison has two speeds:
//
//   - fingerprint: a hash of the values (or of their encoding) is compared
//     with the hash of the stored payload.
//   - verified: once a read has found the values equal to the stored ones,
//     the entry keeps a shallow copy of them (snapshot), renewed by every
//     later store. A read whose values are still identical to that copy is
//     settled without hashing: strings compare by pointer first, so a
//     []string of 50 items costs 50 pointer compares, not 3 KB of hashing
//     over memory the request never touched. A session nobody reads (idle
//     after login) keeps no copy; one that is read pays for it once, at its
//     first read, in memory: 16 bytes per []string item and a few small
//     objects.

// checkInPlaceLocked settles, on the request's goroutine, whether a session
// whose only possible change is a value changed in place (a mutable value
// was read) differs from its backup. Most reads change nothing; checking
// here is far cheaper than queueing the session for a worker that would
// encode it anyway. Unchanged: the read is forgotten. Changed: the session is
// marked dirty and stored as usual. It is called with e.mu held by the last
// request to release e, so no handler can be changing a value meanwhile. It
// gives up, leaving the session to the queue, if a write of it is in flight
// (its hash is about to change) or it was never stored.
func (r *memcacheReplica) checkInPlaceLocked(e *entry) {
	if !e.writeMu.TryLock() {
		return
	}
	defer e.writeMu.Unlock()
	if !e.stored.any() || e.unstorable {
		return
	}
	if e.verifiedLocked() {
		r.readUnchangedLocked(e)
		return
	}
	h, err := r.m.valuesHash(e.values)
	if err != nil {
		return // the worker reports it
	}
	if h == e.storedHash {
		e.verified = snapshot(e.values)
		r.readUnchangedLocked(e)
		return
	}
	e.dirty = true
}

// verifiedLocked reports whether e's values are still identical to the
// snapshot of what memcached holds. e.mu and e.writeMu are held.
func (e *entry) verifiedLocked() bool {
	return e.verified != nil && sameValues(e.verified, e.values)
}

// readUnchangedLocked records that the mutable values read from e were not
// changed: nothing to store for that read. e.mu is held.
func (r *memcacheReplica) readUnchangedLocked(e *entry) {
	e.readMutable = false
	r.stats.backupsSkipped.Add(1)
}
