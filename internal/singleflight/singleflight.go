// Package singleflight runs one call per key at a time and shares its
// result with every caller that asks for the same key meanwhile.
package singleflight

import "sync"

// Group runs calls by key. The zero value is ready to use; a Group is safe
// for concurrent use.
type Group[T any] struct {
	// mu guards calls.
	mu    sync.Mutex
	calls map[string]*call[T]
}

type call[T any] struct {
	done    chan struct{}
	res     T
	waiters int // callers sharing the call, besides its own; guarded by Group.mu
}

// Do runs fn and returns its result, unless a call for key is already
// running: then it waits for that call and returns its result. A panic in
// fn propagates to its own caller; callers that waited for it get T's zero
// value.
func (g *Group[T]) Do(key string, fn func() T) T {
	g.mu.Lock()
	if c, ok := g.calls[key]; ok {
		c.waiters++
		g.mu.Unlock()
		<-c.done
		return c.res
	}
	if g.calls == nil {
		g.calls = make(map[string]*call[T])
	}
	c := &call[T]{done: make(chan struct{})}
	g.calls[key] = c
	g.mu.Unlock()

	defer func() {
		g.mu.Lock()
		delete(g.calls, key)
		g.mu.Unlock()
		close(c.done)
	}()
	c.res = fn()
	return c.res
}

// Waiters returns how many callers wait for the running call for key,
// besides its own caller: for tests and diagnostics.
func (g *Group[T]) Waiters(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.calls[key]; ok {
		return c.waiters
	}
	return 0
}
