package mcsession

import (
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/mcsession/mcsession/internal/nodespec"
)

// backup is the memcached side of a Manager: the nodes and their health,
// the asynchronous backup queue, and loads for takeovers.
type backup struct {
	m     *Manager
	nodes atomic.Pointer[nodeSet]
	setMu sync.Mutex // serialises setNodes

	queue     chan *entry   // sessions to store, served by the workers
	collectMu sync.Mutex    // held by the worker collecting a batch from queue
	backlog   atomic.Int64  // sessions queued or being stored
	drained   chan struct{} // signalled (cap 1) when backlog drops to 0
	kick      chan struct{} // wakes the retry loop (cap 1): a node came up or went down
	rescue    atomic.Bool   // a node went down: move the sessions on it

	// pendingMu guards pending.
	pendingMu sync.Mutex
	pending   map[*entry]struct{} // sessions whose backup failed or was dropped

	flights flightGroup // concurrent loads of one session share one get

	// deferredMu guards deferred and deferredCount.
	deferredMu    sync.Mutex
	deferred      map[string][]deferredDelete // by node id: deletes to send once it is up
	deferredCount int
}

// node is one memcached server and its health.
type node struct {
	nodespec.Node
	client *memcache.Client
	setter *setter // sets, batched; client does everything else
	joiner joiner  // single stores that overlap share a batch (commit.go)
	up     atomic.Bool

	// mu guards the probe schedule.
	mu        sync.Mutex
	nextProbe time.Time
	backoff   time.Duration
}

// nodeSet is an immutable list of nodes; SetNodes swaps in a new one.
type nodeSet struct {
	list []*node
	byID map[string]*node
}

func newBackup(m *Manager, specs []nodespec.Node) *backup {
	b := &backup{
		m:       m,
		queue:   make(chan *entry, m.cfg.BackupQueueSize),
		drained: make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
		pending: make(map[*entry]struct{}),
	}
	b.setNodes(specs)
	return b
}

// start runs the workers, the retry loop and the prober.
func (b *backup) start() {
	for range b.m.cfg.BackupWorkers {
		b.m.goRun(b.work)
	}
	b.m.goRun(b.retryLoop)
	b.m.goRun(b.probeLoop)
}

// close drops idle connections. The goroutines have already stopped.
func (b *backup) close() {
	for _, n := range b.nodes.Load().list {
		n.client.Close()
		n.setter.close()
	}
}

// setNodes installs a new node list. A node whose id, address and role are
// unchanged is kept as it is, with its connections and health. Sessions on a
// removed node, or on a node whose address changed, are rewritten: the new
// server does not hold their backups.
func (b *backup) setNodes(specs []nodespec.Node) {
	b.setMu.Lock()
	defer b.setMu.Unlock()
	old := b.nodes.Load()
	ns := &nodeSet{byID: make(map[string]*node, len(specs))}
	moved := make(map[string]bool) // node ids whose address changed
	for _, spec := range specs {
		var n *node
		if o := old.lookup(spec.ID); o != nil && o.Addr == spec.Addr {
			n = o
			if o.Failover != spec.Failover {
				n = &node{Node: spec, client: o.client, setter: o.setter}
				n.up.Store(o.up.Load())
				o.mu.Lock()
				n.nextProbe, n.backoff = o.nextProbe, o.backoff
				o.mu.Unlock()
			}
		} else {
			if o != nil {
				moved[spec.ID] = true
			}
			c := memcache.New(spec.Addr)
			c.Timeout = b.m.cfg.OperationTimeout
			c.MaxIdleConns = max(b.m.cfg.BackupWorkers, 2) * 2
			n = &node{Node: spec, client: c, setter: newSetter(spec.Addr, c.Timeout, c.MaxIdleConns)}
			n.up.Store(true)
		}
		ns.list = append(ns.list, n)
		ns.byID[n.ID] = n
	}
	b.nodes.Store(ns)
	if old == nil {
		return
	}
	for _, o := range old.list {
		if n := ns.byID[o.ID]; n == nil || n.client != o.client {
			o.client.Close()
			o.setter.close()
		}
	}
	if len(moved) > 0 {
		b.rewriteWhere(func(e *entry) bool { return moved[e.node] })
	}
	b.rescue.Store(true) // sessions on removed nodes must move
	b.wake()
}

// lookup returns the node with id, or nil; ns may be nil.
func (ns *nodeSet) lookup(id string) *node {
	if ns == nil {
		return nil
	}
	return ns.byID[id]
}

// pick chooses the node for a session: an up primary node, else an up
// failover node, else (everything down) a primary node anyway, so the ID
// has a node to name. The choice follows the random part, so sessions spread
// evenly and every instance makes the same choice for the same session.
func (ns *nodeSet) pick(random string) *node {
	h := randomBits(random)
	for tier := range 3 {
		want := func(n *node) bool {
			switch tier {
			case 0:
				return !n.Failover && n.up.Load()
			case 1:
				return n.Failover && n.up.Load()
			}
			return !n.Failover
		}
		count := 0
		for _, n := range ns.list {
			if want(n) {
				count++
			}
		}
		if count == 0 {
			continue
		}
		i := int(h % uint64(count))
		for _, n := range ns.list {
			if want(n) {
				if i == 0 {
					return n
				}
				i--
			}
		}
	}
	return ns.list[0] // unreachable: nodespec.Parse guarantees a primary
}

// randomBits returns the first 64 bits of a session ID's random part, which
// is hex from crypto/rand: already uniform, and the same in every process.
func randomBits(random string) uint64 {
	var h uint64
	for i := 0; i < 16 && i < len(random); i++ {
		c := random[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		}
		h = h<<4 | uint64(c&0xf)
	}
	return h
}

// primaryUp reports whether some primary node is up.
func (ns *nodeSet) primaryUp() bool {
	for _, n := range ns.list {
		if !n.Failover && n.up.Load() {
			return true
		}
	}
	return false
}

// placeLocked moves e to another node if its node is down, removed, or a
// failover node while a primary is up. The new ID goes to the client with
// the next response, and the session is marked for a write there. It
// reports whether e moved.
func (b *backup) placeLocked(e *entry) bool {
	ns := b.nodes.Load()
	cur := ns.byID[e.node]
	if cur != nil && cur.up.Load() && (!cur.Failover || !ns.primaryUp()) {
		return false
	}
	target := ns.pick(e.random)
	if target == cur || !target.up.Load() {
		return false
	}
	e.setID(sessionID{e.random, target.ID, b.m.cfg.Route})
	e.dirty = true
	b.m.stats.relocations.Add(1)
	return true
}

// errClass is what a memcached error means for the node and the session.
type errClass int

const (
	classOK          errClass = iota
	classMiss                 // the key is not there: not a failure
	classBadRequest           // the node refused this request (too large, bad key): the node is fine
	classUnreachable          // dial error, timeout, broken connection: the node is down
	classClosed               // the Manager closed its connections: says nothing of the node
)

// classify decides what a gomemcache error means, in one place.
func classify(err error) errClass {
	switch {
	case err == nil:
		return classOK
	case errors.Is(err, memcache.ErrCacheMiss), errors.Is(err, memcache.ErrNotStored):
		return classMiss
	case errors.Is(err, errSetterClosed):
		return classClosed
	case errors.As(err, new(replyError)), errors.Is(err, memcache.ErrMalformedKey), errors.Is(err, memcache.ErrServerError),
		strings.Contains(err.Error(), "SERVER_ERROR"), strings.Contains(err.Error(), "CLIENT_ERROR"):
		return classBadRequest
	}
	return classUnreachable
}

// refusedTooLarge reports whether err is memcached refusing an item larger
// than its -I limit ("SERVER_ERROR object too large for cache").
func refusedTooLarge(err error) bool {
	return classify(err) == classBadRequest && strings.Contains(err.Error(), "too large")
}

// staleConn reports whether err is what a pooled connection gives when the
// server closed it, for example after a restart: worth one more try on a
// fresh connection before the node is called down.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// do runs op against n, retrying stale pooled connections, marks n down if
// it is unreachable, and wraps any error other than a miss in a *NodeError.
// A miss is returned as memcache.ErrCacheMiss.
func (b *backup) do(n *node, op string, f func(*memcache.Client) error) error {
	err := f(n.client)
	// gomemcache keeps up to MaxIdleConns idle connections; after a server
	// restart each of them is dead, so retry until a fresh dial answers.
	for i := 0; i < n.client.MaxIdleConns && staleConn(err); i++ {
		err = f(n.client)
	}
	switch classify(err) {
	case classOK:
		return nil
	case classMiss:
		return memcache.ErrCacheMiss
	case classUnreachable:
		b.markDown(n, err)
	}
	return &NodeError{Node: n.ID, Addr: n.Addr, Op: op, Err: err}
}

// markDown records that n is unreachable, once per outage.
func (b *backup) markDown(n *node, err error) {
	if !n.up.CompareAndSwap(true, false) {
		return
	}
	n.mu.Lock()
	n.backoff = b.m.cfg.ProbeInterval
	n.nextProbe = time.Now().Add(n.backoff)
	n.mu.Unlock()
	b.m.logger.error("node-down:"+n.ID, "mcsession: memcached node down; its sessions move to other nodes",
		"node", n.ID, "addr", n.Addr, "err", err)
	b.rescue.Store(true)
	b.wake()
}

// probeLoop probes down nodes until Close. Up nodes are never probed: a
// failing operation is what marks them down.
func (b *backup) probeLoop() {
	t := time.NewTicker(b.m.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-b.m.stop:
			return
		case now := <-t.C:
			for _, n := range b.nodes.Load().list {
				if !n.up.Load() {
					b.probe(n, now)
				}
			}
		}
	}
}

// probe sends "version" to a down node whose probe is due, and marks it up
// if it answers; otherwise it doubles the wait before the next probe.
func (b *backup) probe(n *node, now time.Time) {
	n.mu.Lock()
	due := !now.Before(n.nextProbe)
	n.mu.Unlock()
	if !due {
		return
	}
	if err := n.client.Ping(); err != nil {
		n.mu.Lock()
		n.backoff = min(2*n.backoff, max(DefaultMaxProbeInterval, b.m.cfg.ProbeInterval))
		n.nextProbe = time.Now().Add(n.backoff)
		n.mu.Unlock()
		return
	}
	if n.up.CompareAndSwap(false, true) {
		b.m.logger.info("mcsession: memcached node up again", "node", n.ID, "addr", n.Addr)
		b.wake() // retry the backups that failed while it was down
	}
}

// nodeCounts returns the number of nodes and of nodes up.
func (b *backup) nodeCounts() (total, up int) {
	ns := b.nodes.Load()
	for _, n := range ns.list {
		if n.up.Load() {
			up++
		}
	}
	return len(ns.list), up
}

// wake wakes the retry loop without blocking.
func (b *backup) wake() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}
