package mcsession

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
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
	moved       bool // a node it should have a copy on lacks it (a new ID, a new second node)
	touchDue    bool // memcached's copy expires before the session does
	busy        bool // a request holds it, and the caller is not that request
	verified    bool // its values are identical to the snapshot of the stored ones
	nodeUp      bool // its home node is up
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

// stateLocked reads e's storeState for a store to the places ps.
// e.mu and e.writeMu are held.
func (r *memcacheReplica) stateLocked(e *entry, ps places, inRequest bool) storeState {
	moved := !e.unstorable && !ps.heldBy(&e.stored)
	n := ps[0].n
	return storeState{
		removed:     e.removed,
		dirty:       e.dirty,
		readMutable: e.readMutable,
		moved:       moved,
		touchDue:    e.needsTouchLocked(r.m.expiryLocked(e)),
		busy:        e.active > 0 && !inRequest,
		verified:    e.readMutable && !e.dirty && !moved && e.verifiedLocked(),
		nodeUp:      n != nil && n.up.Load(),
		overBudget: !inRequest && !e.confirmed && !e.budgeted && !e.stored.any() &&
			r.unconfirmed.Load() >= int64(r.cfg.UnconfirmedBudget),
	}
}

// errBusy defers an asynchronous write of a session that a request is
// using: the request may be changing one of its values in place, and
// encoding the value meanwhile would race with it. The request queues the
// session again when it releases it.
var errBusy = errors.New("mcsession: session in use by a request; backup deferred")

// storeOp is a write decided by prepare: the sets to send, one per place,
// and what to record once memcached answers.
type storeOp struct {
	e     *entry
	sets  []copySet // in buf
	buf   [maxCopies]copySet
	until time.Time // what the sets' Exp stands for
	hash  uint64    // of the values written
	gen   uint64    // the copies' generation
	snap  values    // snapshot of the values written, or nil
	keep  copies    // copies of the same generation that stay (only the missing ones are written)
	home  string    // the key of the session's ID when op was decided
	ps    places    // where the copies go, home first
}

// inOrder returns the copies at op's places, in their order (home first),
// that op kept or wrote (under route, this instance's).
func (op *storeOp) inOrder(wrote copies, route string) copies {
	var c copies
	for _, p := range op.ps {
		if p.n != nil && (op.keep.has(p.n.ID, p.key) || wrote.has(p.n.ID, p.key)) {
			c.add(copyAt{p.n.ID, p.key, route})
		}
	}
	return c
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

// storeOnce is one pass of store, on e's current nodes. e.writeMu is held.
// The sets of the two copies go out at the same time, each through its
// node's group commit.
func (r *memcacheReplica) storeOnce(e *entry, inRequest bool) error {
	op, err := r.prepare(e, inRequest)
	if op == nil {
		return err
	}
	var wg sync.WaitGroup
	for i := 1; i < len(op.sets); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.sendJoined(&op.sets[i])
		}()
	}
	r.sendJoined(&op.sets[0])
	wg.Wait()
	return r.record(op)
}

// storeBatch stores the sessions of a worker's batch, each once, with one
// batch of sets per node. A session being stored by another goroutine
// meanwhile (writeMu taken) is stored after the batch, on its own. It
// reports whether some store succeeded.
func (r *memcacheReplica) storeBatch(batch []*entry) (progress bool) {
	r.queue.unclaim(batch)
	deadline := time.Now().Add(r.cfg.BackupTimeout)
	var ops []*storeOp
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
		err := r.record(op)
		progress = progress || err == nil
		r.finishBatchStore(op.e, err, deadline)
	}
	for _, e := range later {
		r.queue.settle(e, r.store(e, deadline, false))
	}
	return progress
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
func (r *memcacheReplica) prepare(e *entry, inRequest bool) (*storeOp, error) {
	for {
		e.mu.Lock()
		if e.lost != "" {
			e.stored.drop(e.lost) // restarted empty: write that copy again
			e.lost = ""
		}
		if !e.removed {
			r.placeLocked(e)
		}
		ps := r.placesLocked(r.cluster.load(), e)
		act, mustWrite := decideStore(r.stateLocked(e, ps, inRequest))
		switch act {
		case actNone, actTouch, actSettleRead, actWrite:
			e.relocated = false // decided on its places as they are now
		}
		switch act {
		case actWrite:
			if !e.confirmed && !e.budgeted {
				// Its place in the budget is taken now, before the
				// send: a worker's batch decides many stores at once.
				// record gives it back if no copy results.
				e.budgeted = true
				r.unconfirmed.Add(1)
			}
			return r.encodeLocked(e, ps, mustWrite) // unlocks e.mu
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
			if lost, err := r.touch(e, ps, exp, until); !lost {
				return nil, err
			}
		default:
			return nil, nil
		}
	}
}

// touch extends the TTL of e's copies at ps. lost reports that memcached
// no longer has one (a restart, an eviction): e is then marked for a
// write, which stores every copy again.
func (r *memcacheReplica) touch(e *entry, ps places, exp int32, until time.Time) (lost bool, err error) {
	for _, p := range ps {
		if p.n == nil {
			continue
		}
		start := time.Now()
		terr := p.n.wire.Touch(p.key, exp)
		r.stats.backupLatency.observe(time.Since(start))
		switch mcwire.Classify(terr) {
		case mcwire.OK:
			r.stats.touches.Add(1)
		case mcwire.Miss:
			lost = true
		default:
			r.cluster.failed(p.n, terr)
			r.stats.backupsFailed.Add(1)
			err = cmp.Or(err, opError(p.n, "touch", terr))
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if lost {
		r.stats.sessionsRepaired.Add(1)
		e.dirty = true // both lost, or one: then the other is written too
		return true, nil
	}
	if err == nil {
		e.storedUntil = until
	}
	return false, err
}

// encodeLocked encodes e for the sets of its copies at ps, or settles the
// store if the values hash as what memcached holds and mustWrite is false.
// It is called with e.mu held and e.writeMu held, and releases e.mu.
func (r *memcacheReplica) encodeLocked(e *entry, ps places, mustWrite bool) (*storeOp, error) {
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
	changed := e.dirty || e.readMutable
	e.dirty, e.readMutable = false, false
	env := envelope{created: e.created, idleTimeout: r.cfg.IdleTimeout, lifetime: r.cfg.Lifetime, gen: e.storedGen + 1}
	exp, until := r.ttlLocked(e, time.Now())
	storedUntil := e.storedUntil
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
	var keep copies // copies of these very values that stay
	if !changed && hash == e.storedHash {
		// Nothing changed: a copy was lost, or the session has a new
		// place. Only the missing copies are written, with the
		// generation of the kept ones (copies of one generation are
		// identical), so a node that restarted empty costs one set per
		// session, not two. The kept copies expire when they did; the
		// next touch extends them all.
		if keep = r.held(e, ps); keep.any() {
			env.gen, until = e.storedGen, storedUntil
		}
	}
	env.sealed = r.m.seal.sealed()
	blob := appendEnvelope(make([]byte, 0, len(payload)+64), env, nil)
	header := len(blob)
	blob = r.m.seal.seal(blob, ps[0].key, blob[:header], payload) // sealed for the home key; each key has its own
	if len(blob) > r.cfg.ItemSizeLimit {
		return nil, r.tooLarge(e, ps[0].n, hash, fmt.Sprintf("%d bytes encoded, ItemSizeLimit is %d", len(blob), r.cfg.ItemSizeLimit))
	}
	blobFor := func(key string) []byte {
		if !env.sealed || key == ps[0].key {
			return blob
		}
		b := append(make([]byte, 0, len(blob)), blob[:header]...)
		return r.m.seal.seal(b, key, b[:header], payload)
	}
	op := &storeOp{e: e, until: until, hash: hash, gen: env.gen, snap: snap, keep: keep, home: ps[0].key, ps: ps}
	if !op.setMissing(blobFor, exp) {
		r.stats.backupsSkipped.Add(1) // every copy is there
		return nil, nil
	}
	return op, nil
}

// held returns the copies of e that memcached holds at ps. e.writeMu is
// held.
func (r *memcacheReplica) held(e *entry, ps places) copies {
	var c copies
	for _, p := range ps {
		if p.n != nil && e.stored.has(p.n.ID, p.key) {
			c.add(copyAt{p.n.ID, p.key, r.cfg.Route})
		}
	}
	return c
}

// setMissing fills op.sets with a set of blobFor(its key), expiring at
// exp, for each of op's places without a kept copy, and reports whether
// there is any.
func (op *storeOp) setMissing(blobFor func(key string) []byte, exp int32) bool {
	op.sets = op.buf[:0]
	for _, p := range op.ps {
		if p.n != nil && !op.keep.has(p.n.ID, p.key) {
			op.sets = append(op.sets, copySet{Set: mcwire.Set{Key: p.key, Value: blobFor(p.key), Exp: exp}, n: p.n})
		}
	}
	return len(op.sets) > 0
}
