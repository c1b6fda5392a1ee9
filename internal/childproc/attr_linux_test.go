package childproc

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAttrKillsWithParent(t *testing.T) {
	a := Attr()
	require.NotNil(t, a, "Attr() = nil, want attributes: Linux can tie a child to its parent")
	assert.Equal(t, syscall.SIGKILL, a.Pdeathsig,
		"Attr().Pdeathsig = %v, want SIGKILL: a child must die with its parent, whatever it handles", a.Pdeathsig)
}

func TestAttrIsFresh(t *testing.T) {
	a := Attr()
	require.NotNil(t, a, "Attr() = nil, want attributes on Linux")
	a.Setpgid = true
	b := Attr()
	require.NotNil(t, b, "second Attr() = nil, want attributes on Linux")
	assert.NotSame(t, a, b, "Attr() returned the same value twice, want a new one per call")
	assert.False(t, b.Setpgid, "Attr().Setpgid = true after a caller changed an earlier result, want false: callers may change what they get")
}
