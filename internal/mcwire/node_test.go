package mcwire_test

import (
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/mcwire"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

// A key that is not there is a miss for Get, Touch and Delete: ErrCacheMiss,
// classed Miss, not a failure of the node.
func TestMissingKeyIsAMiss(t *testing.T) {
	srv := memcachetest.Start(t)
	n := newNode(t, srv.Addr(), waitFor, 2, alwaysUp)

	value, getErr := n.Get("absent")
	assert.Nil(t, value, "Get of a missing key: no value")
	for op, err := range map[string]error{
		"Get":    getErr,
		"Touch":  n.Touch("absent", 60),
		"Delete": n.Delete("absent"),
	} {
		assert.ErrorIs(t, err, memcache.ErrCacheMiss, "%s of a missing key", op)
		assertClass(t, err, mcwire.Miss, "%s of a missing key is no failure", op)
	}
	st, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")
	assert.Equal(t, uint64(1), st.GetMisses, "memcached's get_misses: the Get reached it once")
	assert.Equal(t, uint64(1), st.TouchMisses, "memcached's touch_misses: the Touch reached it once")
	assert.Equal(t, uint64(1), st.DeleteMisses, "memcached's delete_misses: the Delete reached it once")
}

// A key that is there: Get returns its value, Touch and Delete succeed, and
// after the Delete it is a miss.
func TestGetTouchDeleteStoredKey(t *testing.T) {
	srv := memcachetest.Start(t)
	n := newNode(t, srv.Addr(), waitFor, 2, alwaysUp)
	want := []byte("value\r\nwith a line break")
	require.NoError(t, srv.Set("k", want, 600), "store k in memcached")

	got, err := n.Get("k")
	assert.NoError(t, err, "Get of a stored key")
	assert.Equal(t, want, got, "Get(k) = %q, want %q", got, want)
	assert.NoError(t, n.Touch("k", 60), "Touch of a stored key")
	assert.NoError(t, n.Ping(), "Ping of a running memcached")
	assert.NoError(t, n.Delete("k"), "Delete of a stored key")
	_, err = n.Get("k")
	assert.ErrorIs(t, err, memcache.ErrCacheMiss, "Get after Delete: a miss")
}

// After a restart every connection gomemcache pooled is dead. Get goes on
// to a fresh connection, past as many stale ones as the pool holds (two
// here), instead of failing the node. A proxy in front of memcached counts
// the Node's dials.
func TestGetAfterRestartRetriesStaleConnections(t *testing.T) {
	srv := memcachetest.Start(t)
	px := startFake(t, proxy(srv.Addr()))
	n := newNode(t, px.addr(), waitFor, 2, alwaysUp)

	// Two Gets in flight at once, so the pool ends with two connections:
	// with memcached paused the first holds its connection while the
	// second dials its own.
	srv.Pause()
	defer srv.Resume()
	errs := make(chan error, 2)
	for i := range 2 {
		go func() {
			_, err := n.Get("warm")
			errs <- err
		}()
		require.Eventually(t, func() bool { return px.accepted.Load() == int64(i+1) }, waitFor, time.Millisecond,
			"Get %d in flight on a connection of its own", i+1)
	}
	srv.Resume()
	for range 2 {
		require.ErrorIs(t, <-errs, memcache.ErrCacheMiss, "warm-up Get: a miss, and its connection pooled")
	}

	srv.Restart()
	want := []byte("after the restart")
	require.NoError(t, srv.Set("k", want, 600), "store k in the restarted memcached")
	got, err := n.Get("k")
	assert.NoError(t, err, "Get after a restart: stale pooled connections retried, not an error")
	assert.Equal(t, want, got, "Get(k) after a restart = %q, want %q", got, want)
	assert.Equal(t, int64(3), px.accepted.Load(), "dials: the two pooled connections, then one fresh one after both were found stale")
	st, err := srv.Stats()
	require.NoError(t, err, "memcached's stats")
	assert.Equal(t, uint64(1), st.CmdGet, "cmd_get of the restarted memcached: the Get reached it once")

	// The same for the other commands, each with one stale connection.
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"Touch", func() error { return n.Touch("k", 60) }},
		{"Delete", func() error { return n.Delete("k") }},
		{"Ping", n.Ping},
	} {
		srv.Restart()
		require.NoError(t, srv.Set("k", want, 600), "store k in the restarted memcached")
		assert.NoError(t, op.do(), "%s after a restart: the stale pooled connection retried", op.name)
	}
}

// gomemcache keeps MaxIdleConns idle connections, and two when it is 0: a
// Node made with maxIdle 0 still pools connections, so it too must retry
// them after a restart.
func TestRestartWithMaxIdleZeroRetriesStaleConnection(t *testing.T) {
	srv := memcachetest.Start(t)
	n := newNode(t, srv.Addr(), waitFor, 0, alwaysUp)
	require.NoError(t, n.Ping(), "ping: a connection for the pool")
	srv.Restart()
	err := n.Ping()
	assert.NoError(t, err, "Ping after a restart with maxIdle 0: the stale pooled connection retried")
}

// A Get in flight when Close is called keeps its connection until it has
// its reply, then closes it instead of pooling it, as Close promises.
func TestCloseDuringGetClosesItsConnection(t *testing.T) {
	h, srv := startHolder(t)
	n := mcwire.New(srv.addr(), waitFor, 2, alwaysUp, nil)
	defer n.Close()

	done := make(chan error, 1)
	go func() {
		_, err := n.Get("k")
		done <- err
	}()
	h.awaitCommand(t, "gets")
	n.Close()
	h.answer()
	assert.ErrorIs(t, <-done, memcache.ErrCacheMiss, "the Get in flight at Close has its reply, a miss")
	h.awaitClosed(t, "the Get's connection after its reply (the Node is closed)")
}
