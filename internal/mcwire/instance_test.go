package mcwire_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/mcwire"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

// Instance tells a restarted server from the one seen before.
func TestInstanceSeesARestart(t *testing.T) {
	srv := memcachetest.Start(t)
	n := newNode(t, srv.Addr(), waitFor, 2, alwaysUp)
	before, err := n.Instance()
	require.NoError(t, err, "Instance() of a running memcached")
	assert.Equal(t, uint64(srv.Pid()), before.PID, "Instance().PID: memcached's pid")
	again, err := n.Instance()
	require.NoError(t, err, "Instance() again")
	assert.False(t, before.Restarted(again), "Restarted(%+v → %+v): the same process", before, again)

	srv.Restart()
	after, err := n.Instance() // its pooled connection is dead: replaced
	require.NoError(t, err, "Instance() right after a restart")
	assert.True(t, before.Restarted(after), "Restarted(%+v → %+v): a new process", before, after)
}

func TestRestarted(t *testing.T) {
	prev := mcwire.Instance{PID: 10, Uptime: 100}
	assert.False(t, prev.Restarted(mcwire.Instance{PID: 10, Uptime: 160}), "same pid, uptime grew")
	assert.True(t, prev.Restarted(mcwire.Instance{PID: 11, Uptime: 500}), "new pid")
	assert.True(t, prev.Restarted(mcwire.Instance{PID: 10, Uptime: 3}), "same pid (reused), uptime went back")
}
