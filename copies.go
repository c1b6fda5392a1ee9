package mcsession

// Where a session's copies are, and where they go. With two or more primary
// nodes a session has two copies (Config.Copies): on its home node (the
// ID's node part) and on the next up node of its ranking (nodeSet.second).
// The copy on node X is under the key of the session's ID with X as its
// node part (keyOnLocked), so a load of any ID finds, on each node it asks,
// the key that node would hold if the session lived there, and a session
// whose home died moves to the node of its second copy, whose key is
// already its new ID's. entry.stored lists the copies memcached holds;
// placesLocked says where they should be; a store writes the difference
// and deletes the rest (store.go, send.go).

// copyAt is where one copy of a session is: a node, its key there, and
// the route of the ID the key was derived from.
type copyAt struct{ node, key, route string }

// copies are the places that hold a session's copies, filled from the
// first; the zero value holds none.
type copies [maxCopies]copyAt

// any reports whether c holds a copy.
func (c *copies) any() bool { return c[0].key != "" }

// all returns the copies c holds (a prefix of c: add fills from the first).
func (c *copies) all() []copyAt {
	n := 0
	for n < len(c) && c[n].key != "" {
		n++
	}
	return c[:n]
}

// has reports whether c holds the copy under key on node.
func (c *copies) has(node, key string) bool {
	for _, a := range c.all() {
		if a.key == key && a.node == node {
			return true
		}
	}
	return false
}

// on reports whether c holds a copy on node.
func (c *copies) on(node string) bool {
	for _, a := range c.all() {
		if a.node == node {
			return true
		}
	}
	return false
}

// drop removes the copies on node.
func (c *copies) drop(node string) {
	var keep copies
	for _, a := range c.all() {
		if a.node != node {
			keep.add(a)
		}
	}
	*c = keep
}

// add appends a copy; past maxCopies it is dropped.
func (c *copies) add(a copyAt) {
	for i := range c {
		if c[i].key == "" {
			c[i] = a
			return
		}
	}
}

// place is a node a session's copy goes to, and its key there.
type place struct {
	n   *node
	key string
}

// places are where a store puts a session's copies: its home node (the
// ID's node) first, then, with two copies, the next up node of its
// ranking. An unused place has a nil node.
type places [maxCopies]place

// heldBy reports whether c holds a copy at every place of ps.
func (ps *places) heldBy(c *copies) bool {
	for _, p := range ps {
		if p.n != nil && !c.has(p.n.ID, p.key) {
			return false
		}
	}
	return true
}

// placesLocked returns where e's copies go now. e.mu is held.
func (r *memcacheReplica) placesLocked(ns *nodeSet, e *entry) places {
	var ps places
	home := ns.byID[e.node]
	if home == nil {
		return ps
	}
	ps[0] = place{home, r.keyLocked(e)}
	if n := ns.second(e.random, home); n != nil {
		ps[1] = place{n, r.keyOnLocked(e, n.ID)}
	}
	return ps
}

// keyLocked returns the memcached key of e's current ID, derived once per
// ID: a SHA-256 is not free, and a session is stored many times.
func (r *memcacheReplica) keyLocked(e *entry) string {
	if e.key == "" {
		e.key = memcacheKey(r.cfg.KeyPrefix, e.id)
	}
	return e.key
}

// keyOnLocked returns the key of e's copy on node nodeID: the key of e's ID
// with nodeID as its node part. The copy on e's home node is under the key
// of its ID, and if the session moves to the node of its second copy (its
// home went down), that copy is already under the key of its new ID. The
// second key is derived once per ID and node. e.mu is held.
func (r *memcacheReplica) keyOnLocked(e *entry, nodeID string) string {
	if nodeID == e.node {
		return r.keyLocked(e)
	}
	if e.second.node != nodeID || e.second.key == "" {
		id := splitID(e.id, true)
		id.node = nodeID
		e.second = copyAt{nodeID, memcacheKey(r.cfg.KeyPrefix, id.String()), id.route}
	}
	return e.second.key
}
