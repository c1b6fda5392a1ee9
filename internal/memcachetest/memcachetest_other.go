//go:build !linux

package memcachetest

import (
	"syscall"
	"time"
)

// sysProcAttr returns nil: Pdeathsig exists only on Linux, so elsewhere a
// killed test binary can leave memcached running until it is killed by hand.
func sysProcAttr() *syscall.SysProcAttr { return nil }

// waitStopState cannot observe the stop state portably and reports success
// at once; Pause is then only as prompt as signal delivery.
func waitStopState(pid int, want bool, deadline time.Time) bool { return true }
