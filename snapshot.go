package mcsession

import (
	"slices"
	"time"
)

// snapshot returns a copy of vs that sameValues can compare with later
// values: the values themselves for immutable kinds, a copy of the slice for
// a []string (its strings are shared, not copied). It returns nil if a
// value is of any other kind: such sessions are always fingerprinted.
func snapshot(vs values) values {
	if len(vs) == 0 {
		return nil
	}
	for _, f := range vs {
		if _, ok := f.value.([]string); !ok && !comparableScalar(f.value) {
			return nil
		}
	}
	out := make(values, len(vs))
	for i, f := range vs {
		if v, ok := f.value.([]string); ok {
			f.value = slices.Clone(v)
		}
		out[i] = f
	}
	return out
}

// sameValues reports whether vs holds exactly the values of snap, a
// snapshot: the same keys, and values equal by ==, a []string item by item.
// Equal strings that share their bytes compare without reading them.
func sameValues(snap, vs values) bool {
	if len(snap) != len(vs) {
		return false
	}
	for i, f := range vs {
		if f.key != snap[i].key {
			return false
		}
		switch v := f.value.(type) {
		case []string:
			w, ok := snap[i].value.([]string)
			if !ok || !slices.Equal(v, w) {
				return false
			}
		default:
			// A snapshot holds only []string and comparable scalars, so
			// == cannot panic: different dynamic types are simply unequal.
			if !comparableScalar(v) || f.value != snap[i].value {
				return false
			}
		}
	}
	return true
}

// comparableScalar reports whether v is of a kind that is immutable and
// compares with ==.
func comparableScalar(v any) bool {
	switch v.(type) {
	case string, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64,
		uintptr, float32, float64, complex64, complex128, time.Time:
		return true
	}
	return false
}
