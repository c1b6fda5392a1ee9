package proctest

import (
	"bytes"
	"sync"
)

// Buffer collects what a child process writes, as exec.Cmd's Stdout and
// Stderr, and may be read while the process still writes: exec copies a
// child's output from its own goroutine. The zero value is an empty Buffer
// ready to use; it is safe for concurrent use.
type Buffer struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

// Write appends p to the buffer. It never fails.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
