// Package shardmap is a concurrent map from string keys to values, split into
// shards so that requests for different sessions rarely contend on one lock.
package shardmap

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
)

// shardCount is a power of two so a shard is picked with a mask. 64 shards
// keep lock contention negligible on machines with tens of cores while
// costing only a few kilobytes.
const shardCount = 64

// Map is a sharded map from string keys to values of type V.
// The zero value is not usable; create one with New. A Map is safe for
// concurrent use.
type Map[V any] struct {
	seed   maphash.Seed
	n      atomic.Int64 // keys in all shards, for Count
	shards [shardCount]shard[V]
}

type shard[V any] struct {
	// mu guards m.
	mu sync.RWMutex
	m  map[string]V
}

// New returns an empty Map.
func New[V any]() *Map[V] {
	m := &Map[V]{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].m = make(map[string]V)
	}
	return m
}

func (m *Map[V]) shard(key string) *shard[V] {
	return &m.shards[maphash.String(m.seed, key)&(shardCount-1)]
}

// Get returns the value stored under key and whether there was one.
func (m *Map[V]) Get(key string) (V, bool) {
	s := m.shard(key)
	s.mu.RLock()
	v, ok := s.m[key]
	s.mu.RUnlock()
	return v, ok
}

// LoadOrStore returns the value already stored under key, with loaded true,
// or stores v and returns it with loaded false.
func (m *Map[V]) LoadOrStore(key string, v V) (actual V, loaded bool) {
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.m[key]; ok {
		return old, true
	}
	s.m[key] = v
	m.n.Add(1)
	return v, false
}

// Set stores v under key, replacing any previous value.
func (m *Map[V]) Set(key string, v V) {
	s := m.shard(key)
	s.mu.Lock()
	if _, ok := s.m[key]; !ok {
		m.n.Add(1)
	}
	s.m[key] = v
	s.mu.Unlock()
}

// DeleteIf removes key only when remove reports true for its current value,
// and reports whether it removed it. It lets a caller remove a value without
// racing with a concurrent replacement of the same key.
func (m *Map[V]) DeleteIf(key string, remove func(V) bool) bool {
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok || !remove(v) {
		return false
	}
	delete(s.m, key)
	m.n.Add(-1)
	return true
}

// Count returns the number of keys without taking a lock: exact when no
// change is in progress.
func (m *Map[V]) Count() int { return int(m.n.Load()) }

// Sample calls f for up to k keys and values of one shard picked at random
// (the caller's random number r), in the order the shard's map yields them,
// until f returns false. It holds that shard's read lock, so f must not
// modify the Map.
func (m *Map[V]) Sample(r uint64, k int, f func(key string, v V) bool) {
	s := &m.shards[r%shardCount]
	s.mu.RLock()
	defer s.mu.RUnlock()
	for key, v := range s.m {
		if k == 0 || !f(key, v) {
			return
		}
		k--
	}
}

// Len returns the number of keys.
func (m *Map[V]) Len() int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += len(s.m)
		s.mu.RUnlock()
	}
	return n
}

// Range calls f for every key and value until f returns false. It holds one
// shard's read lock at a time, so f must not modify the Map; collect what to
// change and do it after Range returns. Keys added or removed during Range may
// or may not be seen.
func (m *Map[V]) Range(f func(key string, v V) bool) {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		for k, v := range s.m {
			if !f(k, v) {
				s.mu.RUnlock()
				return
			}
		}
		s.mu.RUnlock()
	}
}
