//go:build unix

package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestContextSwitches(t *testing.T) {
	vol, invol, err := contextSwitches()
	require.NoError(t, err, "contextSwitches() failed, want getrusage's counts")
	assert.GreaterOrEqual(t, vol, int64(0), "contextSwitches() voluntary = %d, want >= 0", vol)
	assert.GreaterOrEqual(t, invol, int64(0), "contextSwitches() involuntary = %d, want >= 0", invol)
	assert.Positive(t, vol+invol, "contextSwitches() = %d, %d, want some: the runtime's threads have parked since the test binary started", vol, invol)
}
