//go:build !linux

package haproxy

import "syscall"

// sysProcAttr returns nil: Pdeathsig exists only on Linux. Children are
// still killed by t.Cleanup when the test ends normally.
func sysProcAttr() *syscall.SysProcAttr { return nil }
