package mcwire_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/mcwire"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

// joined is the outcome of one SetJoined call.
type joined struct {
	set *mcwire.Set
	led bool
}

// startJoined calls SetJoined for each set from a goroutine of its own:
// the first alone until its batch is in flight (its leader has asked
// alive, counted by asked), then the others, and returns once they are all
// queued behind it. The outcomes arrive on the channel.
func startJoined(t *testing.T, n *mcwire.Node, asked *atomic.Int64, sets []*mcwire.Set) <-chan joined {
	t.Helper()
	out := make(chan joined, len(sets))
	for i, set := range sets {
		go func() { out <- joined{set, n.SetJoined(set)} }()
		if i == 0 {
			require.Eventually(t, func() bool {
				busy, _ := n.Batching()
				return busy && asked.Load() == 1
			}, waitFor, time.Millisecond, "the first set's batch in flight")
		}
	}
	require.Eventually(t, func() bool {
		_, queued := n.Batching()
		return queued == len(sets)-1
	}, waitFor, time.Millisecond, "%d sets queued behind the first", len(sets)-1)
	return out
}

// countingAlive returns an alive func that reports up and counts its calls
// in asked: one per batch.
func countingAlive(up *atomic.Bool, asked *atomic.Int64) func() bool {
	return func() bool {
		asked.Add(1)
		return up.Load()
	}
}

// Sets that overlap share a batch: while one waits for a paused memcached,
// ten more queue, and all ten go in the next write, led by one of them.
// Each is stored, each sent once.
func TestSetJoinedSharesBatches(t *testing.T) {
	srv := memcachetest.Start(t)
	var up atomic.Bool
	up.Store(true)
	var asked atomic.Int64
	n := newNode(t, srv.Addr(), waitFor, 2, countingAlive(&up, &asked))
	before, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")

	const queued = 10
	sets := newSets("joined", make([]int, queued+1)...)
	for i, set := range sets {
		set.Value = fmt.Appendf(nil, "value %d", i)
	}
	srv.Pause()
	defer srv.Resume()
	out := startJoined(t, n, &asked, sets)
	srv.Resume()

	leaders := 0
	for range sets {
		j := <-out
		assert.NoError(t, j.set.Err, "SetJoined(%s): stored", j.set.Key)
		if j.led {
			leaders++
		}
	}
	assert.Equal(t, 2, leaders, "batches (one leader each): the one in flight, then the %d queued behind it", queued)
	assert.Equal(t, int64(2), asked.Load(), "alive asked once per batch")
	busy, waiting := n.Batching()
	assert.False(t, busy, "after the sets: no batch in flight")
	assert.Zero(t, waiting, "after the sets: nothing queued")

	after, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")
	assert.Equal(t, uint64(len(sets)), after.CmdSet-before.CmdSet, "memcached's cmd_set: every set sent once")
	for _, set := range sets {
		got, found, err := srv.Get(set.Key)
		require.NoError(t, err, "get %s from memcached", set.Key)
		assert.True(t, found, "%s in memcached", set.Key)
		assert.Equal(t, string(set.Value), string(got), "memcached's value of %s", set.Key)
	}
}

// A set to a node its owner calls down is not sent: it fails at once with
// ErrNotSent, classed Unreachable, and memcached sees nothing.
func TestSetJoinedToADownNodeIsNotSent(t *testing.T) {
	srv := memcachetest.Start(t)
	var up atomic.Bool // down
	var asked atomic.Int64
	n := newNode(t, srv.Addr(), waitFor, 2, countingAlive(&up, &asked))
	before, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")

	set := &mcwire.Set{Key: "down", Value: []byte("v"), Exp: 60}
	sent := n.SetJoined(set)
	assert.False(t, sent, "SetJoined to a node marked down: reports no batch sent")
	assert.ErrorIs(t, set.Err, mcwire.ErrNotSent, "a set to a node marked down")
	assertClass(t, set.Err, mcwire.Unreachable, "a set not sent to a down node moves on as if the node were unreachable")

	after, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")
	assert.Equal(t, before.CmdSet, after.CmdSet, "memcached's cmd_set: nothing sent to a node marked down")
	busy, waiting := n.Batching()
	assert.False(t, busy, "after the set: no batch in flight")
	assert.Zero(t, waiting, "after the set: nothing queued")
}

// Sets queued behind a batch, when the node is marked down meanwhile, are
// not sent: the one in flight is stored, the queued ones fail with
// ErrNotSent as soon as it is done, without a timeout of their own.
func TestSetJoinedQueuedWhileNodeGoesDownIsNotSent(t *testing.T) {
	srv := memcachetest.Start(t)
	var up atomic.Bool
	up.Store(true)
	var asked atomic.Int64
	n := newNode(t, srv.Addr(), waitFor, 2, countingAlive(&up, &asked))
	before, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")

	sets := newSets("queued", 10, 10, 10, 10, 10, 10)
	srv.Pause()
	defer srv.Resume()
	out := startJoined(t, n, &asked, sets)
	up.Store(false) // the owner marks the node down while the sets queue
	srv.Resume()

	leaders := 0
	for range sets {
		j := <-out
		if j.led {
			leaders++
		}
		if j.set == sets[0] {
			assert.NoError(t, j.set.Err, "the set in flight when the node was marked down: stored")
			continue
		}
		assert.ErrorIs(t, j.set.Err, mcwire.ErrNotSent, "SetJoined(%s) queued while the node was marked down", j.set.Key)
		_, found, err := srv.Get(j.set.Key)
		require.NoError(t, err, "get %s from memcached", j.set.Key)
		assert.False(t, found, "%s, not sent, is not in memcached", j.set.Key)
	}
	assert.Equal(t, 1, leaders, "batches sent: the one in flight; the queued sets fail unsent, reported as no batch")
	after, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")
	// The Gets above add to cmd_get, not cmd_set.
	assert.Equal(t, uint64(1), after.CmdSet-before.CmdSet, "memcached's cmd_set: only the set in flight")
	busy, waiting := n.Batching()
	assert.False(t, busy, "after the sets: no batch in flight")
	assert.Zero(t, waiting, "after the sets: nothing queued")
}

// A batch that finds the node killed fails as unreachable; the sets queued
// behind it (the owner has not marked the node down yet) are sent next and
// fail the same way, each with its own error, and the group commit is idle
// again after.
func TestSetJoinedBehindAKilledNode(t *testing.T) {
	srv := memcachetest.Start(t)
	var up atomic.Bool
	up.Store(true)
	var asked atomic.Int64
	n := newNode(t, srv.Addr(), waitFor, 2, countingAlive(&up, &asked))

	sets := newSets("killed", 10, 10, 10, 10)
	srv.Pause()
	out := startJoined(t, n, &asked, sets)
	srv.Kill() // the batch in flight sees its connection close

	for range sets {
		j := <-out
		assert.Error(t, j.set.Err, "SetJoined(%s) to a killed node", j.set.Key)
		assertClass(t, j.set.Err, mcwire.Unreachable, "SetJoined(%s) to a killed node", j.set.Key)
	}
	assert.Equal(t, int64(2), asked.Load(), "alive asked once per batch: the killed one, then the queued one")
	busy, waiting := n.Batching()
	assert.False(t, busy, "after the sets: no batch in flight")
	assert.Zero(t, waiting, "after the sets: nothing queued")
}
