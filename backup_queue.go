package mcsession

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// queue holds the sessions waiting for an asynchronous store: a bounded
// channel served by the workers, and the pending set of sessions whose
// store failed or found the channel full, for the retry loop.
//
// The backlog invariant: backlog counts every session claimed for a store
// and not yet settled (in the channel, being stored, or taken from the
// pending set by a retry pass that has not queued it yet). A session
// leaves the backlog (done) only after it is stored or back in the pending
// set. So "backlog is zero and nothing is pending" means every change has
// reached memcached, which is what flush waits for.
type queue struct {
	ch        chan *entry
	collectMu sync.Mutex    // held by the worker collecting a batch from ch
	backlog   atomic.Int64  // see the invariant above
	drained   chan struct{} // signalled (cap 1) when backlog drops to 0
	kick      chan struct{} // wakes the retry loop (cap 1)

	// pendingMu guards pending.
	pendingMu sync.Mutex
	pending   map[*entry]struct{} // sessions whose store failed or was dropped

	stats  *counters
	logger *rateLogger
}

func newQueue(size int, stats *counters, logger *rateLogger) *queue {
	return &queue{
		ch:      make(chan *entry, size),
		drained: make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		pending: make(map[*entry]struct{}),
		stats:   stats,
		logger:  logger,
	}
}

// schedule queues e for an asynchronous store. A session already queued is
// not queued twice: the worker stores whatever state it has when it gets to
// it. If the channel is full the session is counted in BackupsDropped and
// left for the retry loop; nothing is lost.
func (q *queue) schedule(e *entry) {
	if !q.claim(e) {
		return
	}
	select {
	case q.ch <- e:
		return
	default:
	}
	q.giveBack(e)
	q.stats.backupsDropped.Add(1)
	q.logger.warn("queue-full", "mcsession: backup queue full; sessions are retried (raise BackupQueueSize or BackupWorkers)",
		"size", cap(q.ch))
}

// enqueueWait queues e, waiting for room in the channel rather than
// dropping it, until ctx is done.
func (q *queue) enqueueWait(ctx context.Context, e *entry) {
	if !q.claim(e) {
		return
	}
	select {
	case q.ch <- e:
	case <-ctx.Done():
		q.giveBack(e)
	}
}

// claim marks e queued, or reports false if it already is. A claimed
// session counts in the backlog until it is settled.
func (q *queue) claim(e *entry) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.queued {
		return false
	}
	e.queued = true
	q.backlog.Add(1)
	return true
}

// giveBack moves a claimed session that could not be queued to the pending
// set. Pending before done: a flush that sees the backlog reach zero must
// find e in the pending set.
func (q *queue) giveBack(e *entry) {
	e.mu.Lock()
	e.queued = false
	e.mu.Unlock()
	q.addPending(e)
	q.done()
}

// unclaim clears the queued mark of sessions a worker took from the
// channel: changes from now on queue them again.
func (q *queue) unclaim(batch []*entry) {
	for _, e := range batch {
		e.mu.Lock()
		e.queued = false
		e.mu.Unlock()
	}
}

// settle ends one claimed store: a failure worth retrying goes to the
// pending set.
func (q *queue) settle(e *entry, err error) {
	if retryable(err) {
		q.addPending(e)
	}
	q.done()
}

// done records that one claimed store has finished.
func (q *queue) done() {
	if q.backlog.Add(-1) == 0 {
		select {
		case q.drained <- struct{}{}:
		default:
		}
	}
}

func (q *queue) addPending(e *entry) {
	q.pendingMu.Lock()
	q.pending[e] = struct{}{}
	q.pendingMu.Unlock()
}

func (q *queue) pendingLen() int {
	q.pendingMu.Lock()
	defer q.pendingMu.Unlock()
	return len(q.pending)
}

// takePending takes at most limit sessions (all, if limit < 0) from the
// pending set and returns them.
func (q *queue) takePending(limit int) []*entry {
	q.pendingMu.Lock()
	defer q.pendingMu.Unlock()
	if limit < 0 || limit > len(q.pending) {
		limit = len(q.pending)
	}
	list := make([]*entry, 0, limit)
	for e := range q.pending {
		if len(list) == limit {
			break
		}
		list = append(list, e)
		delete(q.pending, e)
	}
	return list
}

// retryPending queues sessions of the pending set again, as many as
// background work may queue (scheduleBackground): a pass costs what it
// queues, however many sessions wait, and the next pass takes the next
// ones. The sessions taken are in neither the set nor the channel until
// scheduled: the pass counts in the backlog, so a flush cannot see
// "nothing queued, nothing pending" meanwhile. before runs inside the
// pass; hook, if not nil, is called with each session about to be queued
// (tests).
func (q *queue) retryPending(hook func(*entry), before func()) {
	q.backlog.Add(1)
	before()
	for _, e := range q.takePending(max(q.backgroundRoom()-len(q.ch), 1)) {
		if hook != nil {
			hook(e)
		}
		q.scheduleBackground(e)
	}
	q.done()
}

// backgroundRoom is how much of the channel background work may fill.
func (q *queue) backgroundRoom() int { return max(cap(q.ch)/2, 1) }

// scheduleBackground queues e for a store the Manager started itself (a
// retry, a repair, a rescue), leaving half of the channel to the stores
// that requests start: past half, e waits in the pending set for the next
// retry pass, and does not count as dropped. This paces background work:
// the sessions of a node that restarted empty are stored again at the
// workers' pace, half a queue at a time (a worker that empties the queue
// asks for the next pass, see work), while requests' changes still find
// room and are never delayed behind a repair.
func (q *queue) scheduleBackground(e *entry) {
	if !q.claim(e) {
		return
	}
	if len(q.ch) < q.backgroundRoom() {
		select {
		case q.ch <- e:
			return
		default:
		}
	}
	q.giveBack(e)
}

// wake wakes the retry loop without blocking.
func (q *queue) wake() {
	select {
	case q.kick <- struct{}{}:
	default:
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

// collect appends to batch the next queued session and those queued within
// batchWindow after it, up to maxBatch. It returns nil once stop is closed.
// While it waits out the window the sessions queued meanwhile stay in the
// channel: a send to a buffered channel that nobody waits on wakes nobody,
// where a collector receiving each one would be woken (a system call on a
// virtual machine) once per session. When the channel already holds a full
// batch there is nothing to wait for.
func (q *queue) collect(batch []*entry, t *time.Timer, stop <-chan struct{}) []*entry {
	q.collectMu.Lock()
	defer q.collectMu.Unlock()
	select {
	case <-stop:
		return nil
	case e := <-q.ch:
		batch = append(batch, e)
	}
	if batch = q.drain(batch); len(batch) == maxBatch {
		return batch
	}
	t.Reset(batchWindow)
	defer t.Stop()
	select {
	case <-stop:
		return nil
	case <-t.C:
	}
	return q.drain(batch)
}

// drain appends the sessions queued now to batch, up to maxBatch.
func (q *queue) drain(batch []*entry) []*entry {
	for len(batch) < maxBatch {
		select {
		case e := <-q.ch:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// flush waits until every queued and pending session is stored, for
// Shutdown. It makes passes until nothing is pending, a pass makes no
// progress, or ctx is done.
func (q *queue) flush(ctx context.Context) error {
	prev := math.MaxInt
	for {
		for _, e := range q.takePending(-1) {
			q.enqueueWait(ctx, e)
		}
		for q.backlog.Load() > 0 {
			select {
			case <-q.drained:
			case <-ctx.Done():
				return fmt.Errorf("%w: %d sessions queued or pending: %w", ErrNotFlushed, int(q.backlog.Load())+q.pendingLen(), ctx.Err())
			}
		}
		n := q.pendingLen()
		if n == 0 {
			return nil
		}
		if n >= prev {
			return fmt.Errorf("%w: %d sessions could not be written (see the log for the node errors)", ErrNotFlushed, n)
		}
		prev = n
	}
}
