package childproc

import "syscall"

// Attr returns the attributes for exec.Cmd.SysProcAttr that make the kernel
// SIGKILL the child when its parent dies, so a crashed, interrupted or
// SIGKILLed parent leaves no server behind. Each call returns a new value,
// which the caller may change.
//
// The signal fires when the OS thread that started the child exits, not
// only the process. Go keeps its threads alive unless a goroutine exits
// while locked with runtime.LockOSThread, so start children from goroutines
// that never do.
func Attr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
