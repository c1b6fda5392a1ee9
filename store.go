package mcsession

import (
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/mcsession/mcsession/internal/mcwire"
)

// The store of one session brings memcached up to date with it, in four
// steps:
//
//  1. decide, from the session's state under its lock: decideStore, a pure
//     function of storeState;
//  2. encode, still under the lock, so that no request reaches a value
//     while it is read (and none holds one: entry.active);
//  3. send, without the lock: a worker's batch through sendAll, a single
//     store through the node's group commit;
//  4. record the outcome (record), under writeMu, re-reading what the
//     send may have let change.
//
// A touch that finds the copy gone goes back to step 1 with the session
// marked dirty: the session may have changed, or been renamed, meanwhile.
// Placement comes before the decision and may change the state it reads:
// a session whose node is down is moved (new ID, marked dirty) so that the
// decision writes it to its new node.

// storeState is what decideStore needs to know of a session.
type storeState struct {
	removed     bool // ended: its copy must go
	dirty       bool // changed since the last store began
	readMutable bool // a mutable value was read: it may have changed in place
	moved       bool // its current key is not the one memcached holds
	touchDue    bool // memcached's copy expires before the session does
	busy        bool // a request holds it, and the caller is not that request
	verified    bool // its values are identical to the snapshot of the stored ones
	nodeUp      bool // its node is up
	overBudget  bool // a first store of a session whose client never came back, past the budget
}

// storeAction is what a store does.
type storeAction int

const (
	actNone       storeAction = iota // memcached is up to date
	actDelete                        // delete the copy of an ended session
	actNoNode                        // no node is up: retry later
	actTouch                         // extend the copy's TTL
	actBusy                          // a request holds the session: its release queues it again
	actSettleRead                    // only a read of a mutable value, and it changed nothing
	actWrite                         // encode, and set unless the encoding is what memcached holds
	actWaitClient                    // a first store past the budget: wait until the client comes back
)

// decideStore decides what a store of a session in state s does, and for
// actWrite whether the set must go out even if the values hash as stored
// (a change, or a new key).
func decideStore(s storeState) (act storeAction, mustWrite bool) {
	switch {
	case s.removed:
		return actDelete, false
	case !s.nodeUp:
		return actNoNode, false
	}
	mustWrite = s.dirty || s.moved
	write := mustWrite || s.readMutable
	switch {
	case !write && s.touchDue:
		return actTouch, false
	case !write:
		return actNone, false
	case s.busy:
		return actBusy, false
	case !mustWrite && s.verified:
		return actSettleRead, false
	case s.overBudget:
		return actWaitClient, false
	}
	return actWrite, mustWrite
}

// stateLocked reads e's storeState for a store to node n under key.
// e.mu and e.writeMu are held.
func (r *memcacheReplica) stateLocked(e *entry, n *node, key string, inRequest bool) storeState {
	moved := key != e.storedKey && !e.unstorable
	return storeState{
		removed:     e.removed,
		dirty:       e.dirty,
		readMutable: e.readMutable,
		moved:       moved,
		touchDue:    e.needsTouchLocked(r.m.expiryLocked(e)),
		busy:        e.active > 0 && !inRequest,
		verified:    e.readMutable && !e.dirty && !moved && e.verifiedLocked(),
		nodeUp:      n != nil && n.up.Load(),
		overBudget: !inRequest && !e.confirmed && !e.budgeted && e.storedKey == "" &&
			r.unconfirmed.Load() >= int64(r.cfg.UnconfirmedBudget),
	}
}

// errBusy defers an asynchronous write of a session that a request is
// using: the request may be changing one of its values in place, and
// encoding the value meanwhile would race with it. The request queues the
// session again when it releases it.
var errBusy = errors.New("mcsession: session in use by a request; backup deferred")

// setOp is a set decided by prepare: what to send, and what to record once
// memcached answers.
type setOp struct {
	mcwire.Set
	e     *entry
	n     *node
	until time.Time // what Exp stands for
	hash  uint64    // of the values written
	snap  values    // snapshot of the values written, or nil
}

// store brings memcached up to date with e: it writes e (set) if it changed
// or a mutable value read from it now encodes differently, extends the
// copy's TTL (touch) if memcached would drop it before the local session
// expires, or deletes it if e has ended. A node that fails is marked down
// and the session moves to another node and is tried there, while deadline
// allows. inRequest says the caller is the one request allowed to be using
// e (SyncBackup); otherwise a write waits until no request uses e (errBusy).
func (r *memcacheReplica) store(e *entry, deadline time.Time, inRequest bool) error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	return r.storeLocked(e, deadline, inRequest)
}

// storeLocked is store with e.writeMu held.
func (r *memcacheReplica) storeLocked(e *entry, deadline time.Time, inRequest bool) error {
	for {
		err := r.storeOnce(e, inRequest)
		if !r.worthRetrying(err, deadline) {
			return err
		}
		// The node is marked down now; the next pass moves the session.
	}
}

// storeOnce is one pass of store, on e's current node. e.writeMu is held.
func (r *memcacheReplica) storeOnce(e *entry, inRequest bool) error {
	op, err := r.prepare(e, inRequest)
	if op == nil {
		return err
	}
	start := time.Now()
	sent := op.n.wire.SetJoined(&op.Set)
	r.sent(op.n, start, sent, op)
	return r.record(op)
}

// storeBatch stores the sessions of a worker's batch, each once, with one
// batch of sets per node. A session being stored by another goroutine
// meanwhile (writeMu taken) is stored after the batch, on its own.
func (r *memcacheReplica) storeBatch(batch []*entry) {
	r.queue.unclaim(batch)
	deadline := time.Now().Add(r.cfg.BackupTimeout)
	var ops []*setOp
	var later []*entry
	for _, e := range batch {
		if !e.writeMu.TryLock() {
			later = append(later, e)
			continue
		}
		op, err := r.prepare(e, false)
		if op == nil {
			r.finishBatchStore(e, err, deadline)
			continue
		}
		ops = append(ops, op)
	}
	r.sendAll(ops)
	for _, op := range ops {
		r.finishBatchStore(op.e, r.record(op), deadline)
	}
	for _, e := range later {
		r.queue.settle(e, r.store(e, deadline, false))
	}
}

// finishBatchStore ends a batch's store of e with err, called with
// e.writeMu held: a node found unreachable is retried on another node
// while deadline allows. It releases e.writeMu.
func (r *memcacheReplica) finishBatchStore(e *entry, err error, deadline time.Time) {
	if r.worthRetrying(err, deadline) {
		err = r.storeLocked(e, deadline, false)
	}
	e.writeMu.Unlock()
	r.queue.settle(e, err)
}

// worthRetrying reports whether err is a node found unreachable, or
// replaced by SetNodes while the Manager runs (its connections closed
// under the store), and deadline leaves time for another try.
func (r *memcacheReplica) worthRetrying(err error, deadline time.Time) bool {
	if err == nil || time.Until(deadline) < r.cfg.OperationTimeout {
		return false
	}
	switch mcwire.Classify(err) {
	case mcwire.Unreachable:
		return true
	case mcwire.Closed:
		return !r.m.closed.Load()
	}
	return false
}

// prepare decides and encodes a pass of a store: it deletes the copy of an
// ended session, touches one that only needs a longer TTL, settles a read
// that changed nothing, and otherwise encodes e and returns the set to
// send. A nil op ends the pass with the error returned. e.writeMu is held.
func (r *memcacheReplica) prepare(e *entry, inRequest bool) (*setOp, error) {
	for {
		e.mu.Lock()
		if !e.removed {
			r.placeLocked(e)
		}
		n := r.cluster.load().byID[e.node]
		key := r.keyLocked(e)
		act, mustWrite := decideStore(r.stateLocked(e, n, key, inRequest))
		switch act {
		case actWrite:
			if !e.confirmed && !e.budgeted {
				// Its place in the budget is taken now, before the
				// send: a worker's batch decides many stores at once.
				// record gives it back if no copy results.
				e.budgeted = true
				r.unconfirmed.Add(1)
			}
			return r.encodeLocked(e, n, key, mustWrite) // unlocks e.mu
		case actSettleRead:
			r.readUnchangedLocked(e)
		}
		var exp int32
		var until time.Time
		if act == actTouch {
			exp, until = r.ttlLocked(e, time.Now())
		}
		e.mu.Unlock()
		switch act {
		case actDelete:
			return nil, r.deleteEnded(e)
		case actNoNode:
			r.stats.backupsFailed.Add(1)
			return nil, errNoNodeUp
		case actBusy:
			return nil, errBusy
		case actWaitClient:
			// Stays dirty: the client's next request queues it again.
			r.stats.backupsWaitingClient.Add(1)
			return nil, nil
		case actTouch:
			if lost, err := r.touch(e, n, key, exp, until); !lost {
				return nil, err
			}
		default:
			return nil, nil
		}
	}
}

// touch extends the TTL of e's copy on n. lost reports that memcached no
// longer has it (a restart, an eviction): e is then marked for a write.
func (r *memcacheReplica) touch(e *entry, n *node, key string, exp int32, until time.Time) (lost bool, err error) {
	start := time.Now()
	err = n.wire.Touch(key, exp)
	r.stats.backupLatency.observe(time.Since(start))
	switch mcwire.Classify(err) {
	case mcwire.OK:
		r.stats.touches.Add(1)
		e.mu.Lock()
		e.storedUntil = until
		e.mu.Unlock()
		return false, nil
	case mcwire.Miss:
		r.stats.sessionsRepaired.Add(1)
		e.mu.Lock()
		e.dirty = true
		e.mu.Unlock()
		return true, nil
	}
	r.cluster.failed(n, err)
	r.stats.backupsFailed.Add(1)
	return false, opError(n, "touch", err)
}

// encodeLocked encodes e for a set to n under key, or settles the store if
// the values hash as what memcached holds and mustWrite is false. It is
// called with e.mu held and e.writeMu held, and releases e.mu.
func (r *memcacheReplica) encodeLocked(e *entry, n *node, key string, mustWrite bool) (*setOp, error) {
	hash, plain := fingerprint(r.m.seed, e.values)
	if plain && !mustWrite && (hash == e.storedHash || hash == e.rejected) {
		if hash == e.storedHash && e.verified != nil {
			e.verified = snapshot(e.values) // equal, but not identical: renew
		}
		r.readUnchangedLocked(e)
		e.mu.Unlock()
		return nil, nil
	}
	var snap values // what the payload will stand for, for checkInPlaceLocked
	if e.verified != nil {
		snap = snapshot(e.values)
	}
	payload, err := r.m.encode(e.values)
	e.dirty, e.readMutable = false, false
	env := envelope{created: e.created, idleTimeout: r.cfg.IdleTimeout, lifetime: r.cfg.Lifetime}
	exp, until := r.ttlLocked(e, time.Now())
	e.mu.Unlock()
	if err != nil {
		r.stats.backupsFailed.Add(1)
		r.logger.error("encode", "mcsession: cannot encode session; it is kept locally only until it changes again",
			"err", err)
		return nil, r.giveUp(e, 0, fmt.Errorf("mcsession: encode session: %w", err))
	}
	if !plain {
		hash = maphash.Bytes(r.m.seed, payload)
	}
	if !mustWrite && (hash == e.storedHash || hash == e.rejected) {
		r.stats.backupsSkipped.Add(1)
		return nil, nil
	}
	blob := appendEnvelope(make([]byte, 0, len(payload)+32), env, payload)
	if len(blob) > r.cfg.ItemSizeLimit {
		return nil, r.tooLarge(e, n, hash, fmt.Sprintf("%d bytes encoded, ItemSizeLimit is %d", len(blob), r.cfg.ItemSizeLimit))
	}
	return &setOp{Set: mcwire.Set{Key: key, Value: blob, Exp: exp}, e: e, n: n, until: until, hash: hash, snap: snap}, nil
}

// sendAll sends ops in batches, one node at a time, each batch at most
// maxBatch sets and about maxBatchBytes.
func (r *memcacheReplica) sendAll(ops []*setOp) {
	slices.SortStableFunc(ops, func(x, y *setOp) int { return strings.Compare(x.n.ID, y.n.ID) })
	sets := make([]*mcwire.Set, 0, min(len(ops), maxBatch))
	for len(ops) > 0 {
		k, size := 0, 0
		for k < len(ops) && k < maxBatch && ops[k].n == ops[0].n && (k == 0 || size+len(ops[k].Value) <= maxBatchBytes) {
			size += len(ops[k].Value)
			k++
		}
		sets = sets[:0]
		for _, op := range ops[:k] {
			sets = append(sets, &op.Set)
		}
		start := time.Now()
		ops[0].n.wire.SetMany(sets)
		r.sent(ops[0].n, start, true, ops[:k]...)
		ops = ops[k:]
	}
}

// sent records sets to n that began at start: their latency, a node found
// unreachable, and, if batch, one batch sent.
func (r *memcacheReplica) sent(n *node, start time.Time, batch bool, ops ...*setOp) {
	elapsed := time.Since(start)
	for _, op := range ops {
		r.stats.backupLatency.observe(elapsed)
		r.cluster.failed(n, op.Err)
	}
	if batch {
		r.stats.backupBatches.Add(1)
	}
}

// record records the outcome of op: the new copy, or the failure.
// op.e.writeMu is held.
func (r *memcacheReplica) record(op *setOp) error {
	e, n, err := op.e, op.n, op.Err
	if errors.Is(err, mcwire.ErrTooLarge) {
		// memcached's -I is below ItemSizeLimit: not a node failure.
		return r.tooLarge(e, n, op.hash, fmt.Sprintf("%d bytes encoded, refused by memcached node %s (its -I item size limit is below ItemSizeLimit %d)",
			len(op.Value), n.ID, r.cfg.ItemSizeLimit))
	}
	if err != nil {
		r.stats.backupsFailed.Add(1)
		e.mu.Lock()
		e.dirty = true // write it again next time
		if e.storedKey == "" {
			r.unbudgetLocked(e) // no copy: its place in the budget is free again
		}
		e.mu.Unlock()
		return opError(n, "set", err)
	}
	r.stats.backupsWritten.Add(1)
	oldNode, oldKey := e.storedNode, e.storedKey
	e.storedHash, e.storedNode, e.storedKey, e.rejected = op.hash, n.ID, op.Key, 0
	e.verified = op.snap
	e.mu.Lock()
	e.unstorable = false
	e.storedUntil = op.until

	// Re-validate: RenewID may have changed the ID while the set was on
	// the wire (setID clears e.key; prepare derived it for op). Only a
	// set under the current ID retires the tombstones of earlier IDs: the
	// copy just written under an old ID must stay unloadable.
	var renamed []string
	if e.key == op.Key {
		renamed, e.renamed = e.renamed, nil
	}
	e.mu.Unlock()
	if oldKey != "" && oldKey != op.Key {
		r.deleteKey(oldNode, oldKey, e)
	}
	// Stored under the current ID: the tombstones of IDs it had before
	// RenewID can go (their copies are deleted, or were never written).
	for _, old := range renamed {
		r.sessions.DeleteIf(old, func(x *entry) bool { return x.removed && x != e })
	}
	return nil
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
	e.mu.Unlock()
	r.dropCopy(e)
	return errPermanent{err}
}

// keyLocked returns the memcached key of e's current ID, derived once per
// ID: a SHA-256 is not free, and a session is stored many times.
func (r *memcacheReplica) keyLocked(e *entry) string {
	if e.key == "" {
		e.key = memcacheKey(r.cfg.KeyPrefix, e.id)
	}
	return e.key
}
