//go:build !unix

package memcachetest

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPauseNeedsUnix checks that a system without SIGSTOP gets a clear
// error instead of a paused server.
func TestPauseNeedsUnix(t *testing.T) {
	t.Parallel()
	assert.ErrorIs(t, stopProcess(nil), errPauseUnsupported, "stopProcess() = %v, want %v", stopProcess(nil), errPauseUnsupported)
	assert.ErrorIs(t, continueProcess(nil), errPauseUnsupported, "continueProcess() = %v, want %v", continueProcess(nil), errPauseUnsupported)

	s := Start(t)
	f := &fakeTB{TB: t}
	s.tb = f // the test's own goroutine, before anything else uses s
	defer func() { s.tb = t }()
	s.Pause()
	assert.False(t, s.Paused(), "Paused() after Pause = true, want false: nothing can pause memcached here")
	assert.True(t, s.Running(), "Running() after Pause = false, want true: a failed Pause leaves memcached running")
	require.Len(t, f.errors, 1, "Pause reported %q, want one error", f.errors)
	assert.Contains(t, f.errors[0], "needs a Unix system", "Pause reported %q, want it to say pausing needs a Unix system", f.errors[0])
}
