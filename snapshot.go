package mcsession

import "slices"

// snapshot returns a copy of vs that sameValues can compare with later
// values: the values themselves for scalar kinds, a copy of the slice for
// a []string (its strings are shared, not copied). It returns nil if a
// value is of any other kind: such sessions are always fingerprinted.
func snapshot(vs values) values {
	if len(vs) == 0 {
		return nil
	}
	for _, f := range vs {
		if k := kindOf(f.value); k != kindStrings && !k.scalar() {
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
		switch k := kindOf(f.value); {
		case k == kindStrings:
			w, ok := snap[i].value.([]string)
			if !ok || !slices.Equal(f.value.([]string), w) {
				return false
			}
		case k.scalar():
			// A snapshot holds only []string and scalars, so == cannot
			// panic: different dynamic types are simply unequal.
			if f.value != snap[i].value {
				return false
			}
		default:
			return false
		}
	}
	return true
}
