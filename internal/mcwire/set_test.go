package mcwire_test

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/mcwire"
	"github.com/mcsession/mcsession/internal/memcacheserver"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

// A batch gets one reply per set, in order, even when a set in the middle
// is refused: memcached drops that item's data and goes on with the next.
func TestSetManyRepliesPerSet(t *testing.T) {
	srv := memcachetest.Start(t, memcachetest.Options{MaxItemSize: "1m"})
	n := newNode(t, srv.Addr(), waitFor, 2, alwaysUp)

	sets := newSets("batch", 100, 2<<20, 300, 0, 40<<10)
	n.SetMany(sets)
	for i, set := range sets {
		if i == 1 {
			assert.ErrorIs(t, set.Err, mcwire.ErrTooLarge, "set %d (2 MB, -I 1m): memcached's refusal of an oversized item", i)
			assertClass(t, set.Err, mcwire.Refused, "the oversized set was refused, the node is fine")
			_, found, err := srv.Get(set.Key)
			require.NoError(t, err, "get %s from memcached", set.Key)
			assert.False(t, found, "the refused item %s is not in memcached", set.Key)
			continue
		}
		assert.NoError(t, set.Err, "set %d (%d bytes): stored", i, len(set.Value))
		got, found, err := srv.Get(set.Key)
		require.NoError(t, err, "get %s from memcached", set.Key)
		assert.True(t, found && bytes.Equal(got, set.Value),
			"memcached has %d bytes under %s (found %v), want the %d bytes sent", len(got), set.Key, found, len(set.Value))
	}

	// The connection went back to the pool and still works.
	again := newSets("again", 10, 20)
	n.SetMany(again)
	for i, set := range again {
		assert.NoError(t, set.Err, "second batch, set %d: stored on the pooled connection", i)
	}
	st, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")
	assert.Equal(t, uint64(6), st.CmdSet, "memcached's cmd_set: one per set it took (it counts none for the oversized one), no resends")
}

// After a restart every pooled connection is dead: the batch goes out again
// on a fresh connection instead of failing. With the server gone, every set
// of the batch fails as unreachable.
func TestSetManyKilledAndRestarted(t *testing.T) {
	srv := memcachetest.Start(t)
	n := newNode(t, srv.Addr(), waitFor, 2, alwaysUp)
	first := newSets("k", 10, 10)
	n.SetMany(first)
	for i, set := range first {
		require.NoError(t, set.Err, "first batch, set %d: stored", i)
	}

	srv.Kill()
	down := newSets("down", 10, 10, 10)
	n.SetMany(down)
	for i, set := range down {
		assert.Error(t, set.Err, "server killed: set %d fails", i)
		assertClass(t, set.Err, mcwire.Unreachable, "set %d with the server killed", i)
	}

	srv.Restart()
	warm := newSets("warm", 1)
	n.SetMany(warm) // a connection to this run of memcached goes to the pool
	require.NoError(t, warm[0].Err, "after the first restart: stored")
	srv.Kill()
	srv.Restart()
	up := newSets("up", 10, 10)
	n.SetMany(up)
	for i, set := range up {
		assert.NoError(t, set.Err, "after a restart: set %d stored on a fresh connection, not failed on the stale pooled one", i)
		got, found, err := srv.Get(set.Key)
		require.NoError(t, err, "get %s from memcached", set.Key)
		assert.True(t, found && bytes.Equal(got, set.Value), "after a restart: set %d in memcached (found %v)", i, found)
	}
	st, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")
	assert.Equal(t, uint64(2), st.CmdSet, "cmd_set of the restarted memcached: the two sets, each sent once")
}

// A paused (SIGSTOP) node is a black hole: the batch fails within the
// timeout, every set with a timeout, classed unreachable.
func TestSetManyToAPausedNodeTimesOut(t *testing.T) {
	srv := memcachetest.Start(t)
	const timeout = 200 * time.Millisecond
	n := newNode(t, srv.Addr(), timeout, 2, alwaysUp)
	srv.Pause()
	defer srv.Resume()

	sets := newSets("p", 10, 10, 10)
	start := time.Now()
	n.SetMany(sets)
	took := time.Since(start)
	assert.Less(t, took, 10*timeout, "a batch to a paused node took %v, want about the %v timeout", took, timeout)
	for i, set := range sets {
		assert.Error(t, set.Err, "set %d to a paused node: a timeout", i)
		assertClass(t, set.Err, mcwire.Unreachable, "set %d to a paused node timed out", i)
	}
}

// The embedded server (the demo's fallback) answers batches the same way.
func TestSetManyOnEmbeddedServer(t *testing.T) {
	srv, err := memcacheserver.Start("127.0.0.1:0", memcacheserver.Options{})
	require.NoError(t, err, "start the embedded server")
	t.Cleanup(func() { srv.Close() })
	n := newNode(t, srv.Addr(), waitFor, 2, alwaysUp)

	sets := newSets("e", 10, 5000, 0, 70)
	n.SetMany(sets)
	for i, set := range sets {
		assert.NoError(t, set.Err, "set %d: stored by the embedded server", i)
		got, err := n.Get(set.Key)
		assert.NoError(t, err, "get %s back", set.Key)
		assert.True(t, bytes.Equal(got, set.Value), "get %s = %d bytes, want the %d bytes sent", set.Key, len(got), len(set.Value))
	}
}

// A set whose key memcached cannot parse (too long, a space, a line
// break) must not be sent: memcached would refuse the command line and then
// run the value as a command of its own. It fails as gomemcache fails such
// a key, with ErrMalformedKey, classed Refused.
func TestSetManyMalformedKeyIsNotSent(t *testing.T) {
	for _, key := range []string{strings.Repeat("k", 251), "bad key", "bad\r\nkey"} {
		srv := memcachetest.Start(t)
		n := newNode(t, srv.Addr(), waitFor, 2, alwaysUp)
		require.NoError(t, srv.Set("sentinel", []byte("x"), 0), "store a sentinel key")

		set := &mcwire.Set{Key: key, Value: []byte("flush_all"), Exp: 60}
		n.SetMany([]*mcwire.Set{set})
		assert.ErrorIs(t, set.Err, memcache.ErrMalformedKey, "SetMany with key %.20q", key)
		assertClass(t, set.Err, mcwire.Refused, "a malformed key is the caller's mistake, the node is fine")
		st, err := srv.Stats()
		require.NoError(t, err, "memcached's stats")
		assert.Zero(t, st.CmdFlush, "memcached's cmd_flush after a set with key %.20q of value flush_all: 0, the value must never run as a command", key)
		_, found, err := srv.Get("sentinel")
		require.NoError(t, err, "get the sentinel")
		assert.True(t, found, "the sentinel key survives a set with key %.20q", key)
	}
}

// After Close every operation but Delete fails with ErrClosed, classed
// Closed, and none of them dials the server.
func TestClosedNodeDialsNothing(t *testing.T) {
	srv := startFake(t, silent)
	n := mcwire.New(srv.addr(), waitFor, 2, alwaysUp, nil)
	n.Close()
	n.Close() // idempotent

	sets := newSets("c", 1, 1)
	n.SetMany(sets)
	joined := &mcwire.Set{Key: "joined", Value: []byte("v")}
	n.SetJoined(joined)
	_, getErr := n.Get("k")
	for op, err := range map[string]error{
		"SetMany[0]": sets[0].Err,
		"SetMany[1]": sets[1].Err,
		"SetJoined":  joined.Err,
		"Get":        getErr,
		"Touch":      n.Touch("k", 60),
		"Ping":       n.Ping(),
	} {
		assert.ErrorIs(t, err, mcwire.ErrClosed, "%s after Close", op)
		assertClass(t, err, mcwire.Closed, "%s after Close", op)
	}

	// A connection of our own is accepted after any the Node made: if it is
	// the first, the Node made none.
	marker, err := net.Dial("tcp", srv.addr())
	require.NoError(t, err, "dial the fake server")
	defer marker.Close()
	require.Eventually(t, func() bool { return srv.accepted.Load() >= 1 }, waitFor, time.Millisecond, "the fake server accepts our connection")
	assert.Equal(t, int64(1), srv.accepted.Load(), "connections accepted: only ours, none from the closed Node")
}

// Delete still works after Close, so a logout after shutdown takes effect,
// and leaves no connection open behind it.
func TestDeleteAfterClose(t *testing.T) {
	srv := memcachetest.Start(t)
	require.NoError(t, srv.Set("k", []byte("v"), 600), "store k")
	base := currConnections(srv)
	n := mcwire.New(srv.Addr(), waitFor, 2, alwaysUp, nil)
	n.Close()
	assert.NoError(t, n.Delete("k"), "Delete(k) after Close: deleted")
	_, found, err := srv.Get("k")
	require.NoError(t, err, "get k")
	assert.False(t, found, "k after Delete after Close: gone")
	assertClass(t, n.Delete("k"), mcwire.Miss, "Delete(k) again after Close")
	require.Eventually(t, func() bool { return currConnections(srv) == base }, waitFor, 5*time.Millisecond,
		"memcached's open connections after Deletes on a closed Node: back to %d", base)
}

// Close closes the pooled connections of both kinds (gomemcache's and the
// setter's): memcached sees them go.
func TestCloseClosesIdleConnections(t *testing.T) {
	srv := memcachetest.Start(t)
	base := currConnections(srv)
	n := mcwire.New(srv.Addr(), waitFor, 2, alwaysUp, nil)
	defer n.Close()
	sets := newSets("idle", 10)
	n.SetMany(sets)
	require.NoError(t, sets[0].Err, "set: stored")
	require.NoError(t, n.Ping(), "ping")
	require.Eventually(t, func() bool { return currConnections(srv) == base+2 }, waitFor, 5*time.Millisecond,
		"memcached has the Node's two pooled connections open")

	n.Close()
	assert.Eventually(t, func() bool { return currConnections(srv) == base }, waitFor, 5*time.Millisecond,
		"after Close memcached has none of the Node's connections open, want %d (the stats connection)", base)
}

// A batch in flight when Close is called keeps its connection until it
// has its replies, then closes it instead of pooling it.
func TestCloseDuringSetManyClosesItsConnection(t *testing.T) {
	h, srv := startHolder(t)
	n := mcwire.New(srv.addr(), waitFor, 2, alwaysUp, nil)
	defer n.Close()

	sets := newSets("inflight", 10)
	done := make(chan struct{})
	go func() {
		defer close(done)
		n.SetMany(sets)
	}()
	h.awaitCommand(t, "set")
	n.Close()
	h.answer()
	<-done
	assert.NoError(t, sets[0].Err, "the set in flight at Close has its reply, STORED")
	h.awaitClosed(t, "the batch's connection after its replies (the Node is closed)")
}
