package placement

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func keys(n int) []string {
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%016x%016x", r.Uint64(), r.Uint64())
	}
	return out
}

func TestRankIsAPermutationPrimariesFirst(t *testing.T) {
	r := New([]Node{{"n1", false}, {"f1", true}, {"n2", false}, {"n3", false}, {"f2", true}})
	for _, k := range keys(200) {
		got := r.Rank(k, nil)
		require.Len(t, got, 5, "Rank(%s) = %v: every node once", k, got)
		seen := map[int]bool{}
		for pos, i := range got {
			assert.False(t, seen[i], "Rank(%s) = %v: node %d twice", k, got, i)
			seen[i] = true
			assert.Equal(t, pos >= 3, r.nodes[i].Failover, "Rank(%s) = %v: the three primaries before the two failover nodes", k, got)
		}
	}
}

func TestRankIgnoresListOrder(t *testing.T) {
	a := New([]Node{{"n1", false}, {"n2", false}, {"n3", false}})
	b := New([]Node{{"n3", false}, {"n1", false}, {"n2", false}})
	for _, k := range keys(200) {
		ra, rb := a.Rank(k, nil), b.Rank(k, nil)
		for pos := range ra {
			assert.Equal(t, a.nodes[ra[pos]].ID, b.nodes[rb[pos]].ID, "Rank(%s) position %d: every instance must agree whatever its node list order", k, pos)
		}
	}
}

func TestFirstIsRanksFirstAcceptable(t *testing.T) {
	r := New([]Node{{"n1", false}, {"n2", false}, {"n3", false}, {"f1", true}})
	down := map[int]bool{1: true}
	up := func(i int) bool { return !down[i] }
	for _, k := range keys(200) {
		want := -1
		for _, i := range r.Rank(k, nil) {
			if up(i) {
				want = i
				break
			}
		}
		assert.Equal(t, want, r.First(k, up), "First(%s) with n2 down = Rank's first up node", k)
	}
	assert.Equal(t, -1, r.First("k", func(int) bool { return false }), "First with no acceptable node")
}

// TestNodeDownMovesOnlyItsSessions pins the reason for rendezvous hashing: a
// node going down moves only the sessions that had it first, and spreads
// them over the others; a modulo over the up nodes moved almost all.
func TestNodeDownMovesOnlyItsSessions(t *testing.T) {
	r := New([]Node{{"n1", false}, {"n2", false}, {"n3", false}, {"n4", false}})
	all := func(int) bool { return true }
	without2 := func(i int) bool { return i != 2 }
	moved, onDown := 0, 0
	landed := map[int]int{}
	ks := keys(4000)
	for _, k := range ks {
		before, after := r.First(k, all), r.First(k, without2)
		if before == 2 {
			onDown++
			landed[after]++
		}
		if before != after {
			moved++
			assert.Equal(t, 2, before, "First(%s) moved from node %d, which stayed up", k, before)
		}
	}
	assert.Equal(t, onDown, moved, "sessions moved when n3 went down: only the ones it held")
	assert.InDelta(t, len(ks)/4, onDown, float64(len(ks))/10, "n3 held %d of %d sessions, want about a quarter", onDown, len(ks))
	for _, i := range []int{0, 1, 3} {
		assert.InDelta(t, onDown/3, landed[i], float64(onDown)/6, "n3's sessions landing on node %d: want about a third each", i)
	}
}

func TestRankAllocatesNothingWithRoom(t *testing.T) {
	r := New([]Node{{"n1", false}, {"n2", false}, {"n3", false}})
	buf := make([]int, 0, 8)
	k := keys(1)[0]
	allocs := testing.AllocsPerRun(100, func() {
		buf = r.Rank(k, buf[:0])
		_ = r.First(k, func(int) bool { return true })
	})
	assert.Zero(t, allocs, "Rank and First with room in dst: allocations per call")
}

func BenchmarkFirst(b *testing.B) {
	r := New([]Node{{"n1", false}, {"n2", false}, {"n3", false}})
	k := keys(1)[0]
	b.ReportAllocs()
	for b.Loop() {
		r.First(k, func(int) bool { return true })
	}
}
