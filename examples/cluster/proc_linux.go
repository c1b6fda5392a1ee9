package main

import "syscall"

// childAttr makes a child die with the cluster, even if the cluster itself
// is killed with SIGKILL and cannot clean up.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
