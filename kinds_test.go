package mcsession

import (
	"fmt"
	"hash/maphash"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kindSamples returns two different values of every plain kind, extremes
// where the kind has them.
func kindSamples() map[kind][2]any {
	return map[kind][2]any{
		kindString:     {"", "ada"},
		kindBytes:      {[]byte{}, []byte{0, 0xff}},
		kindBool:       {false, true},
		kindInt:        {math.MinInt, math.MaxInt},
		kindInt8:       {int8(math.MinInt8), int8(math.MaxInt8)},
		kindInt16:      {int16(math.MinInt16), int16(math.MaxInt16)},
		kindInt32:      {int32(math.MinInt32), int32(math.MaxInt32)},
		kindInt64:      {int64(math.MinInt64), int64(math.MaxInt64)},
		kindUint:       {uint(0), uint(math.MaxUint)},
		kindUint8:      {uint8(0), uint8(math.MaxUint8)},
		kindUint16:     {uint16(1), uint16(math.MaxUint16)},
		kindUint32:     {uint32(1), uint32(math.MaxUint32)},
		kindUint64:     {uint64(1), uint64(math.MaxUint64)},
		kindUintptr:    {uintptr(0), ^uintptr(0)},
		kindFloat32:    {float32(-1.5), float32(math.MaxFloat32)},
		kindFloat64:    {math.SmallestNonzeroFloat64, math.Inf(-1)},
		kindComplex64:  {complex64(complex(1, -2)), complex64(complex(0, math.MaxFloat32))},
		kindComplex128: {complex(-0.5, 2), complex(math.MaxFloat64, math.Inf(1))},
		kindStrings:    {[]string{}, []string{"a", ""}},
		kindStringMap:  {map[string]string{}, map[string]string{"a": "1", "b": ""}},
		kindTime:       {time.Date(2026, 11, 21, 12, 0, 0, 5, time.UTC), time.Unix(0, 0).UTC()},
	}
}

// TestKindsAgree walks every kind of the table through its four users:
// mutable, the compact form, the fingerprint and the snapshot. They must
// all treat a value as the table says.
func TestKindsAgree(t *testing.T) {
	samples := kindSamples()
	require.Len(t, samples, int(numKinds)-1, "kindSamples has %d kinds, want every plain kind (%d)", len(samples), numKinds-1)
	seed := maphash.MakeSeed()
	hashes := map[uint64]string{} // fingerprint -> the sample it came from
	for k := kindOther + 1; k < numKinds; k++ {
		pair, ok := samples[k]
		require.True(t, ok, "kindSamples has no values of kind %d, want two", k)
		for i, v := range pair {
			name := fmt.Sprintf("%T/%d", v, i)
			t.Run(name, func(t *testing.T) {
				require.Equal(t, k, kindOf(v), "kindOf(%T) = %d, want %d", v, kindOf(v), k)
				vs := values{{"v", v}}

				assert.Equal(t, !k.scalar(), mutable(v), "mutable(%T) = %t, want %t: scalar kinds cannot change in place", v, mutable(v), !k.scalar())

				b, ok := appendCompact(nil, vs)
				require.True(t, ok, "appendCompact(%T) ok = false, want the compact form for a plain kind", v)
				got, err := decodeCompact(b)
				require.NoError(t, err, "decodeCompact(appendCompact(%T)) error = %v, want nil", v, err)
				assert.IsType(t, v, got["v"], "decodeCompact(appendCompact(%T)) = %T, want the same type", v, got["v"])
				assert.Equal(t, v, got["v"], "decodeCompact(appendCompact(%#v)) = %#v, want the value back", v, got["v"])
				again, ok := appendCompact(nil, valuesOf(got))
				require.True(t, ok, "appendCompact(decoded %T) ok = false, want true", v)
				assert.Equal(t, b, again, "appendCompact(decoded %T) = %x, want %x: a round trip keeps the bytes", v, again, b)

				h, ok := fingerprint(seed, vs)
				require.True(t, ok, "fingerprint(%T) ok = false, want a hash for a plain kind", v)
				other, dup := hashes[h]
				assert.False(t, dup, "fingerprint(%s) = fingerprint(%s), want them different: the hash covers the kind and the value", name, other)
				hashes[h] = name

				snap := snapshot(vs)
				if k == kindStrings || k.scalar() {
					require.NotNil(t, snap, "snapshot(%T) = nil, want a copy", v)
					assert.True(t, sameValues(snap, vs), "sameValues(snapshot(%#v), itself) = false, want true", v)
					changed := values{{"v", pair[1-i]}}
					assert.False(t, sameValues(snap, changed), "sameValues(snapshot(%#v), %#v) = true, want false", v, pair[1-i])
				} else {
					assert.Nil(t, snap, "snapshot(%T) = %v, want nil: the kind is fingerprinted instead", v, snap)
				}
			})
		}
	}
}

// Values that are not of a plain kind are left to reflection, gob and the
// hash of their encoding, even when defined from a plain type.
func TestKindOther(t *testing.T) {
	type userID string
	for _, v := range []any{nil, userID("u1"), point{1, 2}, &cart{}, []int{1}, map[string]int{}, [2]byte{}} {
		assert.Equal(t, kindOther, kindOf(v), "kindOf(%T) = %d, want kindOther", v, kindOf(v))
		vs := values{{"s", "x"}, {"v", v}}
		_, ok := appendCompact(nil, vs)
		assert.False(t, ok, "appendCompact(with a %T) ok = true, want false: gob encodes it", v)
		_, ok = fingerprint(maphash.MakeSeed(), vs)
		assert.False(t, ok, "fingerprint(with a %T) ok = true, want false: its encoding is hashed", v)
		assert.Nil(t, snapshot(vs), "snapshot(with a %T) = %v, want nil", v, snapshot(vs))
	}
	assert.False(t, kindOther.scalar(), "kindOther.scalar() = true, want false")
	assert.False(t, numKinds.scalar(), "numKinds.scalar() = true, want false: it is no kind")
}

// TestKindTagsAreStable pins each kind's tag in the compact form. Stored
// sessions hold these numbers: a kind may be added, never renumbered.
func TestKindTagsAreStable(t *testing.T) {
	tags := []struct {
		v   any
		tag byte
	}{
		{"", 1}, {[]byte{}, 2}, {false, 3}, {0, 4}, {int64(0), 5}, {int32(0), 6}, {uint(0), 7},
		{uint64(0), 8}, {0.0, 9}, {[]string{}, 10}, {map[string]string{}, 11}, {time.Time{}, 12},
		{int8(0), 13}, {int16(0), 14}, {uint8(0), 15}, {uint16(0), 16}, {uint32(0), 17},
		{uintptr(0), 18}, {float32(0), 19}, {complex64(0), 20}, {complex128(0), 21},
	}
	require.Len(t, tags, int(numKinds)-1, "%d tags pinned, want one per plain kind (%d)", len(tags), numKinds-1)
	for _, tt := range tags {
		b, ok := appendCompact(nil, values{{"k", tt.v}})
		require.True(t, ok, "appendCompact(%T) ok = false, want the compact form", tt.v)
		// marker, count, key length, key, tag
		require.Greater(t, len(b), 4, "appendCompact(%T) = %x, too short to hold a tag", tt.v, b)
		assert.Equal(t, tt.tag, b[4], "appendCompact(%T) tag = %d, want %d as in stored sessions", tt.v, b[4], tt.tag)
	}
}
