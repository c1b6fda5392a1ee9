package main

import (
	"syscall"

	"github.com/mcsession/mcsession/internal/childproc"
)

// childAttr makes a child die with the cluster, even if the cluster itself
// is killed with SIGKILL and cannot clean up. Only Linux can do that (see
// childproc.Attr); elsewhere the cluster still stops its children on every
// exit it controls.
func childAttr() *syscall.SysProcAttr { return childproc.Attr() }
