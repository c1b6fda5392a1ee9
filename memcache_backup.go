package mcsession

import (
	"context"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mcsession/mcsession/internal/nodespec"
	"github.com/mcsession/mcsession/internal/recent"
	"github.com/mcsession/mcsession/internal/shardmap"
	"github.com/mcsession/mcsession/internal/singleflight"
)

// memcacheReplica keeps a copy of every session on a memcached node. Its
// parts, one file each:
//
//   - nodes.go: the node list, node health and probing, the ranking of
//     nodes for a session (pick, elsewhere);
//   - backup_queue.go: the queue, the pending set, batching and the flush;
//   - store.go: the store of one session, decided, encoded, sent, recorded;
//   - deletes.go: deletes of ended or moved copies, deferred while a node is down;
//   - load.go: loads of sessions this process does not hold (takeovers);
//   - inplace.go: whether a read of a mutable value changed the session;
//   - internal/mcwire: the wire (pipelined sets, group commit, errors).
//
// This file holds what the session core calls (the replica interface) and
// the goroutines: the workers, the retry loop and the prober.
type memcacheReplica struct {
	m        *Manager // its lifecycle (stop, closed, goRun), expiry and encoding
	cfg      *settings
	stats    *counters
	sessions *shardmap.Map[*entry]
	logger   *rateLogger
	cluster  cluster
	queue    *queue
	rescue   atomic.Bool                // a node went down or was removed: move its sessions
	flights  singleflight.Group[loaded] // concurrent loads of one session share one get
	deletes  deferredDeletes            // deletes waiting for their node to come back
	missing  *recent.Set                // random parts of IDs found gone a moment ago (load.go)
	// unconfirmed counts the sessions stored by this instance whose client
	// has not sent their cookie back (entry.budgeted): a bot that never
	// returns a cookie cannot push real users' copies out of memcached.
	unconfirmed atomic.Int64
}

func newMemcacheReplica(m *Manager, specs []nodespec.Node) *memcacheReplica {
	r := &memcacheReplica{
		m:        m,
		cfg:      &m.cfg,
		stats:    &m.stats,
		sessions: m.sessions,
		logger:   m.logger,
		queue:    newQueue(m.cfg.BackupQueueSize, &m.stats, m.logger),
		missing:  recent.New(missingSize, missingTTL),
	}
	r.cluster = cluster{cfg: &m.cfg, logger: m.logger, onChange: r.nodeChanged, onRestart: r.nodeRestarted}
	r.cluster.replace(specs)
	return r
}

// start runs the workers, the retry loop and the prober, owned by the
// Manager: Close stops them.
func (r *memcacheReplica) start() {
	for range r.cfg.BackupWorkers {
		r.m.goRun(r.work)
	}
	r.m.goRun(r.retryLoop)
	r.m.goRun(func() { r.cluster.probeLoop(r.m.stop) })
	r.m.goRun(func() { r.cluster.restartLoop(r.m.stop) })
}

func (r *memcacheReplica) withNode() bool { return true }

func (r *memcacheReplica) home(random string) string { return r.cluster.load().pick(random).ID }

// usedLocked is called when a request found e by its cookie: its client
// came back, so it no longer counts against the budget of sessions whose
// client never did (see Config.UnconfirmedBudget), and it moves if its
// node is down.
func (r *memcacheReplica) usedLocked(e *entry) {
	if !e.confirmed {
		e.confirmed = true
		r.unbudgetLocked(e)
	}
	r.placeLocked(e)
}

// safeElsewhereLocked reports whether memcached holds e as it is: stored,
// nothing pending. e.mu is held.
func (r *memcacheReplica) safeElsewhereLocked(e *entry) bool {
	return e.stored.any() && !e.needsStoreLocked() && !e.queued && !e.unstorable
}

// buriedLocked reports whether e, ended, has a tombstone in memcached.
// e.tombstoned is written under writeMu only, so it is read with a try:
// a store in progress means "not yet". e.mu is held.
func (r *memcacheReplica) buriedLocked(e *entry) bool {
	if !e.writeMu.TryLock() {
		return false
	}
	defer e.writeMu.Unlock()
	return e.tombstoned
}

// droppedLocked forgets e, dropped from memory: it no longer counts in the
// budget of sessions whose client never came back. e.mu is held.
func (r *memcacheReplica) droppedLocked(e *entry) { r.unbudgetLocked(e) }

// unbudgetLocked takes e out of the count of stored sessions whose client
// never came back. e.mu is held.
func (r *memcacheReplica) unbudgetLocked(e *entry) {
	if e.budgeted {
		e.budgeted = false
		r.unconfirmed.Add(-1)
	}
}

func (r *memcacheReplica) beforeResponse(e *entry) {
	if r.cfg.SyncBackup && e.needsStore() {
		r.storeNow(e)
	}
}

// release ends a request's use of e. The last request to release a session
// whose only possible change is a value changed in place settles that here
// (inplace.go); a session that still needs a store or a touch is queued,
// or stored now with SyncBackup.
func (r *memcacheReplica) release(e *entry, mutated bool) {
	e.mu.Lock()
	e.releaseLocked()
	if mutated {
		// A store before the response (SyncBackup), or by another
		// request, may have cleared the mark while this handler could
		// still change what it read.
		e.readMutable = true
	}
	if e.onlyReadMutableLocked() && e.active == 0 {
		r.checkInPlaceLocked(e)
	}
	store := e.needsStoreLocked()
	touch := !store && e.needsTouchLocked(r.m.expiryLocked(e))
	e.mu.Unlock()
	switch {
	case store && r.cfg.SyncBackup:
		r.storeNow(e)
	case store || touch:
		r.schedule(e)
	}
}

// renamed makes the old ID worthless at once, on the caller's goroutine
// (the request that called RenewID, before its response starts): a fixated
// ID must not load the session anywhere, in async mode too. The copy stored
// under the old ID is deleted now; the next store writes the session under
// its new ID. Here, a tombstone takes the old random part's place in the
// session map until that store (record removes it), so a request with the
// old ID finds it ended rather than loading anything. The price: RenewID
// costs one delete in the request, and until the new copy is written (a
// queued store, in async mode) the session has no copy.
func (r *memcacheReplica) renamed(e *entry, old string) {
	e.mu.Lock()
	e.renamed = append(e.renamed, old)
	e.mu.Unlock()
	r.sessions.Set(old, &entry{removed: true, lastAccess: time.Now()})
	e.writeMu.Lock()
	had := e.stored.any() || len(e.left) > 0
	r.dropCopy(e, old)
	e.writeMu.Unlock()
	if !had {
		// Never stored (and no store was in flight: writeMu was free):
		// nothing can load the old ID, so the stand-in need not stay,
		// and a flood of logins cannot pile them up.
		r.dropStandIns(e, old)
	}
}

// dropStandIns removes the stand-ins of e's earlier random parts olds (or,
// with none given, all it has) from the session map.
func (r *memcacheReplica) dropStandIns(e *entry, olds ...string) {
	e.mu.Lock()
	if len(olds) == 0 {
		olds = e.renamed
	}
	e.renamed = slices.DeleteFunc(e.renamed, func(x string) bool { return slices.Contains(olds, x) })
	e.mu.Unlock()
	for _, old := range olds {
		r.sessions.DeleteIf(old, func(x *entry) bool { return x.removed && x != e })
	}
}

// ended deletes e's copy. e stays in the session map as a tombstone until
// the copy is deleted (see deleteEnded): until then a request with its ID
// finds it ended here, instead of missing and loading the copy back. A
// request's Invalidate (sync) deletes it at once, on the request's
// goroutine, in async mode too: a logout is final on every instance before
// its response starts, and after Close, when nothing else is written, still
// goes out. Expiry queues the delete.
func (r *memcacheReplica) ended(e *entry, _ string, sync bool) {
	switch {
	case r.m.closed.Load():
		r.closedFor(e)
		fallthrough
	case sync:
		e.writeMu.Lock()
		if err := r.deleteEnded(e); err != nil && !r.m.closed.Load() {
			r.queue.addPending(e) // its node is down: retried when it is back
		}
		e.writeMu.Unlock()
	default:
		if e.writeMu.TryLock() {
			if !e.stored.any() && len(e.left) == 0 {
				r.deleteEnded(e) // no copy to delete: out of the map at once
				e.writeMu.Unlock()
				return
			}
			e.writeMu.Unlock()
		}
		r.schedule(e)
	}
}

// setNodes installs a new node list: sessions on a removed node, or on a
// node whose address changed, are written again.
func (r *memcacheReplica) setNodes(specs []nodespec.Node) error {
	if len(specs) == 0 {
		return configError("Nodes", "SetNodes needs at least one node")
	}
	if moved := r.cluster.replace(specs); len(moved) > 0 {
		r.rewriteWhere(func(e *entry) bool {
			if moved[e.node] {
				return true
			}
			for _, a := range e.stored.all() {
				if moved[a.node] {
					return true
				}
			}
			return false
		})
	}
	r.nodeChanged(true) // sessions on removed nodes must move
	return nil
}

func (r *memcacheReplica) flush(ctx context.Context) error { return r.queue.flush(ctx) }

func (r *memcacheReplica) close() { r.cluster.close() }

func (r *memcacheReplica) addStats(s *Stats) {
	s.QueueDepth = len(r.queue.ch)
	s.PendingRetries = r.queue.pendingLen()
	s.Nodes, s.NodesUp = r.cluster.load().counts()
	s.UnconfirmedStored = int(r.unconfirmed.Load())
}

// nodeChanged is the cluster's callback: a node went down (its sessions
// must move, and those with a copy there need another) or came back (the
// stores that failed meanwhile can succeed, and sessions kept with fewer
// copies than wanted get them back).
func (r *memcacheReplica) nodeChanged(down bool) {
	r.rescue.Store(true)
	r.queue.wake()
}

// nodeRestarted is the cluster's callback for a node that restarted empty:
// every local session with a copy there (or whose home it is) is marked
// dirty and queued, so it is stored again. The queue paces the repair
// (queue.scheduleBackground): it takes at most half the queue, the rest
// waits in the pending set, and requests never wait for it.
func (r *memcacheReplica) nodeRestarted(n *node) {
	r.stats.nodeRestarts.Add(1)
	repaired := r.queueWhere(func(e *entry) bool {
		switch {
		case e.stored.on(n.ID):
			e.lost = n.ID // only that copy is written again
		case e.node == n.ID:
			e.dirty = true
		default:
			return false
		}
		return true
	})
	r.stats.sessionsRepaired.Add(uint64(repaired))
}

// schedule queues e for an asynchronous store.
func (r *memcacheReplica) schedule(e *entry) {
	if !r.closedFor(e) {
		r.queue.schedule(e)
	}
}

// storeNow stores e on the caller's goroutine, within BackupTimeout; a
// failure leaves it for the retry loop. It is the SyncBackup path.
func (r *memcacheReplica) storeNow(e *entry) {
	if r.closedFor(e) {
		return
	}
	if err := r.store(e, time.Now().Add(r.cfg.BackupTimeout), true); retryable(err) {
		r.queue.addPending(e)
	}
}

// closedFor reports whether the Manager is closed, counting and logging
// the change to e that it will therefore never write: after Shutdown or
// Close sessions live on in memory only (an ended session's copy is still
// deleted, see ended).
func (r *memcacheReplica) closedFor(e *entry) bool {
	if !r.m.closed.Load() {
		return false
	}
	e.mu.Lock()
	changed := e.needsStoreLocked()
	e.dirty, e.readMutable, e.lost, e.relocated = false, false, "", false // never to be written: count it once
	e.mu.Unlock()
	if changed {
		r.stats.changesAfterClose.Add(1)
		r.logger.warn("after-close", "mcsession: session changed after Shutdown or Close; kept in memory only, not written to memcached (shut the http.Server down before the Manager)")
	}
	return true
}

// work stores queued sessions, a batch at a time, until Close.
func (r *memcacheReplica) work() {
	if h := r.cfg.hooks.workerExited; h != nil {
		defer h()
	}
	t := time.NewTimer(time.Hour)
	t.Stop()
	var batch []*entry
	for {
		batch = r.queue.collect(batch[:0], t, r.m.stop)
		if batch == nil {
			return
		}
		if r.storeBatch(batch) && len(r.queue.ch) == 0 && r.queue.pendingLen() > 0 {
			r.queue.wake() // background work waits: refill the queue now
		}
	}
}

// retryLoop queues failed and dropped stores again every RetryInterval,
// and at once when a node goes down or comes up. When a node goes down it
// queues every local session on it, so they move to another node before
// anyone asks.
func (r *memcacheReplica) retryLoop() {
	t := time.NewTicker(r.cfg.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-r.m.stop:
			return
		case <-r.queue.kick:
		case <-t.C:
		}
		r.queue.retryPending(r.cfg.hooks.retrying, func() {
			if r.rescue.Swap(false) {
				r.rescueSessions()
			}
		})
		r.runDeferredDeletes()
		if h := r.cfg.hooks.retried; h != nil {
			h()
		}
	}
}

// rescueSessions queues every local session whose node is down or gone,
// that has a copy on such a node, or that has fewer copies than are kept
// (a node it could use is back). Each is marked relocated: its store
// writes the copies its places lack (the node of its second copy becomes
// its home, a new second copy goes to the next node), one set each, and
// deletes the one on the node that is down once it is back. With every
// node down it is marked dirty instead: it cannot move, and the node that
// comes back may have restarted empty.
func (r *memcacheReplica) rescueSessions() {
	ns := r.cluster.load()
	down := func(id string) bool {
		n := ns.byID[id]
		return n == nil || !n.up.Load()
	}
	_, up := ns.counts()
	want := min(ns.copies, up)
	r.queueWhere(func(e *entry) bool {
		rescue := down(e.node)
		have := e.stored.all()
		for _, a := range have {
			rescue = rescue || down(a.node)
		}
		switch {
		case !rescue && (len(have) == 0 || len(have) >= want):
			return false
		case up == 0:
			e.dirty = true
		default:
			e.relocated = true
		}
		return true
	})
}

// rewriteWhere marks dirty and queues every local session for which match,
// called with e.mu held, reports true, and returns how many it queued.
func (r *memcacheReplica) rewriteWhere(match func(e *entry) bool) int {
	return r.queueWhere(func(e *entry) bool {
		if match(e) {
			e.dirty = true
			return true
		}
		return false
	})
}

// queueWhere queues every local session for which mark, called with e.mu
// held, reports true (having marked what the store must write), through
// scheduleBackground, and returns how many it queued.
func (r *memcacheReplica) queueWhere(mark func(e *entry) bool) int {
	var rewrite []*entry
	r.sessions.Range(func(_ string, e *entry) bool {
		e.mu.Lock()
		if !e.removed && mark(e) {
			rewrite = append(rewrite, e)
		}
		e.mu.Unlock()
		return true
	})
	for _, e := range rewrite {
		if !r.closedFor(e) {
			r.queue.scheduleBackground(e)
		}
	}
	return len(rewrite)
}

// placeLocked moves e to another node if its node is down, removed, or a
// failover node while a primary is up. The new ID goes to the client with
// the next response, and the session is marked for a store there (its
// second copy's node becomes its home: the store writes only the copies
// its new places lack). It reports whether e moved. e.mu is held.
func (r *memcacheReplica) placeLocked(e *entry) bool {
	ns := r.cluster.load()
	cur := ns.byID[e.node]
	if cur != nil && cur.up.Load() && (!cur.Failover || !ns.primaryUp()) {
		return false
	}
	target := ns.pick(e.random)
	if target == cur || !target.up.Load() {
		return false
	}
	e.setID(sessionID{e.random, target.ID, r.cfg.Route})
	e.relocated = true
	r.stats.relocations.Add(1)
	return true
}
