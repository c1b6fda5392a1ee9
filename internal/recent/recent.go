// Package recent is a bounded set of keys that forgets each key a fixed
// time after it was added: "seen recently" without unbounded memory.
package recent

import (
	"sync"
	"time"
)

// Set remembers up to a fixed number of keys, each for a fixed time. When
// full, adding a key forgets the oldest. Create it with New; a Set is safe
// for concurrent use.
type Set struct {
	ttl time.Duration

	// mu guards the fields below.
	mu    sync.Mutex
	until map[string]time.Time // key -> when it is forgotten
	order []string             // keys in the order added: a ring of cap(order)
	next  int                  // where the next key goes in order, once it is full
}

// New returns a Set of at most size keys, each remembered for ttl.
func New(size int, ttl time.Duration) *Set {
	return &Set{ttl: ttl, until: make(map[string]time.Time, size), order: make([]string, 0, size)}
}

// Add remembers key from now on, for the Set's ttl.
func (s *Set) Add(key string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.until[key]; !ok {
		if len(s.order) < cap(s.order) {
			s.order = append(s.order, key)
		} else {
			delete(s.until, s.order[s.next])
			s.order[s.next] = key
			s.next = (s.next + 1) % len(s.order)
		}
	}
	s.until[key] = now.Add(s.ttl)
}

// Has reports whether key was added less than ttl before now.
func (s *Set) Has(key string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.until[key]
	return ok && now.Before(t)
}

// Len returns how many keys the Set holds, forgotten ones not yet dropped
// included.
func (s *Set) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.until)
}
