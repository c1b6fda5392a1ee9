package mcsession

import (
	"slices"
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
	if down || len(e.left) > 0 {
		e.mu.Lock()
		random := e.random
		e.mu.Unlock()
		r.bury(e, random, e.stored.all()...)
	}
	if down {
		return errNoNodeUp
	}
	e.mu.Lock()
	random := e.random
	r.unbudgetLocked(e)
	e.mu.Unlock()
	r.sessions.DeleteIf(random, func(x *entry) bool { return x == e })
	r.dropStandIns(e) // its old IDs' copies were deleted at RenewID, or are outranked
	return nil
}

// dropCopy deletes e's stored copies (those on a node that is down when it
// is back, and meanwhile outranked by a tombstone), and forgets them: the
// next store writes e afresh. random is the random part of the ID the
// copies were stored under. e.writeMu is held.
func (r *memcacheReplica) dropCopy(e *entry, random string) {
	if r.deleteReachable(e) {
		for _, a := range e.stored.all() {
			r.deferDelete(a, e)
		}
	}
	if len(e.left) > 0 {
		r.bury(e, random)
		e.left = nil // outranked: the tombstones stand for them
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
	for _, a := range e.stored.all() {
		if n := ns.byID[a.node]; n != nil && !n.up.Load() || r.deleteKey(a, e) != nil {
			keep.add(a)
		}
	}
	e.mu.Lock()
	e.stored = keep
	e.mu.Unlock()
	return keep.any()
}

// bury writes tombstones (copies marked ended, with a generation above
// every copy's) for the copies of e that may outlive their delete: those
// in extra (on nodes that are down) and those in e.left (deferred until
// their node is back). One tombstone per route of those copies, under the
// key of the ID with that route and random part random, on the first up
// node of its ranking, once. A load reads at least the ID's node and the
// next node of the ranking and takes the highest generation, so a copy
// that comes back with its node stays unloadable even if this instance
// died before it could delete it. (If every node that held a copy is down
// and the load finds as many old copies as are kept before the tombstone,
// it stops there: with two copies, both nodes down at once.)
// e.writeMu is held.
func (r *memcacheReplica) bury(e *entry, random string, extra ...copyAt) {
	if e.tombstoned {
		return
	}
	ns := r.cluster.load()
	i := ns.ring.First(random, func(i int) bool { return ns.list[i].up.Load() })
	if i < 0 {
		return // nothing is up; the deletes wait for the nodes anyway
	}
	n := ns.list[i]
	e.mu.Lock()
	env := envelope{created: e.created, idleTimeout: r.cfg.IdleTimeout, lifetime: r.cfg.Lifetime,
		gen: e.storedGen + 1, ended: true}
	exp, _ := r.ttlLocked(e, time.Now())
	e.mu.Unlock()
	blob := appendEnvelope(nil, env, nil)
	var routes []string
	for _, a := range append(extra, e.left...) {
		if !slices.Contains(routes, a.route) {
			routes = append(routes, a.route)
		}
	}
	buried := true
	for _, route := range routes {
		id := sessionID{random, n.ID, route}
		set := copySet{Set: mcwire.Set{Key: memcacheKey(r.cfg.KeyPrefix, id.String()), Value: blob, Exp: exp}, n: n}
		r.sendJoined(&set)
		if set.Err != nil {
			buried = false
			continue
		}
		r.stats.tombstones.Add(1)
	}
	e.tombstoned = buried
	e.storedGen = env.gen // a later store of the session outranks its tombstone
}

// deleteKey deletes the copy at a. A missing key or node is not an error.
// For a node that is down, or that fails now, the delete is deferred until
// it is back; e, if not nil, is the session it was a copy of.
func (r *memcacheReplica) deleteKey(a copyAt, e *entry) error {
	n := r.cluster.load().byID[a.node]
	if n == nil {
		return nil
	}
	if !n.up.Load() {
		r.deferDelete(a, e)
		return nil
	}
	start := time.Now()
	err := n.wire.Delete(a.key)
	r.stats.backupLatency.observe(time.Since(start))
	r.stats.deletes.Add(1)
	switch mcwire.Classify(err) {
	case mcwire.OK, mcwire.Miss:
		if e != nil {
			e.forgetLeft(a)
		}
		return nil
	case mcwire.Unreachable:
		r.cluster.failed(n, err)
		r.deferDelete(a, e)
	}
	return opError(n, "delete", err)
}

// deferDelete remembers the delete of the copy at a until its node is
// back. e, if not nil, is the session it was a copy of: it lists the copy
// in e.left, so that a logout or RenewID before the delete writes a
// tombstone (this instance may die before the delete goes out). e.writeMu
// is held.
func (r *memcacheReplica) deferDelete(a copyAt, e *entry) {
	r.deletes.add(a, e)
	if e != nil && !slices.Contains(e.left, a) {
		e.left = append(e.left, a)
	}
}

// runDeferredDeletes sends the deferred deletes of nodes that are up again.
// A key its session has meanwhile been stored under again (it moved back
// to the node) is kept: the check and the delete happen under the session's
// writeMu, so no store can come between them.
func (r *memcacheReplica) runDeferredDeletes() {
	for _, dels := range r.deletes.ready(r.cluster.load()) {
		for _, d := range dels {
			if d.e == nil {
				r.deleteKey(d.at, nil)
				continue
			}
			d.e.writeMu.Lock()
			if d.e.stored.has(d.at.node, d.at.key) {
				d.e.forgetLeft(d.at) // a live copy again
			} else {
				r.deleteKey(d.at, d.e) // a node down again defers it anew
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
	at copyAt
	e  *entry // the session it was a copy of, or nil
}

// add remembers the delete of the copy at a.
func (d *deferredDeletes) add(a copyAt, e *entry) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.count >= maxDeferredDeletes {
		return
	}
	if d.byNode == nil {
		d.byNode = make(map[string][]deferredDelete)
	}
	d.byNode[a.node] = append(d.byNode[a.node], deferredDelete{a, e})
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
