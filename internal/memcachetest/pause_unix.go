//go:build unix

package memcachetest

import (
	"os"
	"syscall"
)

// canPause reports whether Pause works here: Unix stops and continues a
// process with signals.
const canPause = true

// stopProcess sends SIGSTOP; the kernel stops every thread of p soon after
// (see waitStopState).
func stopProcess(p *os.Process) error { return p.Signal(syscall.SIGSTOP) }

// continueProcess sends SIGCONT, which lets a stopped p run again and does
// nothing to a running one.
func continueProcess(p *os.Process) error { return p.Signal(syscall.SIGCONT) }
