package mcwire

import "sync"

// Group commit. A set sent on its own would cost a write and a read of its
// own: tens of microseconds of CPU on each side on a virtual machine. Sets
// to one node that overlap share a batch instead: a set that finds nothing
// in flight goes at once; sets that arrive while a batch is on the wire
// queue, and the first of them sends them all when that batch has its
// replies. Nobody waits for a timer, and a queued set waits for at most one
// batch before its own.

// joiner is one node's group commit state.
type joiner struct {
	mu      sync.Mutex
	busy    bool   // a batch is being sent
	waiting []*Set // queued for the next batch; waiting[0] sends it
}

// SetJoined sends set in one batch with the sets other goroutines send to
// n meanwhile, and returns when set has its outcome (set.Err). sent
// reports that this call put the batch on the wire: each batch sent has
// one sender.
func (n *Node) SetJoined(set *Set) (sent bool) {
	j := &n.joiner
	j.mu.Lock()
	if !j.busy {
		j.busy = true
		j.mu.Unlock()
		return n.lead([]*Set{set})
	}
	set.turn = make(chan []*Set, 1)
	j.waiting = append(j.waiting, set)
	j.mu.Unlock()
	if batch := <-set.turn; batch != nil {
		return n.lead(batch)
	}
	return false
}

// lead sends batch, whose first set is the caller's, and reports whether
// it did. Then it hands the sets queued meanwhile to the first of them, to
// send as the next batch, and wakes the other goroutines of batch: their
// sets have their outcomes.
func (n *Node) lead(batch []*Set) (sent bool) {
	sent = n.alive()
	if sent {
		n.SetMany(batch)
	} else {
		// The batch before this one found the node dead (or paused past
		// the timeout): fail at once, so the callers can move on without
		// waiting for a timeout of their own.
		fail(batch, ErrNotSent)
	}
	j := &n.joiner
	j.mu.Lock()
	next := j.waiting
	j.waiting = nil
	j.busy = len(next) > 0
	j.mu.Unlock()
	if len(next) > 0 {
		next[0].turn <- next
	}
	for _, set := range batch[1:] {
		set.turn <- nil
	}
	return sent
}

// Batching reports whether a batch of SetJoined's is on the wire to n and
// how many sets queue for the next one: for tests and diagnostics.
func (n *Node) Batching() (inFlight bool, queued int) {
	n.joiner.mu.Lock()
	defer n.joiner.mu.Unlock()
	return n.joiner.busy, len(n.joiner.waiting)
}
