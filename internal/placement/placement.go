// Package placement decides which memcached nodes hold a session, as a
// ranking of the nodes that every process computes alike: rendezvous
// (highest random weight) hashing. Each node gets a score from a hash of
// the session's key and the node's id; the nodes in order of falling score
// are the session's ranking. A node that goes down or comes back changes
// the first choice only of the sessions that ranked it first, where a
// modulo over the nodes that are up would move almost every session.
package placement

// Node is one node as placement sees it.
type Node struct {
	ID       string
	Failover bool // ranked after every primary: used only when no primary is up
}

// Ring ranks sessions over a fixed list of nodes. The zero value has no
// nodes. A Ring is immutable and safe for concurrent use.
type Ring struct {
	nodes []Node
	seeds []uint64 // per node: the hash of its id
}

// New returns a Ring over nodes, which it keeps in order as the indexes
// Rank returns refer to.
func New(nodes []Node) *Ring {
	r := &Ring{nodes: nodes, seeds: make([]uint64, len(nodes))}
	for i, n := range nodes {
		r.seeds[i] = hashString(n.ID)
	}
	return r
}

// Len returns the number of nodes.
func (r *Ring) Len() int { return len(r.nodes) }

// Rank appends to dst the indexes of every node, best first for key:
// primaries by falling score, then failover nodes by falling score. Every
// Ring over the same nodes ranks a key alike, whatever their order in the
// list. It allocates only if dst is too short.
func (r *Ring) Rank(key string, dst []int) []int {
	h := hashString(key)
	start := len(dst)
	for i := range r.nodes {
		dst = append(dst, i)
	}
	ranked := dst[start:]
	// Insertion sort: a handful of nodes, and no allocation.
	for i := 1; i < len(ranked); i++ {
		for j := i; j > 0 && r.before(h, ranked[j], ranked[j-1]); j-- {
			ranked[j], ranked[j-1] = ranked[j-1], ranked[j]
		}
	}
	return dst
}

// First returns the index of the best node for key among those for which
// ok reports true, primaries before failover nodes, or -1 if there is
// none. It is Rank's first acceptable entry, without building the ranking.
func (r *Ring) First(key string, ok func(i int) bool) int {
	h := hashString(key)
	best := -1
	for i := range r.nodes {
		if ok(i) && (best < 0 || r.before(h, i, best)) {
			best = i
		}
	}
	return best
}

// before reports whether node i ranks before node j for a key with hash h.
func (r *Ring) before(h uint64, i, j int) bool {
	if r.nodes[i].Failover != r.nodes[j].Failover {
		return !r.nodes[i].Failover
	}
	si, sj := score(h, r.seeds[i]), score(h, r.seeds[j])
	if si != sj {
		return si > sj
	}
	return r.nodes[i].ID < r.nodes[j].ID // never in practice; keeps the order total
}

// score mixes a key's hash with a node's: the murmur3 finalizer, so that
// every bit of both moves every bit of the score.
func score(key, node uint64) uint64 {
	x := key ^ node
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// hashString is 64-bit FNV-1a: fixed, so every process computes the same.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}
