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

// deleteEnded deletes the copy of an ended session and then its tombstone
// in the session map. e.writeMu is held. If the copy's node is down the
// delete is retried when it is back.
func (r *memcacheReplica) deleteEnded(e *entry) error {
	if e.storedKey != "" {
		if n := r.cluster.load().byID[e.storedNode]; n != nil && !n.up.Load() {
			return errNoNodeUp
		}
		if err := r.deleteKey(e.storedNode, e.storedKey, e); err != nil {
			return err
		}
		e.storedKey, e.storedNode = "", ""
	}
	e.mu.Lock()
	random := e.random
	r.unbudgetLocked(e)
	e.mu.Unlock()
	r.sessions.DeleteIf(random, func(x *entry) bool { return x == e })
	return nil
}

// dropCopy deletes e's stored copy, if it has one (when its node is back,
// if it is down), and forgets it: the next store writes e afresh.
// e.writeMu is held.
func (r *memcacheReplica) dropCopy(e *entry) {
	if e.storedKey != "" {
		r.deleteKey(e.storedNode, e.storedKey, e)
		e.storedKey, e.storedNode, e.storedHash = "", "", 0
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
		r.deletes.add(nodeID, key, e)
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
			if d.e.storedKey != d.key || d.e.storedNode != id {
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
