package mcsession

import (
	"fmt"
	"time"

	"github.com/mcsession/mcsession/internal/mcwire"
)

// load fetches a session this process does not hold from memcached: the
// takeover of a session whose instance died or was drained. Concurrent loads
// of one session share one get. The session is adopted under this
// instance's route; if that changes its ID, the client gets a new cookie and
// the copy under the old ID is deleted once the new one is written. It
// returns no session if it is not in memcached, has expired or cannot be
// decoded (all three: gone), or if no node that could hold it answered.
func (r *memcacheReplica) load(id sessionID) loaded {
	ns := r.cluster.load()
	if ns.byID[id.node] == nil {
		return loaded{gone: true} // unknown node: a forged or outdated cookie costs no lookup
	}
	if r.missing.Has(id.random, time.Now()) {
		r.stats.loadsKnownGone.Add(1)
		return loaded{gone: true} // found gone a moment ago: a replayed forged ID costs nothing
	}
	l := r.flights.Do(id.random, func() loaded { return r.loadNow(ns, id) })
	if l.gone {
		r.missing.Add(id.random, time.Now())
	}
	return l
}

// Recently gone IDs. A well-formed ID found gone (missing on every node
// that could hold it, expired or corrupt) is remembered for missingTTL, and
// loads of it meanwhile are answered without memcached: a forged ID sent
// again and again costs one lookup per missingTTL, not one per request. At
// most missingSize IDs are remembered (the oldest are forgotten first), so
// a flood of distinct forged IDs costs what it did before, and memory stays
// bounded. A session that is certainly gone cannot come back, so the only
// price is a session whose first copy was not yet written when another
// instance looked for it (async backup, a client faster than the worker):
// that client was told to drop its cookie at the first miss anyway.
const (
	missingTTL  = 10 * time.Second
	missingSize = 4096
)

// loadNow does the work of load: it fetches the session's copies and
// adopts the newest.
func (r *memcacheReplica) loadNow(ns *nodeSet, id sessionID) loaded {
	if e, ok := r.sessions.Get(id.random); ok {
		return loaded{e: e} // adopted by a load that finished just before this one began
	}
	f := r.fetch(ns, id)
	switch {
	case f.best.n == nil && f.failed:
		return loaded{} // out of reach, not known to be gone
	case f.best.n == nil, f.best.env.ended:
		r.stats.loadsMiss.Add(1)
		return loaded{gone: true} // missing or corrupt on every node that answered, or ended
	}
	return r.adoptFound(f)
}

// found is what a fetch found of a session.
type found struct {
	best    copyFound // the copy with the highest generation; best.n is nil if none
	at      copies    // every place that answered with a copy
	unknown []copyAt  // places on nodes that could not be asked or did not answer
	stale   bool      // the copies disagree (an older or a corrupt one): write them again
	failed  bool      // a node that could hold a copy could not be asked, or did not answer
}

// copyFound is one copy a fetch found: on node n, under key, the key of id.
type copyFound struct {
	n       *node
	key     string
	id      sessionID
	env     envelope
	payload []byte
}

// fetch reads the copies of the session id names: from the ID's node, then
// from the other up nodes in the session's ranking (where the second copy
// is, and where its owner moved it if the ID's node went down), until it
// has as many copies as are kept and has asked at least two nodes (a
// tombstone written while a copy's node was down is on the first up node
// of the ranking: see bury), or has asked every node. The copy with the
// highest generation wins. A node that could hold a copy and cannot be
// asked proves nothing: the session is gone only if every node answered
// "miss". The ID's node, known down, is such a node.
func (r *memcacheReplica) fetch(ns *nodeSet, id sessionID) (f found) {
	home := ns.byID[id.node]
	var buf [8]*node
	candidates := ns.elsewhere(append(buf[:0], home), home, id.random)
	hits, asked := 0, 0
	for _, n := range candidates {
		at := sessionID{id.random, n.ID, id.route}
		key := memcacheKey(r.cfg.KeyPrefix, at.String())
		if !n.up.Load() {
			f.failed = true
			f.unknown = append(f.unknown, copyAt{n.ID, key, id.route})
			continue
		}
		asked++
		blob, err := r.get(n, key)
		if err != nil {
			if mcwire.Classify(err) != mcwire.Miss {
				f.failed = true
				f.unknown = append(f.unknown, copyAt{n.ID, key, id.route})
			}
			continue
		}
		hits++
		f.at.add(copyAt{n.ID, key, id.route})
		env, payload, err := decodeEnvelope(blob, at.String())
		if err == nil && !env.ended {
			payload, err = r.openCopy(env, key, blob[:len(blob)-len(payload)], payload)
		}
		switch {
		case err != nil:
			r.corrupt(n, key, err)
			f.stale = true
		case f.best.n == nil:
			f.best = copyFound{n, key, at, env, payload}
		case env.gen > f.best.env.gen:
			f.best, f.stale = copyFound{n, key, at, env, payload}, true
		case env.gen < f.best.env.gen:
			f.stale = true
		}
		if hits >= ns.copies && asked >= 2 {
			break
		}
	}
	return f
}

// openCopy returns the payload of a copy stored under key: opened if it is
// sealed. With Config.Keys a copy must be sealed, without it must not be.
func (r *memcacheReplica) openCopy(env envelope, key string, header, payload []byte) ([]byte, error) {
	if env.sealed != r.m.seal.sealed() {
		r.stats.openFailures.Add(1)
		if env.sealed {
			return nil, fmt.Errorf("%w: sealed, and Config.Keys is empty", errOpen)
		}
		return nil, fmt.Errorf("%w: not sealed, and Config.Keys is set", errOpen)
	}
	p, err := r.m.seal.open(key, header, payload)
	if err != nil {
		r.stats.openFailures.Add(1)
	}
	return p, err
}

// corrupt counts and logs a stored copy that cannot be decoded: it is
// treated as missing.
func (r *memcacheReplica) corrupt(n *node, key string, err error) {
	r.stats.decodeErrors.Add(1)
	r.logger.warn("decode", "mcsession: stored session cannot be decoded; treated as missing",
		"node", n.ID, "key", key, "err", err)
}

// get reads key from n, counting and logging a failure other than a miss.
func (r *memcacheReplica) get(n *node, key string) ([]byte, error) {
	start := time.Now()
	blob, err := n.wire.Get(key)
	r.stats.loadLatency.observe(time.Since(start))
	switch mcwire.Classify(err) {
	case mcwire.OK, mcwire.Miss, mcwire.Closed: // Closed: the Manager is shut down, not the node
		return blob, err
	}
	r.cluster.failed(n, err)
	r.stats.loadsError.Add(1)
	r.logger.warn("load-error", "mcsession: cannot read a session copy from a memcached node; its other copies are tried, and without one the request starts without the session",
		"err", opError(n, "get", err))
	return nil, err
}

// adoptFound adds the session fetch found to process memory, unless it is
// corrupt or expired.
func (r *memcacheReplica) adoptFound(f found) loaded {
	e, err := r.adopt(f)
	if err != nil {
		r.corrupt(f.best.n, f.best.key, err)
		r.stats.loadsMiss.Add(1)
		return loaded{gone: true}
	}
	if e == nil {
		r.stats.loadsMiss.Add(1) // expired
		return loaded{gone: true}
	}
	r.stats.loadsHit.Add(1)
	actual, _ := r.sessions.LoadOrStore(e.random, e)
	return loaded{e: actual}
}

// adopt decodes the session fetch found. It returns nil without error if
// the session has outlived its lifetime.
func (r *memcacheReplica) adopt(f found) (*entry, error) {
	env, id := f.best.env, f.best.id
	now := time.Now()
	for _, life := range []time.Duration{env.lifetime, r.cfg.Lifetime} {
		if life > 0 && now.Sub(env.created) > life {
			for _, a := range f.at.all() {
				r.deleteKey(a, nil)
			}
			return nil, nil
		}
	}
	values, hash, err := r.decodeCopy(f.best.payload)
	if err != nil {
		return nil, err
	}
	e := &entry{
		confirmed:  true, // loaded for a request that sent its cookie
		values:     values,
		created:    env.created,
		lastAccess: now,
	}
	r.takeCopies(e, f, hash)
	// The ID is built afresh: id's parts are substrings of the request's
	// Cookie header, which the session must not keep alive.
	e.setID(sessionID{id.random, id.node, r.cfg.Route})
	// An older format (version 1 holds the ID in clear), or copies that
	// disagree: the next store writes them again.
	e.dirty = env.version != envelopeVersion || f.stale
	if e.id != id.String() {
		// Stored under another ID: write it under ours (the next store
		// does, and deletes the copies under the old one).
		e.dirty = true
		if id.route != r.cfg.Route {
			e.takenFrom = id.route
			r.stats.takeovers.Add(1)
		}
	}
	e.mu.Lock()
	r.placeLocked(e)
	e.mu.Unlock()
	return e, nil
}

// takeCopies records in e what fetch found: where the copies are, and the
// generation and hash (of its values) of the newest. A copy may be on a
// node that did not answer: it is deleted when the node is back. e.writeMu
// and e.mu are held, or e is not shared yet.
func (r *memcacheReplica) takeCopies(e *entry, f found, hash uint64) {
	e.storedHash, e.storedGen, e.stored = hash, f.best.env.gen, f.at
	for _, a := range f.unknown {
		r.deferDelete(a, e)
	}
}

// decodeCopy decodes a stored payload into values and the hash that
// stands for them.
func (r *memcacheReplica) decodeCopy(payload []byte) (values, uint64, error) {
	decoded, err := r.cfg.Transcoder.Decode(payload)
	if err != nil {
		return nil, 0, err
	}
	v := valuesOf(decoded)
	return v, r.m.storedHash(v, payload), nil
}

// refresh makes sure that e, held here and asked for by a cookie of
// another instance's route (id), is not older than what that instance
// stored: the balancer may have sent the client there and back (a
// failback), and this process's state is then stale. The copies under id
// decide: a newer one (a higher generation) replaces e's values, and e is
// marked for a store under this instance's ID; an ended one means the
// session ended there, and refresh reports it gone. None on any node means
// the same (that instance's first store deleted this instance's copies,
// and its logout deleted its own), unless this instance's own copy is
// still there: then that instance has not stored the session yet (async),
// or this instance has taken the session over from it and deleted its
// copies. A node that cannot answer proves nothing: e is kept.
//
// A cookie of the route e was taken over from is the normal case just
// after a takeover (the client has not yet received the new cookie): the
// copies are then the ones this instance loaded, with its own generation.
func (r *memcacheReplica) refresh(e *entry, id sessionID) (gone bool) {
	ns := r.cluster.load()
	if ns.byID[id.node] == nil {
		return false
	}
	f := r.fetch(ns, id)
	if f.best.n == nil {
		if f.failed {
			return false
		}
		e.writeMu.Lock()
		own := e.stored[0]
		e.writeMu.Unlock()
		return r.copyGone(own)
	}
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.removed || e.evicted:
		return false
	case f.best.env.gen < e.storedGen, f.best.env.gen == e.storedGen && e.takenFrom == id.route:
		// This instance's state is newer, or is the copy it took over
		// (with changes perhaps not stored yet). An equal generation
		// written elsewhere after this instance's copy (a touch that
		// found this instance's copy deleted by the takeover rewrites
		// it with the next generation too) is theirs: the cookie says
		// that instance served the client last.
		return false
	case f.best.env.ended:
		return true
	}
	values, hash, err := r.decodeCopy(f.best.payload)
	if err != nil {
		r.corrupt(f.best.n, f.best.key, err)
		return false
	}
	e.values, e.verified = values, nil
	r.takeCopies(e, f, hash)
	e.dirty, e.readMutable = true, false // stored again under this instance's ID
	e.takenFrom = id.route
	r.stats.failbacks.Add(1)
	return false
}

// copyGone reports whether memcached answered that the copy at a is gone.
func (r *memcacheReplica) copyGone(a copyAt) bool {
	n := r.cluster.load().byID[a.node]
	if a.key == "" || n == nil || !n.up.Load() {
		return false
	}
	_, err := r.get(n, a.key)
	return mcwire.Classify(err) == mcwire.Miss
}
