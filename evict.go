package mcsession

import (
	"math/rand/v2"
	"time"
)

// Bounded memory (Config.MaxSessions). Before a session is added (created
// or loaded) while the map holds MaxSessions entries, makeRoom takes some
// out: it samples a few entries of one shard at random and picks, in this
// order, one whose state is safe in memcached (stored, nothing pending:
// it is dropped from memory only, and loaded again at its next request),
// then one whose client never sent its cookie back (a bot's), then the
// least recently used; those two are ended (Stats.SessionsEvicted).
// Sessions in use by a request are never taken. Sampling keeps the cost
// fixed (no list of every session to maintain on the sticky path) at the
// price of an approximate order, as Redis' approximated LRU does: with
// half the sessions a bot's, the chance that 16 samples hold none is
// 1 in 65,536.

const (
	// evictSample is how many entries makeRoom looks at to pick one, at
	// most a quarter of them (evictSample/evictShards) from each shard
	// picked at random, from at most evictTries shards.
	evictSample = 16
	evictShards = 4
	evictTries  = 16
	// maxEvictions bounds the sessions one makeRoom takes out, so a call
	// costs a fixed amount even when the map is far over the bound.
	maxEvictions = 4
)

// Eviction classes, in the order entries are taken.
const (
	evictNot      = -1 // in use, or already dropped: not taken
	evictDrop     = 0  // safe in memcached, or an ended session's stand-in that a tombstone in memcached covers: dropped from memory, not ended
	evictBot      = 1  // its client never came back: ended
	evictLeastUse = 2  // ended, least recently used first
)

// makeRoom takes sessions out of memory while the map is at
// Config.MaxSessions, before one more is added.
func (m *Manager) makeRoom() {
	for range maxEvictions {
		if m.sessions.Count() < m.cfg.MaxSessions || !m.evictOne() {
			return
		}
	}
}

// evictOne samples the map and takes the best entry out. It reports
// whether it found one to take.
func (m *Manager) evictOne() bool {
	var best *entry
	class, oldest, seen := evictNot, time.Time{}, 0
	for tries := 0; seen < evictSample && tries < evictTries; tries++ {
		m.sessions.Sample(rand.Uint64(), min(evictSample/evictShards, evictSample-seen), func(_ string, e *entry) bool {
			seen++
			e.mu.Lock()
			c := m.evictClassLocked(e)
			if c != evictNot && (class == evictNot || c < class || c == class && e.lastAccess.Before(oldest)) {
				best, class, oldest = e, c, e.lastAccess
			}
			e.mu.Unlock()
			return true
		})
	}
	if best == nil {
		return false
	}
	if class != evictDrop {
		m.endIf(best, &m.stats.evicted, false, func() bool { return m.evictClassLocked(best) == class })
		return true
	}
	best.mu.Lock()
	if m.evictClassLocked(best) != evictDrop {
		best.mu.Unlock()
		return true // changed meanwhile: the next call samples again
	}
	best.evicted = true
	m.replica.droppedLocked(best)
	random := best.random
	best.mu.Unlock()
	m.sessions.DeleteIf(random, func(x *entry) bool { return x == best })
	m.stats.dropped.Add(1)
	return true
}

// evictClassLocked returns how e may be taken out of memory. e.mu is held.
func (m *Manager) evictClassLocked(e *entry) int {
	switch {
	case e.evicted || e.active > 0:
		return evictNot
	case e.removed:
		// Ended, its copy's delete waiting for a node: the stand-in may go
		// once a tombstone in memcached keeps the old ID dead.
		if m.replica.buriedLocked(e) {
			return evictDrop
		}
		return evictNot
	case m.replica.safeElsewhereLocked(e):
		return evictDrop
	case !e.confirmed:
		return evictBot
	}
	return evictLeastUse
}
