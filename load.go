package mcsession

import (
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

// loadNow does the work of load. It asks the ID's node, then, if that is
// down or does not have the session, the other up nodes in the session's
// ranking: its owner may have moved it there while the ID's node was down,
// and the client may not have received the new cookie.
func (r *memcacheReplica) loadNow(ns *nodeSet, id sessionID) loaded {
	if e, ok := r.sessions.Get(id.random); ok {
		return loaded{e: e} // adopted by a load that finished just before this one began
	}
	home := ns.byID[id.node]
	var buf [8]*node
	candidates := append(buf[:0], home)
	lookedElsewhere := !home.up.Load()
	if lookedElsewhere {
		candidates = ns.elsewhere(candidates[:0], home, id.random)
	}
	// A node that could hold the session and cannot be asked proves
	// nothing: the session is gone only if every node that could hold it
	// answered "miss". Its home node, known down, is such a node.
	failed := lookedElsewhere
	for i := 0; i < len(candidates); i++ {
		n := candidates[i]
		found := sessionID{id.random, n.ID, id.route}
		key := memcacheKey(r.cfg.KeyPrefix, found.String())
		blob, err := r.get(n, key)
		if err != nil {
			failed = failed || mcwire.Classify(err) != mcwire.Miss
			if n == home && !lookedElsewhere {
				lookedElsewhere = true
				candidates = ns.elsewhere(candidates, home, id.random)
			}
			continue
		}
		return r.adoptFound(found, n, key, blob)
	}
	if failed || len(candidates) == 0 {
		return loaded{} // out of reach, not known to be gone
	}
	r.stats.loadsMiss.Add(1)
	return loaded{gone: true} // missing on every node that answered
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
	r.logger.warn("load-error", "mcsession: cannot load session from memcached; the request starts without it",
		"err", opError(n, "get", err))
	return nil, err
}

// adoptFound adds the session stored as blob under key on n, found for
// the ID found, to process memory, unless it is corrupt or expired.
func (r *memcacheReplica) adoptFound(found sessionID, n *node, key string, blob []byte) loaded {
	e, err := r.adopt(found, n, key, blob)
	if err != nil {
		r.stats.decodeErrors.Add(1)
		r.stats.loadsMiss.Add(1)
		r.logger.warn("decode", "mcsession: stored session cannot be decoded; treated as missing",
			"node", n.ID, "key", key, "err", err)
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

// adopt decodes a stored session found under id on node n. It returns nil
// without error if the session has outlived its lifetime.
func (r *memcacheReplica) adopt(id sessionID, n *node, key string, blob []byte) (*entry, error) {
	env, payload, err := decodeEnvelope(blob, id.String())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, life := range []time.Duration{env.lifetime, r.cfg.Lifetime} {
		if life > 0 && now.Sub(env.created) > life {
			r.deleteKey(n.ID, key, nil)
			return nil, nil
		}
	}
	decoded, err := r.cfg.Transcoder.Decode(payload)
	if err != nil {
		return nil, err
	}
	values := valuesOf(decoded)
	e := &entry{
		confirmed:  true, // loaded for a request that sent its cookie
		node:       n.ID,
		values:     values,
		created:    env.created,
		lastAccess: now,
		storedHash: r.m.storedHash(values, payload),
		storedNode: n.ID,
		storedKey:  key,
	}
	// The ID is built afresh: id's parts are substrings of the request's
	// Cookie header, which the session must not keep alive.
	e.setID(sessionID{id.random, n.ID, r.cfg.Route})
	if env.version != envelopeVersion {
		// An older format (version 1 holds the ID in clear): the next
		// store writes it again in the current one.
		e.dirty = true
	}
	if e.id != id.String() {
		// Stored under another ID: write it under ours (the next store
		// does, and deletes the old key).
		e.dirty = true
		if id.route != r.cfg.Route {
			r.stats.takeovers.Add(1)
		}
	}
	e.mu.Lock()
	r.placeLocked(e)
	e.mu.Unlock()
	return e, nil
}
