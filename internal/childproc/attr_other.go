//go:build !linux

package childproc

import "syscall"

// Attr returns nil: only Linux can tie a child's life to its parent's
// (Pdeathsig). Elsewhere a child outlives a parent that is killed before it
// can stop its children, and has to be stopped by hand.
func Attr() *syscall.SysProcAttr { return nil }
