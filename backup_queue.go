package mcsession

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// schedule queues e for an asynchronous backup. A session already queued is
// not queued twice: the worker stores whatever state it has when it gets to
// it. If the queue is full the session is counted in BackupsDropped and
// left for the retry loop; nothing is lost.
func (b *backup) schedule(e *entry) {
	if b.closedFor(e) {
		return
	}
	if !b.claim(e) {
		return
	}
	select {
	case b.queue <- e:
		return
	default:
	}
	b.giveBack(e)
	b.m.stats.backupsDropped.Add(1)
	b.m.logger.warn("queue-full", "mcsession: backup queue full; sessions are retried (raise BackupQueueSize or BackupWorkers)",
		"size", cap(b.queue))
}

// closedFor reports whether the Manager is closed, counting and logging
// the change to e that it will therefore never write: after Shutdown or
// Close sessions live on in memory only.
func (b *backup) closedFor(e *entry) bool {
	if !b.m.closed.Load() {
		return false
	}
	e.mu.Lock()
	changed := e.dirty || e.readMutable
	e.dirty, e.readMutable = false, false // never to be written: count it once
	e.mu.Unlock()
	if !changed {
		return true
	}
	b.m.stats.changesAfterClose.Add(1)
	b.m.logger.warn("after-close", "mcsession: session changed after Shutdown or Close; kept in memory only, not written to memcached (shut the http.Server down before the Manager)")
	return true
}

// claim marks e queued, or reports false if it already is. A claimed
// session counts in the backlog until it is stored or given back.
func (b *backup) claim(e *entry) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.queued {
		return false
	}
	e.queued = true
	b.backlog.Add(1)
	return true
}

// giveBack moves a claimed session that could not be queued to the pending
// set, for the retry loop. Pending before done: a flush that sees the
// backlog reach zero must find e in the pending set.
func (b *backup) giveBack(e *entry) {
	e.mu.Lock()
	e.queued = false
	e.mu.Unlock()
	b.addPending(e)
	b.done()
}

// done records that one scheduled backup has finished.
func (b *backup) done() {
	if b.backlog.Add(-1) == 0 {
		select {
		case b.drained <- struct{}{}:
		default:
		}
	}
}

// Batching. A worker takes the sessions queued within batchWindow of the
// first one, up to maxBatch, and sends their sets to each node in one
// write. A set sent alone costs tens of microseconds of CPU on each side
// on a virtual machine, nearly all of it system calls; in a batch of ten
// each costs a tenth of that. One worker collects at a time (collectMu),
// so batches are not split between idle workers; the others store the
// batches already collected meanwhile.
const (
	batchWindow   = 2 * time.Millisecond
	maxBatch      = 64
	maxBatchBytes = 1 << 20
)

// work stores queued sessions until Close.
func (b *backup) work() {
	t := time.NewTimer(time.Hour)
	t.Stop()
	var batch []*entry
	for {
		batch = b.collect(batch[:0], t)
		if batch == nil {
			return
		}
		b.storeBatch(batch)
	}
}

// collect appends to batch the next queued session and those queued within
// batchWindow after it, up to maxBatch. It returns nil on Close. While it
// waits out the window the sessions queued meanwhile stay in the channel:
// a send to a buffered channel that nobody waits on wakes nobody, where a
// collector receiving each one would be woken (a system call on a
// virtual machine) once per session. When the queue already holds a full
// batch there is nothing to wait for.
func (b *backup) collect(batch []*entry, t *time.Timer) []*entry {
	b.collectMu.Lock()
	defer b.collectMu.Unlock()
	select {
	case <-b.m.stop:
		return nil
	case e := <-b.queue:
		batch = append(batch, e)
	}
	if batch = b.drain(batch); len(batch) == maxBatch {
		return batch
	}
	t.Reset(batchWindow)
	defer t.Stop()
	select {
	case <-b.m.stop:
		return nil
	case <-t.C:
	}
	return b.drain(batch)
}

// drain appends the sessions queued now to batch, up to maxBatch.
func (b *backup) drain(batch []*entry) []*entry {
	for len(batch) < maxBatch {
		select {
		case e := <-b.queue:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// storeBatch stores the sessions of batch, each once, with one batch of
// sets per node. A session being stored by another goroutine meanwhile
// (writeMu taken) is stored after the batch, on its own.
func (b *backup) storeBatch(batch []*entry) {
	for _, e := range batch {
		e.mu.Lock()
		e.queued = false // changes from now on queue it again
		e.mu.Unlock()
	}
	deadline := time.Now().Add(b.m.cfg.BackupTimeout)
	var ops []*setOp
	var later []*entry
	for _, e := range batch {
		if !e.writeMu.TryLock() {
			later = append(later, e)
			continue
		}
		op, err := b.prepareStore(e, false)
		if op == nil {
			if b.worthRetrying(err, deadline) {
				err = b.storeLocked(e, deadline, false)
			}
			e.writeMu.Unlock()
			b.settle(e, err)
			continue
		}
		ops = append(ops, op)
	}
	b.sendAll(ops)
	for _, op := range ops {
		e := op.e
		err := b.finishSet(op)
		if b.worthRetrying(err, deadline) {
			err = b.storeLocked(e, deadline, false)
		}
		e.writeMu.Unlock()
		b.settle(e, err)
	}
	for _, e := range later {
		b.settle(e, b.store(e, deadline, false))
	}
}

// sendAll sends ops in batches, one node at a time, each batch at most
// maxBatch sets and about maxBatchBytes.
func (b *backup) sendAll(ops []*setOp) {
	slices.SortStableFunc(ops, func(x, y *setOp) int { return strings.Compare(x.n.ID, y.n.ID) })
	for len(ops) > 0 {
		n, size := 0, 0
		for n < len(ops) && n < maxBatch && ops[n].n == ops[0].n && (n == 0 || size+len(ops[n].blob) <= maxBatchBytes) {
			size += len(ops[n].blob)
			n++
		}
		b.send(ops[0].n, ops[:n])
		ops = ops[n:]
	}
}

// settle ends one scheduled backup: a failure worth retrying goes to the
// pending set.
func (b *backup) settle(e *entry, err error) {
	if retryable(err) {
		b.addPending(e)
	}
	b.done()
}

// storeNow stores e on the caller's goroutine, within BackupTimeout; a
// failure leaves it for the retry loop. It is the SyncBackup path.
func (b *backup) storeNow(e *entry) {
	if b.closedFor(e) {
		return
	}
	if err := b.store(e, time.Now().Add(b.m.cfg.BackupTimeout), true); retryable(err) {
		b.addPending(e)
	}
}

func (b *backup) addPending(e *entry) {
	b.pendingMu.Lock()
	b.pending[e] = struct{}{}
	b.pendingMu.Unlock()
}

func (b *backup) pendingLen() int {
	b.pendingMu.Lock()
	defer b.pendingMu.Unlock()
	return len(b.pending)
}

// takePending empties the pending set and returns what it held.
func (b *backup) takePending() []*entry {
	b.pendingMu.Lock()
	defer b.pendingMu.Unlock()
	list := make([]*entry, 0, len(b.pending))
	for e := range b.pending {
		list = append(list, e)
	}
	clear(b.pending)
	return list
}

// retryLoop queues failed and dropped backups again every RetryInterval,
// and at once when a node comes up. When a node goes down it queues every
// local session on it, so they move to another node before anyone asks.
func (b *backup) retryLoop() {
	t := time.NewTicker(b.m.cfg.RetryInterval)
	defer t.Stop()
	for {
		select {
		case <-b.m.stop:
			return
		case <-b.kick:
		case <-t.C:
		}
		// The sessions taken from the pending set are in neither it nor the
		// queue until scheduled: count the pass in the backlog, so a flush
		// cannot see "nothing queued, nothing pending" meanwhile.
		b.backlog.Add(1)
		if b.rescue.Swap(false) {
			b.rescueSessions()
		}
		for _, e := range b.takePending() {
			b.schedule(e)
		}
		b.done()
		b.runDeferredDeletes()
	}
}

// rescueSessions queues every local session whose node is down or gone.
// Each is marked dirty: a node that went down may come back empty (a
// restart), and when every node is down the session cannot move, so
// without the mark it would be taken for stored once its node is back.
func (b *backup) rescueSessions() {
	ns := b.nodes.Load()
	b.rewriteWhere(func(e *entry) bool {
		n := ns.byID[e.node]
		return n == nil || !n.up.Load()
	})
}

// rewriteWhere marks dirty and queues every local session for which match,
// called with e.mu held, reports true.
func (b *backup) rewriteWhere(match func(e *entry) bool) {
	var rewrite []*entry
	b.m.sessions.Range(func(_ string, e *entry) bool {
		e.mu.Lock()
		if !e.removed && match(e) {
			e.dirty = true
			rewrite = append(rewrite, e)
		}
		e.mu.Unlock()
		return true
	})
	for _, e := range rewrite {
		b.schedule(e)
	}
}

// flush stores every queued and pending session, for Shutdown. It makes
// passes until nothing is pending, a pass makes no progress, or ctx is done.
func (b *backup) flush(ctx context.Context) error {
	prev := math.MaxInt
	for {
		for _, e := range b.takePending() {
			b.enqueueWait(ctx, e)
		}
		for b.backlog.Load() > 0 {
			select {
			case <-b.drained:
			case <-ctx.Done():
				return fmt.Errorf("%w: %d sessions queued or pending: %w", ErrNotFlushed, int(b.backlog.Load())+b.pendingLen(), ctx.Err())
			}
		}
		n := b.pendingLen()
		if n == 0 {
			return nil
		}
		if n >= prev {
			return fmt.Errorf("%w: %d sessions could not be written (see the log for the node errors)", ErrNotFlushed, n)
		}
		prev = n
	}
}

// enqueueWait queues e, waiting for room in the queue rather than dropping.
func (b *backup) enqueueWait(ctx context.Context, e *entry) {
	if !b.claim(e) {
		return
	}
	select {
	case b.queue <- e:
	case <-ctx.Done():
		b.giveBack(e)
	}
}

// errPermanent marks a backup error that retrying cannot fix until the
// session changes again: an encoding error or a session that is too large.
type errPermanent struct{ error }

func (e errPermanent) Unwrap() error { return e.error }

// retryable reports whether a failed backup should be retried later.
func retryable(err error) bool {
	if err == nil {
		return false // before the target below, which escapes: no allocation for a success
	}
	var p errPermanent
	return !errors.As(err, &p)
}

// encode runs the Transcoder, turning a panic (a value's MarshalJSON or
// GobEncode on a nil receiver, say) into an error: it runs with the
// session locked, on a request's goroutine or a worker's, and must return.
func (m *Manager) encode(values values) (b []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, err = nil, fmt.Errorf("transcoder panicked: %v", r)
		}
	}()
	switch m.cfg.Transcoder.(type) {
	case GobTranscoder, *GobTranscoder:
		return encodeGob(values) // the same bytes, without a map
	}
	return m.cfg.Transcoder.Encode(values.asMap())
}

// keyLocked returns the memcached key of e's current ID, derived once per
// ID: a SHA-256 is not free, and a session is stored many times.
func (b *backup) keyLocked(e *entry) string {
	if e.key == "" {
		e.key = memcacheKey(b.m.cfg.KeyPrefix, e.id)
	}
	return e.key
}

// valuesHash identifies the state of a session's values: their fingerprint
// when they are plain values, else a hash of their encoding.
func (m *Manager) valuesHash(values values) (uint64, error) {
	if h, ok := fingerprint(m.seed, values); ok {
		return h, nil
	}
	payload, err := m.encode(values)
	if err != nil {
		return 0, err
	}
	return maphash.Bytes(m.seed, payload), nil
}

// errBusy defers an asynchronous write of a session that a request is
// using: the request may be changing one of its values in place, and
// encoding the value meanwhile would race with it. The request queues the
// session again when it finishes.
var errBusy = errors.New("mcsession: session in use by a request; backup deferred")

// store brings memcached up to date with e: it writes e (set) if it changed
// or a mutable value read from it now encodes differently, extends the
// backup's TTL (touch) if memcached would drop it before the local copy
// expires, or deletes it if e has ended. A node that fails is marked down
// and the session moves to another node and is tried there, while deadline
// allows. inRequest says the caller is the one request allowed to be using
// e (SyncBackup); otherwise a write waits until no request uses e (errBusy).
func (b *backup) store(e *entry, deadline time.Time, inRequest bool) error {
	e.writeMu.Lock()
	defer e.writeMu.Unlock()
	return b.storeLocked(e, deadline, inRequest)
}

// storeLocked is store with e.writeMu held.
func (b *backup) storeLocked(e *entry, deadline time.Time, inRequest bool) error {
	for {
		err := b.storeOnce(e, inRequest)
		if !b.worthRetrying(err, deadline) {
			return err
		}
		// The node is marked down now; the next pass relocates the session.
	}
}

// worthRetrying reports whether err is a node found unreachable and
// deadline leaves time for another node.
func (b *backup) worthRetrying(err error, deadline time.Time) bool {
	if err == nil {
		return false // as in retryable: no allocation for a success
	}
	var ne *NodeError
	return errors.As(err, &ne) && classify(ne.Err) == classUnreachable &&
		time.Until(deadline) >= b.m.cfg.OperationTimeout
}

// storeOnce is one pass of store, on e's current node. e.writeMu is held.
func (b *backup) storeOnce(e *entry, inRequest bool) error {
	op, err := b.prepareStore(e, inRequest)
	if op == nil {
		return err
	}
	b.sendJoined(op)
	return b.finishSet(op)
}

// setOp is a set decided by prepareStore: what to send, and what to record
// once memcached answers.
type setOp struct {
	e     *entry
	n     *node
	key   string
	blob  []byte
	exp   int32
	until time.Time     // what exp stands for
	hash  uint64        // of the values written
	snap  values        // snapshot of the values written, or nil
	err   error         // memcached's answer, set by send
	turn  chan []*setOp // a queued sendJoined's wake-up: nil when sent, else the batch to send
}

// prepareStore does the part of a pass that needs no set: it deletes the
// backup of an ended session, touches one that only needs a longer TTL,
// skips one whose encoding has not changed, and otherwise encodes e and
// returns the set to send (with a nil error). A nil op means the pass is
// over, with the error it returns. e.writeMu is held.
func (b *backup) prepareStore(e *entry, inRequest bool) (*setOp, error) {
	now := time.Now()
	e.mu.Lock()
	if e.removed {
		random := e.random
		e.mu.Unlock()
		if err := b.deleteStored(e); err != nil {
			return nil, err
		}
		b.m.sessions.DeleteIf(random, func(x *entry) bool { return x == e }) // the tombstone
		return nil, nil
	}
	b.placeLocked(e)
	n := b.nodes.Load().byID[e.node]
	if n == nil || !n.up.Load() {
		e.mu.Unlock()
		b.m.stats.backupsFailed.Add(1)
		return nil, ErrNoNodeUp
	}
	key := b.keyLocked(e)
	moved := key != e.storedKey && !e.unstorable
	write := e.dirty || e.readMutable || moved
	mustWrite := e.dirty || moved
	touch := !write && !e.unstorable && e.storedUntil.Before(b.m.expiryLocked(e))
	exp, until := b.ttlLocked(e, now)
	if touch {
		e.mu.Unlock()
		start := time.Now()
		err := b.do(n, "touch", func(c *memcache.Client) error { return c.Touch(key, exp) })
		b.m.stats.backupLatency.observe(time.Since(start))
		if err == nil {
			b.m.stats.touches.Add(1)
			b.setStoredUntil(e, until)
			return nil, nil
		}
		if !errors.Is(err, memcache.ErrCacheMiss) {
			b.m.stats.backupsFailed.Add(1)
			return nil, err
		}
		// memcached lost the copy (restart, eviction): write it again.
		e.mu.Lock()
		write, mustWrite = true, true
	}
	if !write {
		e.mu.Unlock()
		return nil, nil
	}
	if e.active > 0 && !inRequest {
		e.mu.Unlock()
		return nil, errBusy
	}
	if !mustWrite && e.verifiedLocked() {
		// A read of a mutable value changed nothing (SyncBackup stores
		// before the response, so every such read comes here).
		b.readUnchangedLocked(e)
		e.mu.Unlock()
		return nil, nil
	}
	// Encode under e.mu: no request can reach the values meanwhile, and
	// none holds one (e.active), so values changed in place are read whole.
	hash, plain := fingerprint(b.m.seed, e.values)
	if plain && !mustWrite && (hash == e.storedHash || hash == e.rejected) {
		if hash == e.storedHash && e.verified != nil {
			e.verified = snapshot(e.values) // equal, but not identical: renew
		}
		b.readUnchangedLocked(e)
		e.mu.Unlock()
		return nil, nil
	}
	var snap values // what the payload will stand for, for checkInPlaceLocked
	if e.verified != nil {
		snap = snapshot(e.values)
	}
	payload, err := b.m.encode(e.values)
	e.dirty, e.readMutable = false, false
	env := envelope{created: e.created, idleTimeout: b.m.cfg.IdleTimeout, lifetime: b.m.cfg.Lifetime}
	e.mu.Unlock()
	if err != nil {
		b.m.stats.backupsFailed.Add(1)
		b.m.logger.error("encode", "mcsession: cannot encode session; it is kept locally only until it changes again",
			"err", err)
		return nil, b.giveUp(e, 0, fmt.Errorf("mcsession: encode session: %w", err))
	}
	if !plain {
		hash = maphash.Bytes(b.m.seed, payload)
	}
	if !mustWrite && (hash == e.storedHash || hash == e.rejected) {
		b.m.stats.backupsSkipped.Add(1)
		return nil, nil
	}
	blob := appendEnvelope(make([]byte, 0, len(payload)+32), env, payload)
	if len(blob) > b.m.cfg.ItemSizeLimit {
		b.m.stats.backupsTooLarge.Add(1)
		err := fmt.Errorf("%w: %d bytes encoded, ItemSizeLimit is %d; it is kept locally only", ErrTooLarge, len(blob), b.m.cfg.ItemSizeLimit)
		b.m.logger.error("too-large", err.Error(), "node", n.ID)
		return nil, b.giveUp(e, hash, err)
	}
	return &setOp{e: e, n: n, key: key, blob: blob, exp: exp, until: until, hash: hash, snap: snap}, nil
}

// send sends ops, all for node n, as one batch, and sets each op's err
// the way do reports errors: an unreachable node is marked down, and every
// error is a *NodeError.
func (b *backup) send(n *node, ops []*setOp) {
	start := time.Now()
	n.setter.setMany(ops)
	elapsed := time.Since(start)
	for _, op := range ops {
		b.m.stats.backupLatency.observe(elapsed)
		switch classify(op.err) {
		case classOK:
			continue
		case classUnreachable:
			b.markDown(n, op.err)
		}
		op.err = &NodeError{Node: n.ID, Addr: n.Addr, Op: "set", Err: op.err}
	}
	b.m.stats.backupBatches.Add(1)
}

// finishSet records the outcome of op: the new backup, or the failure.
// op.e.writeMu is held.
func (b *backup) finishSet(op *setOp) error {
	e, n, err := op.e, op.n, op.err
	if err != nil && refusedTooLarge(err) {
		// memcached's -I is below ItemSizeLimit: as above, not a node failure.
		b.m.stats.backupsTooLarge.Add(1)
		err := fmt.Errorf("%w: %d bytes encoded, refused by memcached node %s (its -I item size limit is below ItemSizeLimit %d); it is kept locally only",
			ErrTooLarge, len(op.blob), n.ID, b.m.cfg.ItemSizeLimit)
		b.m.logger.error("too-large", err.Error(), "node", n.ID)
		return b.giveUp(e, op.hash, err)
	}
	if err != nil {
		b.m.stats.backupsFailed.Add(1)
		e.mu.Lock()
		e.dirty = true // write it again next time
		e.mu.Unlock()
		return err
	}
	b.m.stats.backupsWritten.Add(1)
	oldNode, oldKey := e.storedNode, e.storedKey
	e.storedHash, e.storedNode, e.storedKey, e.rejected = op.hash, n.ID, op.key, 0
	e.verified = op.snap
	b.setUnstorable(e, false)
	b.setStoredUntil(e, op.until)
	if oldKey != "" && oldKey != op.key {
		b.deleteKey(oldNode, oldKey, e)
	}
	// Stored under the current ID: the tombstones of IDs it had before
	// RenewID can go (their backups are deleted, or were never written).
	e.mu.Lock()
	renamed := e.renamed
	e.renamed = nil
	e.mu.Unlock()
	for _, r := range renamed {
		b.m.sessions.DeleteIf(r, func(x *entry) bool { return x.removed && x != e })
	}
	return nil
}

// deleteStored deletes the backup of an ended session. e.writeMu is held.
// If the node is down the delete is retried when it is back: a logged-out
// session must not come back through a takeover.
func (b *backup) deleteStored(e *entry) error {
	if e.storedKey == "" {
		return nil
	}
	if n := b.nodes.Load().byID[e.storedNode]; n != nil && !n.up.Load() {
		return ErrNoNodeUp
	}
	if err := b.deleteKey(e.storedNode, e.storedKey, e); err != nil {
		return err
	}
	e.storedKey, e.storedNode = "", ""
	return nil
}

// deleteKey deletes key from the node with id nodeID. A missing key or node
// is not an error. For a node that is down the delete is deferred until it
// is back (see deferDelete); e, if not nil, is the session the key was a
// copy of.
func (b *backup) deleteKey(nodeID, key string, e *entry) error {
	n := b.nodes.Load().byID[nodeID]
	if n == nil {
		return nil
	}
	if !n.up.Load() {
		b.deferDelete(nodeID, key, e)
		return nil
	}
	start := time.Now()
	err := b.do(n, "delete", func(c *memcache.Client) error { return c.Delete(key) })
	b.m.stats.backupLatency.observe(time.Since(start))
	b.m.stats.deletes.Add(1)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	return err
}

// giveUp records that e cannot be stored until it changes (its encoding,
// with hash, was refused, or could not be made) and deletes the backup it
// had: memcached must not hand a takeover a state the session has left.
// e.writeMu is held. It returns err as a permanent error.
func (b *backup) giveUp(e *entry, hash uint64, err error) error {
	e.rejected, e.verified = hash, nil
	b.setUnstorable(e, true)
	if e.storedKey != "" {
		b.deleteKey(e.storedNode, e.storedKey, e)
		e.storedKey, e.storedNode, e.storedHash = "", "", 0
	}
	return errPermanent{err}
}

func (b *backup) setUnstorable(e *entry, v bool) {
	e.mu.Lock()
	e.unstorable = v
	e.mu.Unlock()
}

func (b *backup) setStoredUntil(e *entry, t time.Time) {
	e.mu.Lock()
	e.storedUntil = t
	e.mu.Unlock()
}

// maxRelativeTTL is the longest expiration memcached takes as relative
// seconds; longer ones are read as an absolute Unix time.
const maxRelativeTTL = 30 * 24 * 60 * 60

// ttlLocked returns the memcached expiration for e's backup, and the time it
// stands for: e's remaining life plus a grace, so a copy refreshed by touch
// outlives the local session. It is never 0 (no expiry) or negative, and
// is sent as an absolute Unix time when longer than 30 days.
func (b *backup) ttlLocked(e *entry, now time.Time) (int32, time.Time) {
	grace := touchGrace(b.m.cfg.IdleTimeout)
	// Saturate: an IdleTimeout near the largest Duration must not wrap
	// around to a negative remaining time, and so to a TTL of 1s.
	remaining := min(b.m.expiryLocked(e).Sub(now), math.MaxInt64-grace) + grace
	secs := int64(math.Ceil(remaining.Seconds()))
	secs = max(secs, 1)
	if secs > maxRelativeTTL {
		return int32(min(now.Unix()+secs, math.MaxInt32)), now.Add(remaining)
	}
	return int32(secs), now.Add(time.Duration(secs) * time.Second)
}

// touchGrace is how much longer than the local session a backup is kept. A
// session read without change is touched at most once per grace period.
func touchGrace(idle time.Duration) time.Duration {
	return min(max(idle/8, time.Second), 5*time.Minute)
}

// maxDeferredDeletes bounds the deletes kept for nodes that are down. Past
// it, old copies on a node that comes back are left to their TTL.
const maxDeferredDeletes = 100_000

// deferredDelete is a delete waiting for its node to come back.
type deferredDelete struct {
	key string
	e   *entry // the session it was a copy of, or nil
}

// deferDelete remembers a delete that could not be sent because its node is
// down (an old copy left behind when a session moved away from it), to send
// when the node is back: otherwise a client still holding the old ID could
// load that copy.
func (b *backup) deferDelete(nodeID, key string, e *entry) {
	b.deferredMu.Lock()
	defer b.deferredMu.Unlock()
	if b.deferredCount >= maxDeferredDeletes {
		return
	}
	if b.deferred == nil {
		b.deferred = make(map[string][]deferredDelete)
	}
	b.deferred[nodeID] = append(b.deferred[nodeID], deferredDelete{key, e})
	b.deferredCount++
}

// runDeferredDeletes sends the deferred deletes of nodes that are up again.
// A key its session has meanwhile been stored under again (it moved back
// to the node) is kept: the check and the delete happen under the session's
// writeMu, so no store can come between them.
func (b *backup) runDeferredDeletes() {
	ns := b.nodes.Load()
	b.deferredMu.Lock()
	ready := make(map[string][]deferredDelete)
	for id, dels := range b.deferred {
		if n := ns.byID[id]; n == nil || n.up.Load() {
			if n != nil {
				ready[id] = dels
			}
			delete(b.deferred, id)
			b.deferredCount -= len(dels)
		}
	}
	b.deferredMu.Unlock()
	for id, dels := range ready {
		for _, d := range dels {
			if d.e == nil {
				b.deleteKey(id, d.key, nil)
				continue
			}
			d.e.writeMu.Lock()
			if d.e.storedKey != d.key || d.e.storedNode != id {
				b.deleteKey(id, d.key, d.e) // a node down again defers it anew
			}
			d.e.writeMu.Unlock()
		}
	}
}
