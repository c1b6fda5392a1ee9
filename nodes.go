package mcsession

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcsession/mcsession/internal/mcwire"
	"github.com/mcsession/mcsession/internal/nodespec"
	"github.com/mcsession/mcsession/internal/placement"
)

// Node health and placement. gomemcache tracks no health, so the Manager
// does: a node is up until an operation on it fails as unreachable
// (mcwire.Unreachable), then down until a probe answers. Up nodes get no
// liveness probe, only the restart check (restartLoop): one stats per
// node per RestartCheckInterval.

// node is one memcached server in one role, and its health.
type node struct {
	nodespec.Node
	wire    *mcwire.Node
	*health // shared by the node's versions in other roles (SetNodes)
}

// health is a server's state as the Manager sees it.
type health struct {
	up atomic.Bool

	// mu guards the probe schedule and the instance last seen.
	mu        sync.Mutex
	nextProbe time.Time
	backoff   time.Duration
	instance  mcwire.Instance // the server process last seen by checkRestart; zero before
}

// nodeSet is an immutable list of nodes; SetNodes swaps in a new one.
type nodeSet struct {
	list []*node
	byID map[string]*node
	ring *placement.Ring // ranks list for a session's random part
	// copies is how many copies of a session are kept: Config.Copies, but
	// one with fewer than two primary nodes.
	copies int
}

// cluster is the node list and its health. Its zero value is not usable;
// its owner sets onChange and calls replace before use.
type cluster struct {
	cfg    *settings
	logger *rateLogger
	nodes  atomic.Pointer[nodeSet]
	setMu  sync.Mutex // serialises replace

	// onChange is called after a node went down (down true) or came back.
	onChange func(down bool)
	// onRestart is called after an up node was found to be a new server
	// process: it lost every copy it held.
	onRestart func(n *node)
}

// load returns the current node list.
func (c *cluster) load() *nodeSet { return c.nodes.Load() }

// replace installs a new node list. A node whose id, address and role are
// unchanged is kept as it is, with its connections and health; one whose
// role changed keeps its connections and health. It returns the ids of the
// nodes whose address changed: the server there does not hold their copies.
func (c *cluster) replace(specs []nodespec.Node) (moved map[string]bool) {
	c.setMu.Lock()
	defer c.setMu.Unlock()
	old := c.nodes.Load()
	ns := &nodeSet{byID: make(map[string]*node, len(specs))}
	moved = make(map[string]bool)
	ring := make([]placement.Node, 0, len(specs))
	for _, spec := range specs {
		o := old.lookup(spec.ID)
		n := c.reuse(o, spec)
		if n == nil {
			if o != nil {
				moved[spec.ID] = true
			}
			n = c.newNode(spec)
		}
		ns.list = append(ns.list, n)
		ns.byID[n.ID] = n
		ring = append(ring, placement.Node{ID: n.ID, Failover: n.Failover})
	}
	ns.ring = placement.New(ring)
	ns.copies = 1
	if primaries := len(specs) - countFailover(specs); primaries >= 2 {
		ns.copies = c.cfg.Copies
	}
	c.nodes.Store(ns)
	if old != nil {
		for _, o := range old.list {
			if n := ns.byID[o.ID]; n == nil || n.wire != o.wire {
				o.wire.Close()
			}
		}
	}
	return moved
}

// reuse returns o, or o in spec's role with the same connections and
// health, if spec names the same server; else nil.
func (c *cluster) reuse(o *node, spec nodespec.Node) *node {
	if o == nil || o.Addr != spec.Addr {
		return nil
	}
	if o.Failover == spec.Failover {
		return o
	}
	return &node{Node: spec, wire: o.wire, health: o.health}
}

func (c *cluster) newNode(spec nodespec.Node) *node {
	h := &health{}
	h.up.Store(true)
	return &node{Node: spec, health: h,
		wire: mcwire.New(spec.Addr, c.cfg.OperationTimeout, max(c.cfg.BackupWorkers, 2)*2, h.up.Load, c.cfg.TLS)}
}

// close closes every node's connections.
func (c *cluster) close() {
	for _, n := range c.nodes.Load().list {
		n.wire.Close()
	}
}

// lookup returns the node with id, or nil; ns may be nil.
func (ns *nodeSet) lookup(id string) *node {
	if ns == nil {
		return nil
	}
	return ns.byID[id]
}

// pick chooses the node for a session: the first node of its ranking that
// is up, primaries before failover nodes; with every node down, its first
// primary anyway, so the ID has a node to name. Every instance ranks a
// session alike, and a node going down or up changes the choice only for
// the sessions that ranked it first.
func (ns *nodeSet) pick(random string) *node {
	if i := ns.ring.First(random, func(i int) bool { return ns.list[i].up.Load() }); i >= 0 {
		return ns.list[i]
	}
	return ns.list[ns.ring.First(random, func(i int) bool { return !ns.list[i].Failover })]
}

// elsewhere appends to dst the up nodes other than home, in the session's
// ranking: where its owner would have moved it when home went down.
func (ns *nodeSet) elsewhere(dst []*node, home *node, random string) []*node {
	var buf [8]int
	for _, i := range ns.ring.Rank(random, buf[:0]) {
		if n := ns.list[i]; n != home && n.up.Load() {
			dst = append(dst, n)
		}
	}
	return dst
}

// second chooses the node for a session's second copy, given its home
// node: the next up node of its ranking. It returns nil if only one copy is
// kept, or no other node is up.
func (ns *nodeSet) second(random string, home *node) *node {
	if ns.copies < 2 {
		return nil
	}
	if i := ns.ring.First(random, func(i int) bool { n := ns.list[i]; return n != home && n.up.Load() }); i >= 0 {
		return ns.list[i]
	}
	return nil
}

// countFailover counts the failover nodes among specs.
func countFailover(specs []nodespec.Node) int {
	n := 0
	for _, s := range specs {
		if s.Failover {
			n++
		}
	}
	return n
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

// counts returns the number of nodes and of nodes up.
func (ns *nodeSet) counts() (total, up int) {
	for _, n := range ns.list {
		if n.up.Load() {
			up++
		}
	}
	return len(ns.list), up
}

// failed records the outcome of an operation on n: an unreachable node is
// marked down, once per outage. A set that was not sent because n was
// already down (mcwire.ErrNotSent) proves nothing new: a probe may have
// marked n up since.
func (c *cluster) failed(n *node, err error) {
	if mcwire.Classify(err) != mcwire.Unreachable || errors.Is(err, mcwire.ErrNotSent) ||
		!n.up.CompareAndSwap(true, false) {
		return
	}
	n.mu.Lock()
	n.backoff = c.cfg.ProbeInterval
	n.nextProbe = time.Now().Add(n.backoff)
	n.mu.Unlock()
	c.logger.error("node-down:"+n.ID, "mcsession: memcached node down; its sessions move to other nodes",
		"node", n.ID, "addr", n.Addr, "err", err)
	c.onChange(true)
}

// restartLoop asks every up node which server process it is, every
// RestartCheckInterval until stop is closed: a node that restarted empty
// between two operations is never seen down, and reads cost no memcached
// operation, so without this its loss would go unnoticed until the next
// crash of an instance.
func (c *cluster) restartLoop(stop <-chan struct{}) {
	t := time.NewTicker(c.cfg.RestartCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			for _, n := range c.nodes.Load().list {
				if n.up.Load() {
					c.checkRestart(n)
				}
			}
		}
	}
}

// checkRestart asks n which server process it is and calls onRestart if
// it is not the one seen before. A node that does not answer is marked
// down as by any failed operation; when it comes back, its sessions have
// moved and are rewritten anyway.
func (c *cluster) checkRestart(n *node) {
	inst, err := n.wire.Instance()
	if err != nil {
		c.failed(n, err)
		return
	}
	n.mu.Lock()
	restarted := n.instance != (mcwire.Instance{}) && n.instance.Restarted(inst)
	n.instance = inst
	n.mu.Unlock()
	if restarted {
		c.logger.warn("node-restart:"+n.ID, "mcsession: memcached node restarted and lost its copies; storing its sessions again",
			"node", n.ID, "addr", n.Addr)
		c.onRestart(n)
	}
}

// probeLoop probes down nodes until stop is closed.
func (c *cluster) probeLoop(stop <-chan struct{}) {
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			for _, n := range c.nodes.Load().list {
				if !n.up.Load() {
					c.probe(n, now)
				}
			}
		}
	}
}

// probe sends "version" to a down node whose probe is due, and marks it up
// if it answers; otherwise it doubles the wait before the next probe.
func (c *cluster) probe(n *node, now time.Time) {
	n.mu.Lock()
	due := !now.Before(n.nextProbe)
	n.mu.Unlock()
	if !due {
		return
	}
	if err := n.wire.Ping(); err != nil {
		n.mu.Lock()
		n.backoff = min(2*n.backoff, max(DefaultMaxProbeInterval, c.cfg.ProbeInterval))
		n.nextProbe = time.Now().Add(n.backoff)
		n.mu.Unlock()
		return
	}
	if n.up.CompareAndSwap(false, true) {
		c.logger.info("mcsession: memcached node up again", "node", n.ID, "addr", n.Addr)
		c.onChange(false)
	}
}
