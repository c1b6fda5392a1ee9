//go:build !unix

package memcachetest

import (
	"errors"
	"os"
	"runtime"
)

// canPause reports whether Pause works here: only Unix can stop a process
// and continue it later.
const canPause = false

// errPauseUnsupported is what Pause and Resume report here.
var errPauseUnsupported = errors.New("pausing memcached needs a Unix system (SIGSTOP and SIGCONT), not " + runtime.GOOS)

// stopProcess returns errPauseUnsupported.
func stopProcess(*os.Process) error { return errPauseUnsupported }

// continueProcess returns errPauseUnsupported.
func continueProcess(*os.Process) error { return errPauseUnsupported }
