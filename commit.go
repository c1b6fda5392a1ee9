package mcsession

import (
	"errors"
	"sync"
)

// Group commit. A session stored on its own (every SyncBackup store, and
// the asynchronous stores that could not join a worker's batch) would cost
// a write and a read of its own: tens of microseconds of CPU on each side
// on a virtual machine. Stores to one node that overlap share a batch
// instead: a set that finds nothing in flight goes at once; sets that
// arrive while a batch is on the wire queue, and the first of them sends
// them all when that batch has its replies. Nobody waits for a timer, and
// a queued set waits for at most one batch before its own.

// errNotSent is the error of a set that waited for a batch to a node that
// was marked down meanwhile.
var errNotSent = errors.New("node marked down while the set waited for its batch; not sent")

// joiner is one node's group commit state.
type joiner struct {
	mu      sync.Mutex
	busy    bool     // a batch is being sent
	waiting []*setOp // queued for the next batch; waiting[0] sends it
}

// sendJoined sends op to its node, in one batch with the sets other
// goroutines send to that node meanwhile, and returns when op has its
// reply (op.err, as send sets it).
func (b *backup) sendJoined(op *setOp) {
	j := &op.n.joiner
	j.mu.Lock()
	if !j.busy {
		j.busy = true
		j.mu.Unlock()
		b.lead(j, []*setOp{op})
		return
	}
	op.turn = make(chan []*setOp, 1)
	j.waiting = append(j.waiting, op)
	j.mu.Unlock()
	if batch := <-op.turn; batch != nil {
		b.lead(j, batch)
	}
}

// lead sends batch, whose first set is the caller's. Then it hands the
// sets queued meanwhile to the first of them, to send as the next batch,
// and wakes the other goroutines of batch: their sets have their replies.
func (b *backup) lead(j *joiner, batch []*setOp) {
	if n := batch[0].n; n.up.Load() {
		b.sendAll(batch)
	} else {
		// The batch before this one found the node dead (or paused past
		// OperationTimeout): fail at once, so the stores move to another
		// node without waiting for a timeout of their own.
		for _, op := range batch {
			op.err = &NodeError{Node: n.ID, Addr: n.Addr, Op: "set", Err: errNotSent}
		}
	}
	j.mu.Lock()
	next := j.waiting
	j.waiting = nil
	j.busy = len(next) > 0
	j.mu.Unlock()
	if len(next) > 0 {
		next[0].turn <- next
	}
	for _, op := range batch[1:] {
		op.turn <- nil
	}
}
