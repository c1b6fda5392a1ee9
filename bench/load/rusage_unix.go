//go:build unix

package main

import "syscall"

// contextSwitches returns how often this process has given up the CPU on
// its own (waiting) and been made to (preempted) so far.
func contextSwitches() (voluntary, involuntary int64, err error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, err
	}
	return int64(ru.Nvcsw), int64(ru.Nivcsw), nil
}
