package main

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestProcessCPUGrows burns CPU until the process's CPU time moves on by at
// least one tick of /proc's clock (10ms), or five seconds pass.
func TestProcessCPUGrows(t *testing.T) {
	before, err := processCPU(os.Getpid())
	require.NoError(t, err, "processCPU(self) failed, want this process's CPU time")
	require.GreaterOrEqual(t, before, time.Duration(0), "processCPU(self) = %v, want >= 0", before)
	after := before
	deadline := time.Now().Add(5 * time.Second)
	for after == before && time.Now().Before(deadline) {
		for start := time.Now(); time.Since(start) < 20*time.Millisecond; {
			// busy: this is the CPU time to be measured
		}
		after, err = processCPU(os.Getpid())
		require.NoError(t, err, "processCPU(self) failed, want this process's CPU time")
	}
	assert.Greater(t, after, before, "processCPU(self) = %v after burning CPU, want more than %v", after, before)
}

func TestProcessCPUNoProcess(t *testing.T) {
	_, err := processCPU(-1)
	assert.Error(t, err, "processCPU(-1) = nil error, want an error: no such process")
}

func TestMachineCPU(t *testing.T) {
	busy, err := machineCPU()
	require.NoError(t, err, "machineCPU() failed, want the machine's busy time from /proc/stat")
	assert.Positive(t, busy, "machineCPU() = %v, want > 0: the machine has been busy since it booted", busy)
}
