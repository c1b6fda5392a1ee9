//go:build unix

package memcachetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
)

// processAlive reports whether pid is a running process. On Linux a zombie
// counts as gone (PID 1 in some containers never reaps orphans); other Unix
// systems are asked with signal 0, which counts a zombie as alive.
func processAlive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		i := bytes.LastIndexByte(stat, ')')
		return i < 0 || i+2 >= len(stat) || (stat[i+2] != 'Z' && stat[i+2] != 'X')
	}
	if runtime.GOOS == "linux" && errors.Is(err, os.ErrNotExist) {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}
