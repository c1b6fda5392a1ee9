//go:build linux

package haproxy

import "syscall"

// sysProcAttr asks the kernel to SIGKILL a child when the test binary dies,
// so an interrupted `go test` leaves no HAProxy or cart behind. Pdeathsig
// fires when the OS thread that started the child exits; Go keeps its
// threads unless a goroutine exits locked to one, which these tests never do.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
