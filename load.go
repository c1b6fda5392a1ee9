package mcsession

import (
	"errors"
	"hash/maphash"
	"sync"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// load fetches a session this process does not hold from memcached: the
// takeover of a session whose instance died or was drained. Concurrent loads
// of one session share one get. The session is adopted under this
// instance's route; if that changes its ID, the client gets a new cookie and
// the copy under the old ID is deleted once the new one is written. It
// returns no session if it is not in memcached, has expired or cannot be
// decoded (all three: gone), or if its node cannot be reached.
func (b *backup) load(id sessionID) loaded {
	ns := b.nodes.Load()
	if ns.byID[id.node] == nil {
		return loaded{gone: true} // unknown node: a forged or outdated cookie costs no lookup
	}
	return b.flights.do(id.random, func() loaded { return b.loadNow(ns, id) })
}

// loaded is the outcome of a load: the session, or whether it is certainly
// gone (missing, expired or corrupt) rather than out of reach.
type loaded struct {
	e    *entry
	gone bool
}

// loadNow does the work of load.
func (b *backup) loadNow(ns *nodeSet, id sessionID) loaded {
	if e, ok := b.m.sessions.Get(id.random); ok {
		return loaded{e: e} // adopted by a load that finished just before this one began
	}
	home := ns.byID[id.node]
	candidates := []*node{home}
	if !home.up.Load() {
		candidates = elsewhere(ns, home, id.random)
	}
	// Beyond its home node the session may be where its owner moved it
	// while home was down: home may be back now, restarted empty.
	lookedElsewhere := !home.up.Load()
	failed := false
	for i := 0; i < len(candidates); i++ {
		n := candidates[i]
		found := sessionID{id.random, n.ID, id.route}
		key := memcacheKey(b.m.cfg.KeyPrefix, found.String())
		start := time.Now()
		var item *memcache.Item
		err := b.do(n, "get", func(c *memcache.Client) (err error) {
			item, err = c.Get(key)
			return err
		})
		b.m.stats.loadLatency.observe(time.Since(start))
		switch {
		case errors.Is(err, memcache.ErrCacheMiss):
			if n == home && !lookedElsewhere {
				lookedElsewhere = true
				candidates = append(candidates, elsewhere(ns, home, id.random)...)
			}
			continue
		case err != nil:
			failed = true
			b.m.stats.loadsError.Add(1)
			b.m.logger.warn("load-error", "mcsession: cannot load session from memcached; the request starts without it",
				"err", err)
			if n == home && !lookedElsewhere {
				// This get found the session's node dead: look where the
				// owner may have moved it, as if it had been known down.
				lookedElsewhere = true
				candidates = append(candidates, elsewhere(ns, home, id.random)...)
			}
			continue
		}
		e, err := b.adopt(found, n, key, item.Value)
		if err != nil {
			b.m.stats.decodeErrors.Add(1)
			b.m.stats.loadsMiss.Add(1)
			b.m.logger.warn("decode", "mcsession: stored session cannot be decoded; treated as missing",
				"node", n.ID, "key", key, "err", err)
			return loaded{gone: true}
		}
		if e == nil {
			b.m.stats.loadsMiss.Add(1) // expired
			return loaded{gone: true}
		}
		b.m.stats.loadsHit.Add(1)
		actual, _ := b.m.sessions.LoadOrStore(e.random, e)
		return loaded{e: actual}
	}
	if failed || len(candidates) == 0 {
		return loaded{} // out of reach, not known to be gone
	}
	b.m.stats.loadsMiss.Add(1)
	return loaded{gone: true} // missing on every node that answered
}

// elsewhere lists the up nodes other than home, where the owner of a
// session on home may have moved it when home went down: first the node
// pick chooses, as the owner would have, then the others.
func elsewhere(ns *nodeSet, home *node, random string) []*node {
	var list []*node
	if n := ns.pick(random); n != home && n.up.Load() {
		list = append(list, n)
	}
	for _, n := range ns.list {
		if n != home && n.up.Load() && (len(list) == 0 || n != list[0]) {
			list = append(list, n)
		}
	}
	return list
}

// adopt decodes a stored session found under id on node n. It returns nil
// without error if the session has outlived its lifetime.
func (b *backup) adopt(id sessionID, n *node, key string, blob []byte) (*entry, error) {
	env, payload, err := decodeEnvelope(blob, id.String())
	if err != nil {
		return nil, err
	}
	now := time.Now()
	for _, life := range []time.Duration{env.lifetime, b.m.cfg.Lifetime} {
		if life > 0 && now.Sub(env.created) > life {
			b.deleteKey(n.ID, key, nil)
			return nil, nil
		}
	}
	decoded, err := b.m.cfg.Transcoder.Decode(payload)
	if err != nil {
		return nil, err
	}
	values := valuesOf(decoded)
	e := &entry{
		node:       n.ID,
		values:     values,
		created:    env.created,
		lastAccess: now,
		storedHash: b.storedHash(values, payload),
		storedNode: n.ID,
		storedKey:  key,
	}
	// The ID is built afresh: id's parts are substrings of the request's
	// Cookie header, which the session must not keep alive.
	e.setID(sessionID{id.random, n.ID, b.m.cfg.Route})
	if e.id != id.String() {
		// Stored under another ID: write it under ours (the next backup
		// does, and deletes the old key).
		e.dirty = true
		if id.route != b.m.cfg.Route {
			b.m.stats.takeovers.Add(1)
		}
	}
	e.mu.Lock()
	b.placeLocked(e)
	e.mu.Unlock()
	return e, nil
}

// storedHash is valuesHash for values just decoded from payload: the
// payload's own hash stands for values that have no fingerprint.
func (b *backup) storedHash(values values, payload []byte) uint64 {
	if h, ok := fingerprint(b.m.seed, values); ok {
		return h
	}
	return maphash.Bytes(b.m.seed, payload)
}

// flightGroup runs one function per key at a time and shares its result
// with every caller that asked for the same key meanwhile.
type flightGroup struct {
	// mu guards calls.
	mu    sync.Mutex
	calls map[string]*flight
}

type flight struct {
	done chan struct{}
	res  loaded
}

func (g *flightGroup) do(key string, fn func() loaded) loaded {
	g.mu.Lock()
	if f, ok := g.calls[key]; ok {
		g.mu.Unlock()
		<-f.done
		return f.res
	}
	if g.calls == nil {
		g.calls = make(map[string]*flight)
	}
	f := &flight{done: make(chan struct{})}
	g.calls[key] = f
	g.mu.Unlock()

	defer func() {
		g.mu.Lock()
		delete(g.calls, key)
		g.mu.Unlock()
		close(f.done)
	}()
	f.res = fn()
	return f.res
}
