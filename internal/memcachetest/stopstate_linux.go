//go:build linux

package memcachetest

import (
	"bytes"
	"os"
	"strconv"
	"time"
)

// waitStopState polls /proc until the process is stopped (want true) or no
// longer stopped (want false), or the deadline passes. kill(2) only queues
// SIGSTOP; without this a request sent right after Pause could still be
// served by a thread that had not yet reached the stop.
func waitStopState(pid int, want bool, deadline time.Time) bool {
	for {
		stopped, ok := procStopped(pid)
		if !ok || stopped == want {
			return ok
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// procStopped reports whether every thread of pid is in state T (stopped).
// ok is false when the process is gone.
func procStopped(pid int) (stopped, ok bool) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false, false
	}
	for _, task := range tasks {
		stat, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			continue // the thread exited between ReadDir and ReadFile
		}
		// The state follows the command name, which is in parentheses and
		// may itself contain spaces and parentheses.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 || i+2 >= len(stat) {
			return false, false
		}
		if state := stat[i+2]; state != 'T' && state != 't' {
			return false, true
		}
	}
	return true, true
}
