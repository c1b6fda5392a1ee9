package mcsession

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mcsession/mcsession/internal/mcwire"
)

// The sets of a store go out (a worker's batch through sendAll, one
// batch per node; a single store through each node's group commit,
// sendJoined) and their outcome is recorded (record): where the copies now
// are, or the failure.

// copySet is the set of one copy, to node n.
type copySet struct {
	mcwire.Set
	n *node
}

// sendJoined sends one set through its node's group commit.
func (r *memcacheReplica) sendJoined(s *copySet) {
	start := time.Now()
	batch := s.n.wire.SetJoined(&s.Set)
	r.sent(s.n, start, batch, s)
}

// sendAll sends the sets of ops in batches, one node at a time, each batch
// at most maxBatch sets and about maxBatchBytes.
func (r *memcacheReplica) sendAll(ops []*storeOp) {
	var all []*copySet
	for _, op := range ops {
		for i := range op.sets {
			all = append(all, &op.sets[i])
		}
	}
	slices.SortStableFunc(all, func(x, y *copySet) int { return strings.Compare(x.n.ID, y.n.ID) })
	sets := make([]*mcwire.Set, 0, min(len(all), maxBatch))
	for len(all) > 0 {
		k, size := 0, 0
		for k < len(all) && k < maxBatch && all[k].n == all[0].n && (k == 0 || size+len(all[k].Value) <= maxBatchBytes) {
			size += len(all[k].Value)
			k++
		}
		sets = sets[:0]
		for _, s := range all[:k] {
			sets = append(sets, &s.Set)
		}
		start := time.Now()
		all[0].n.wire.SetMany(sets)
		r.sent(all[0].n, start, true, all[:k]...)
		all = all[k:]
	}
}

// sent records sets to n that began at start: their latency, a node found
// unreachable, and, if batch, one batch sent.
func (r *memcacheReplica) sent(n *node, start time.Time, batch bool, sets ...*copySet) {
	elapsed := time.Since(start)
	for _, s := range sets {
		r.stats.backupLatency.observe(elapsed)
		r.cluster.failed(n, s.Err)
	}
	if batch {
		r.stats.backupBatches.Add(1)
	}
}

// record records the outcome of op: the new copies, or the failure. A
// store that wrote at least one copy counts as written, and the copies it
// replaced elsewhere are deleted; a copy that failed leaves the session
// dirty, so it is written again (elsewhere: the failed node is marked
// down). op.e.writeMu is held.
func (r *memcacheReplica) record(op *storeOp) error {
	e := op.e
	wrote, refused, failure := r.outcome(op)
	if refused != nil {
		// memcached's -I is below ItemSizeLimit: not a node failure.
		for _, a := range wrote.all() {
			if !e.stored.has(a.node, a.key) {
				r.deleteKey(a, e) // giveUp drops the others
			}
		}
		return r.tooLarge(e, refused.n, op.hash, fmt.Sprintf("%d bytes encoded, refused by memcached node %s (its -I item size limit is below ItemSizeLimit %d)",
			len(refused.Value), refused.n.ID, r.cfg.ItemSizeLimit))
	}
	if failure != nil {
		r.stats.backupsFailed.Add(1)
	}
	if !wrote.any() {
		e.mu.Lock()
		e.dirty = true // write it again next time
		if !e.stored.any() {
			r.unbudgetLocked(e) // no copy: its place in the budget is free again
		}
		e.mu.Unlock()
		return failure
	}
	r.stats.backupsWritten.Add(1)
	r.stats.copiesWritten.Add(uint64(len(wrote.all())))
	old := e.stored
	if op.keep.any() {
		wrote = op.inOrder(wrote, r.cfg.Route)
	}
	e.storedHash, e.storedGen, e.rejected, e.tombstoned = op.hash, op.gen, 0, false
	e.verified = op.snap
	e.mu.Lock()
	e.stored = wrote
	e.unstorable = false
	e.storedUntil = op.until
	if failure != nil {
		e.dirty = true // a copy is missing: the next store writes it elsewhere
	}

	// Re-validate: RenewID may have changed the ID while the set was on
	// the wire (setID clears e.key; prepare derived it for op). Only a
	// set under the current ID retires the tombstones of earlier IDs: the
	// copy just written under an old ID must stay unloadable.
	var renamed []string
	if e.key == op.home {
		renamed, e.renamed = e.renamed, nil
	}
	e.mu.Unlock()
	for _, a := range old.all() {
		if !wrote.has(a.node, a.key) {
			r.deleteKey(a, e)
		}
	}
	// Stored under the current ID: the tombstones of IDs it had before
	// RenewID can go (their copies are deleted, or were never written).
	for _, old := range renamed {
		r.sessions.DeleteIf(old, func(x *entry) bool { return x.removed && x != e })
	}
	return failure
}

// outcome sorts op's sets: the copies written, a set refused as too
// large, and the first failure.
func (r *memcacheReplica) outcome(op *storeOp) (wrote copies, refused *copySet, failure error) {
	for i := range op.sets {
		s := &op.sets[i]
		switch {
		case s.Err == nil:
			wrote.add(copyAt{s.n.ID, s.Key, r.cfg.Route})
		case errors.Is(s.Err, mcwire.ErrTooLarge):
			refused = s
		case failure == nil:
			failure = opError(s.n, "set", s.Err)
		}
	}
	return wrote, refused, failure
}

// tooLarge records that e's encoding, with hash, is too large for
// memcached (why says how), and gives up on it until it changes.
func (r *memcacheReplica) tooLarge(e *entry, n *node, hash uint64, why string) error {
	r.stats.backupsTooLarge.Add(1)
	err := fmt.Errorf("%w: %s; it is kept locally only", errTooLarge, why)
	r.logger.error("too-large", err.Error(), "node", n.ID)
	return r.giveUp(e, hash, err)
}

// giveUp records that e cannot be stored until it changes (its encoding,
// with hash, was refused, or could not be made) and deletes the copy it
// had: memcached must not hand a takeover a state the session has left.
// e.writeMu is held. It returns err as a permanent error.
func (r *memcacheReplica) giveUp(e *entry, hash uint64, err error) error {
	e.rejected, e.verified = hash, nil
	e.mu.Lock()
	e.unstorable = true
	r.unbudgetLocked(e) // its copy is deleted below, or never was
	random := e.random
	e.mu.Unlock()
	r.dropCopy(e, random)
	return errPermanent{err}
}
