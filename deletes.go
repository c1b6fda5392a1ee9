package mcsession

import (
	"sync"
	"time"

	"github.com/mcsession/mcsession/internal/mcwire"
)

// Deletes. A copy must go when its session ends (a logged-out session must
// not come back through a takeover) and when the session is stored under
// another key (renewed, taken over, moved): a client still holding the old
// ID must not load the old state. A delete for a node that is down waits
// until the node is back.

// deleteEnded deletes the copies of an ended session and then its
// tombstone in the session map. e.writeMu is held. If a copy's node is
// down, its delete is retried when the node is back (errNoNodeUp says so)
// and meanwhile a tombstone outranks the copy (bury).
func (r *memcacheReplica) deleteEnded(e *entry) error {
	down := r.deleteReachable(e)
	if down || e.leftCopies {
		e.mu.Lock()
		id := splitID(e.id, true)
		e.mu.Unlock()
		r.bury(e, id)
	}
	if down {
		return errNoNodeUp
	}
	e.mu.Lock()
	random := e.random
	r.unbudgetLocked(e)
	e.mu.Unlock()
	r.sessions.DeleteIf(random, func(x *entry) bool { return x == e })
	return nil
}

// dropCopy deletes e's stored copies (those on a node that is down when it
// is back, and meanwhile outranked by a tombstone), and forgets them: the
// next store writes e afresh. id is the ID the copies were stored under.
// e.writeMu is held.
func (r *memcacheReplica) dropCopy(e *entry, id sessionID) {
	if r.deleteReachable(e) {
		for _, a := range e.stored {
			if a.key != "" {
				r.deferDelete(a.node, a.key, e)
			}
		}
	}
	if e.leftCopies {
		r.bury(e, id)
	}
	e.mu.Lock()
	e.stored = copies{}
	e.mu.Unlock()
	e.storedHash = 0
}

// deleteReachable deletes e's copies on nodes that are up and forgets
// them; those on nodes that are down (or that fail now) stay in e.stored.
// It reports whether any stayed. e.writeMu is held.
func (r *memcacheReplica) deleteReachable(e *entry) (down bool) {
	if !e.stored.any() {
		return false
	}
	ns := r.cluster.load()
	var keep copies
	for _, a := range e.stored {
		if a.key == "" {
			continue
		}
		if n := ns.byID[a.node]; n != nil && !n.up.Load() || r.deleteKey(a.node, a.key, e) != nil {
			keep.add(a)
		}
	}
	e.mu.Lock()
	e.stored = keep
	e.mu.Unlock()
	return keep.any()
}

// bury writes a tombstone of the session stored under id (a copy marked
// ended, with a generation above every copy's) on the first up node of its
// ranking, once. A load takes the highest generation it finds, so when a
// node that was down at a logout or RenewID comes back with the old copy,
// that copy stays unloadable even if this instance died before it could
// delete it. (If both nodes holding copies are down, the tombstone lands on
// a third node, which a load that finds both old copies does not ask.)
// e.writeMu is held.
func (r *memcacheReplica) bury(e *entry, id sessionID) {
	if e.tombstoned {
		return
	}
	ns := r.cluster.load()
	i := ns.ring.First(id.random, func(i int) bool { return ns.list[i].up.Load() })
	if i < 0 {
		return // nothing is up; the deletes wait for the nodes anyway
	}
	n := ns.list[i]
	id.node = n.ID
	e.mu.Lock()
	env := envelope{created: e.created, idleTimeout: r.cfg.IdleTimeout, lifetime: r.cfg.Lifetime,
		gen: e.storedGen + 1, ended: true}
	exp, _ := r.ttlLocked(e, time.Now())
	e.mu.Unlock()
	set := copySet{Set: mcwire.Set{Key: memcacheKey(r.cfg.KeyPrefix, id.String()), Value: appendEnvelope(nil, env, nil), Exp: exp}, n: n}
	r.sendJoined(&set)
	if set.Err == nil {
		e.tombstoned = true
		r.stats.tombstones.Add(1)
	}
}

// deleteKey deletes key from the node with id nodeID. A missing key or node
// is not an error. For a node that is down the delete is deferred until it
// is back; e, if not nil, is the session the key was a copy of.
func (r *memcacheReplica) deleteKey(nodeID, key string, e *entry) error {
	n := r.cluster.load().byID[nodeID]
	if n == nil {
		return nil
	}
	if !n.up.Load() {
		r.deferDelete(nodeID, key, e)
		return nil
	}
	start := time.Now()
	err := n.wire.Delete(key)
	r.stats.backupLatency.observe(time.Since(start))
	r.stats.deletes.Add(1)
	switch mcwire.Classify(err) {
	case mcwire.OK, mcwire.Miss:
		return nil
	}
	r.cluster.failed(n, err)
	return opError(n, "delete", err)
}

// deferDelete remembers the delete of key on node nodeID until the node
// is back. e, if not nil, is the session the key was a copy of: when it
// ends or is renewed, a tombstone is written, since this instance may die
// before the delete goes out. e.writeMu is held.
func (r *memcacheReplica) deferDelete(nodeID, key string, e *entry) {
	r.deletes.add(nodeID, key, e)
	if e != nil {
		e.leftCopies = true
	}
}

// runDeferredDeletes sends the deferred deletes of nodes that are up again.
// A key its session has meanwhile been stored under again (it moved back
// to the node) is kept: the check and the delete happen under the session's
// writeMu, so no store can come between them.
func (r *memcacheReplica) runDeferredDeletes() {
	for id, dels := range r.deletes.ready(r.cluster.load()) {
		for _, d := range dels {
			if d.e == nil {
				r.deleteKey(id, d.key, nil)
				continue
			}
			d.e.writeMu.Lock()
			if !d.e.stored.has(id, d.key) {
				r.deleteKey(id, d.key, d.e) // a node down again defers it anew
			}
			d.e.writeMu.Unlock()
		}
	}
}

// maxDeferredDeletes bounds the deletes kept for nodes that are down. Past
// it, old copies on a node that comes back are left to their TTL.
const maxDeferredDeletes = 100_000

// deferredDeletes are deletes waiting for their node to come back. The
// zero value is ready to use.
type deferredDeletes struct {
	// mu guards byNode and count.
	mu     sync.Mutex
	byNode map[string][]deferredDelete
	count  int
}

// deferredDelete is a delete waiting for its node to come back.
type deferredDelete struct {
	key string
	e   *entry // the session it was a copy of, or nil
}

// add remembers a delete for node nodeID.
func (d *deferredDeletes) add(nodeID, key string, e *entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.count >= maxDeferredDeletes {
		return
	}
	if d.byNode == nil {
		d.byNode = make(map[string][]deferredDelete)
	}
	d.byNode[nodeID] = append(d.byNode[nodeID], deferredDelete{key, e})
	d.count++
}

// ready takes the deletes of the nodes of ns that are up, and drops those
// of nodes no longer in ns.
func (d *deferredDeletes) ready(ns *nodeSet) map[string][]deferredDelete {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out map[string][]deferredDelete
	for id, dels := range d.byNode {
		n := ns.byID[id]
		if n != nil && !n.up.Load() {
			continue
		}
		if n != nil {
			if out == nil {
				out = make(map[string][]deferredDelete)
			}
			out[id] = dels
		}
		delete(d.byNode, id)
		d.count -= len(dels)
	}
	return out
}
