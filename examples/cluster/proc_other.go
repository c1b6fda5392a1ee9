//go:build !linux

package main

import "syscall"

// childAttr returns nil: only Linux can tie a child's life to its parent.
// The cluster still stops its children on every exit it controls.
func childAttr() *syscall.SysProcAttr { return nil }
