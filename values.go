package mcsession

import (
	"slices"
	"strings"
)

// values are a session's values, sorted by key. A session holds a handful
// of values, so a sorted slice beats a map: one small allocation instead of
// a map's header and buckets (a third of the memory of an idle session),
// fewer objects for the garbage collector to visit on every cycle, lookups
// by binary search without hashing, and keys already in the order the
// encodings want. A session without values holds none (nil).
type values []field

// field is one value and its key.
type field struct {
	key   string
	value any
}

// index returns the position of key, or where it would go, and whether it
// is there.
func (vs values) index(key string) (int, bool) {
	return slices.BinarySearchFunc(vs, key, func(f field, key string) int { return strings.Compare(f.key, key) })
}

// get returns the value under key.
func (vs values) get(key string) (any, bool) {
	if i, ok := vs.index(key); ok {
		return vs[i].value, true
	}
	return nil, false
}

// set stores v under key.
func (vs *values) set(key string, v any) {
	i, ok := vs.index(key)
	if ok {
		(*vs)[i].value = v
		return
	}
	*vs = slices.Insert(*vs, i, field{key, v})
}

// remove deletes key and reports whether it was there.
func (vs *values) remove(key string) bool {
	i, ok := vs.index(key)
	if ok {
		*vs = slices.Delete(*vs, i, i+1)
	}
	return ok
}

// keys returns the keys, sorted.
func (vs values) keys() []string {
	keys := make([]string, len(vs))
	for i, f := range vs {
		keys[i] = f.key
	}
	return keys
}

// asMap returns the values as a map, for a Transcoder.
func (vs values) asMap() map[string]any {
	m := make(map[string]any, len(vs))
	for _, f := range vs {
		m[f.key] = f.value
	}
	return m
}

// valuesOf returns m's values, sorted, or nil if m is empty.
func valuesOf(m map[string]any) values {
	if len(m) == 0 {
		return nil
	}
	vs := make(values, 0, len(m))
	for k, v := range m {
		vs = append(vs, field{k, v})
	}
	slices.SortFunc(vs, func(a, b field) int { return strings.Compare(a.key, b.key) })
	return vs
}
