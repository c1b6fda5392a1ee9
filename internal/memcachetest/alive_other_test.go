//go:build !unix

package memcachetest

import "os"

// processAlive reports whether pid is a running process, by asking the
// system for a handle on it, which Windows refuses once it is gone.
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}
