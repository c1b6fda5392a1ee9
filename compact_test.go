package mcsession

import (
	"fmt"
	"hash/maphash"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCompactRoundTrip(t *testing.T) {
	when := time.Date(2026, 11, 21, 12, 0, 0, 123, time.FixedZone("X", 3600))
	values := map[string]any{
		"s": "text", "empty": "", "b": []byte{0, 1, 2}, "t": true, "f": false,
		"i": -42, "i64": int64(1 << 40), "i32": int32(-7), "u": uint(7), "u64": uint64(1 << 63),
		"fl": 3.25, "ss": []string{"a", "", "c"}, "ss0": []string{},
		"m": map[string]string{"z": "1", "a": "2"}, "when": when,
	}
	b, err := GobTranscoder{}.Encode(values)
	require.NoError(t, err, "Encode(plain values) error = %v, want nil", err)
	require.NotEmpty(t, b, "Encode(plain values) = no bytes, want the compact form")
	require.Equal(t, byte(compactMarker), b[0], "Encode(plain values)[0] = %#x, want the compact marker: every value has a plain kind", b[0])
	got, err := GobTranscoder{}.Decode(b)
	require.NoError(t, err, "Decode(Encode(v)) error = %v, want nil", err)
	gotWhen, ok := got["when"].(time.Time)
	require.True(t, ok, "Decode(Encode(v))[when] = %T, want time.Time", got["when"])
	assert.True(t, when.Equal(gotWhen), "Decode(Encode(v))[when] = %v, want %v", gotWhen, when)
	delete(got, "when")
	delete(values, "when")
	assert.Equal(t, values, got, "Decode(Encode(v)) = %#v, want v with the same types", got)
	again, err := GobTranscoder{}.Encode(got)
	require.NoError(t, err, "Encode(Decode(Encode(v))) error = %v, want nil", err)
	b2, err := GobTranscoder{}.Encode(values)
	require.NoError(t, err, "Encode(v) error = %v, want nil", err)
	assert.Equal(t, b2, again, "Encode(Decode(Encode(v))) = %x, want Encode(v) = %x: equal values encode to equal bytes", again, b2)
}

func TestCompactFallsBackToGob(t *testing.T) {
	for name, v := range map[string]any{
		"struct pointer": &cart{Items: []string{"x"}},
		"[]int":          []int{1},
	} {
		t.Run(name, func(t *testing.T) {
			b, err := GobTranscoder{}.Encode(map[string]any{"k": v, "s": "x"})
			require.NoError(t, err, "Encode(%T) error = %v, want nil", v, err)
			require.NotEmpty(t, b, "Encode(%T) = no bytes, want gob", v)
			assert.NotEqual(t, byte(compactMarker), b[0], "Encode(%T)[0] = the compact marker, want gob: the compact form has no kind for %T", v, v)
			got, err := GobTranscoder{}.Decode(b)
			require.NoError(t, err, "Decode(Encode(%T)) error = %v, want nil", v, err)
			assert.Equal(t, "x", got["s"], "Decode(Encode(%T))[s] = %#v, want \"x\"", v, got["s"])
		})
	}
}

func TestCompactRejectsCorruption(t *testing.T) {
	good, err := GobTranscoder{}.Encode(map[string]any{"cart": []string{"a", "b"}, "n": 3})
	require.NoError(t, err, "Encode(plain values) error = %v, want nil", err)
	require.Equal(t, byte(compactMarker), good[0], "Encode(plain values)[0] = %#x, want the compact marker", good[0])
	for i := 1; i < len(good); i++ {
		_, err := decodeCompact(good[:i])
		assert.Error(t, err, "decodeCompact(truncated to %d of %d bytes) = nil error, want one", i, len(good))
	}
	for _, bad := range []string{
		"\x00\xff\xff\xff\xff\x0f",                       // a count far beyond the input
		"\x00\x01\x01k\x63",                              // unknown tag
		"\x00\x01\x01k\x03\x02",                          // bool that is not 0 or 1
		"\x00\x01\x01k\x01\x05ab",                        // string longer than the rest
		"\x00\x01\x01k\x01\x01a" + "extra",               // trailing bytes
		"\x00\x01\x01k\x06\xff\xff\xff\xff\x1f",          // int32 out of range
		"\x00\x01\x01k\x0c\x01x",                         // bad time
		"\x00\x01\x01k\x00",                              // tag 0: kindOther has no tag
		"\x00\x01\x01k\x16",                              // the tag after the last kind
		"\x00\x01\x01k\x0d\x80\x02",                      // int8 out of range (128)
		"\x00\x01\x01k\x0e\x80\xf1\x04",                  // int16 out of range (40000)
		"\x00\x01\x01k\x0f\x80\x02",                      // uint8 out of range (256)
		"\x00\x01\x01k\x10\x80\x80\x04",                  // uint16 out of range (65536)
		"\x00\x01\x01k\x11\x80\x80\x80\x80\x10",          // uint32 out of range (1<<32)
		"\x00\x01\x01k\x13\x00\x00\x00",                  // float32 of 3 bytes
		"\x00\x01\x01k\x09\x00\x00\x00\x00",              // float64 of 4 bytes
		"\x00\x01\x01k\x14\x00\x00\x00\x00",              // complex64 without its imaginary part
		"\x00\x01\x01k\x15" + strings.Repeat("\x00", 15), // complex128 a byte short
	} {
		_, err := decodeCompact([]byte(bad))
		assert.Error(t, err, "decodeCompact(%q) = nil error, want one", bad)
	}
}

// FuzzDecodeCompact checks that decodeCompact never panics on stored
// bytes, and that what it decodes encodes again to bytes that decode to the
// same encoding: one canonical form per session.
func FuzzDecodeCompact(f *testing.F) {
	for _, pair := range kindSamples() {
		for _, v := range pair {
			b, ok := appendCompact(nil, values{{"k", v}})
			require.True(f, ok, "appendCompact(%T) ok = false, want a seed", v)
			f.Add(b)
		}
	}
	all, ok := appendCompact(nil, kindSession())
	require.True(f, ok, "appendCompact(one value of every kind) ok = false, want a seed")
	f.Add(all)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 || data[0] != compactMarker {
			return // GobTranscoder.Decode hands only these to decodeCompact
		}
		got, err := decodeCompact(data)
		if err != nil {
			return
		}
		b, ok := appendCompact(nil, valuesOf(got))
		require.True(t, ok, "appendCompact(decodeCompact(%q)) ok = false, want every decoded value encodable", data)
		again, err := decodeCompact(b)
		require.NoError(t, err, "decodeCompact(appendCompact(decodeCompact(%q))) error = %v, want nil", data, err)
		b2, ok := appendCompact(nil, valuesOf(again))
		require.True(t, ok, "appendCompact of the second decode ok = false, want true")
		assert.Equal(t, b, b2, "re-encoding %q gave %x, then %x, want one canonical form", data, b, b2)
	})
}

// kindSession returns a session holding one value of every plain kind.
func kindSession() values {
	var vs values
	for k, pair := range kindSamples() {
		vs.set(fmt.Sprintf("k%02d", k), pair[1])
	}
	return vs
}

func BenchmarkTranscoderCart(b *testing.B) {
	cart := map[string]any{"cart": []string{strings.Repeat("x", 64), strings.Repeat("y", 64), strings.Repeat("z", 64)}}
	gobOnly := map[string]any{"cart": &cart}
	for _, tc := range []struct {
		name   string
		values map[string]any
	}{{"compact", cart}, {"gob", gobOnly}} {
		b.Run(tc.name+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				GobTranscoder{}.Encode(tc.values)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	seed := maphash.MakeSeed()
	when := time.Unix(100, 5)
	base := func() map[string]any {
		return map[string]any{"cart": []string{"a", "b"}, "m": map[string]string{"x": "1", "y": "2"},
			"n": 1, "s": "str", "t": when, "ok": true, "f": 1.5, "raw": []byte("r")}
	}
	h0, ok := fingerprint(seed, valuesOf(base()))
	require.True(t, ok, "fingerprint(plain values) ok = false, want true")
	h, _ := fingerprint(seed, valuesOf(base()))
	require.Equal(t, h0, h, "fingerprint(v) = %x, then %x for equal values, want it stable", h0, h)
	changes := map[string]func(map[string]any){
		"slice element": func(v map[string]any) { v["cart"].([]string)[1] = "c" },
		"slice length":  func(v map[string]any) { v["cart"] = []string{"a", "b", ""} },
		"map value":     func(v map[string]any) { v["m"].(map[string]string)["x"] = "3" },
		"map key":       func(v map[string]any) { m := v["m"].(map[string]string); delete(m, "x"); m["z"] = "1" },
		"int":           func(v map[string]any) { v["n"] = 2 },
		"int type":      func(v map[string]any) { v["n"] = int64(1) },
		"string":        func(v map[string]any) { v["s"] = "stR" },
		"time":          func(v map[string]any) { v["t"] = when.Add(1) },
		"bool":          func(v map[string]any) { v["ok"] = false },
		"bytes":         func(v map[string]any) { v["raw"].([]byte)[0] = 'R' },
		"key renamed":   func(v map[string]any) { v["s2"] = v["s"]; delete(v, "s") },
		"key added":     func(v map[string]any) { v["new"] = "" },
		"split strings": func(v map[string]any) { v["cart"] = []string{"ab", ""} },
	}
	for name, change := range changes {
		v := base()
		change(v)
		h, ok := fingerprint(seed, valuesOf(v))
		assert.True(t, ok, "fingerprint after %s: ok = false, want true", name)
		assert.NotEqual(t, h0, h, "fingerprint after %s = %x, want a hash other than %x", name, h, h0)
	}
	_, ok = fingerprint(seed, valuesOf(map[string]any{"p": &cart{}}))
	assert.False(t, ok, "fingerprint(pointer value) ok = true, want false (its encoding is hashed instead)")
}

// benchSessions are the sessions the compact and fingerprint benchmarks
// use: a cart of three 64-byte items, a mix of the common kinds, and one of
// the small numeric kinds.
func benchSessions() []struct {
	name   string
	values values
} {
	return []struct {
		name   string
		values values
	}{
		{"cart", valuesOf(map[string]any{"cart": []string{strings.Repeat("x", 64), strings.Repeat("y", 64), strings.Repeat("z", 64)}})},
		{"mixed", valuesOf(map[string]any{
			"user": "ada", "n": 42, "admin": true, "price": 9.5, "tags": []string{"a", "b"},
			"since": time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC),
		})},
		{"small", valuesOf(map[string]any{"age": int8(42), "port": uint16(8080), "ratio": float32(0.5), "flags": uint8(3)})},
	}
}

// BenchmarkCompact encodes and decodes sessions as GobTranscoder does.
func BenchmarkCompact(b *testing.B) {
	for _, s := range benchSessions() {
		b.Run(s.name+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				encodeGob(s.values)
			}
		})
		b.Run(s.name+"/decode", func(b *testing.B) {
			enc, err := encodeGob(s.values)
			require.NoError(b, err, "encodeGob(%v) error", s.values)
			b.ReportAllocs()
			for b.Loop() {
				GobTranscoder{}.Decode(enc)
			}
		})
	}
}

// BenchmarkFingerprint hashes sessions as the in-place check does: their
// fingerprint, or for values it does not cover the hash of their encoding.
func BenchmarkFingerprint(b *testing.B) {
	seed := maphash.MakeSeed()
	for _, s := range benchSessions() {
		b.Run(s.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := fingerprint(seed, s.values); !ok {
					payload, _ := encodeGob(s.values)
					maphash.Bytes(seed, payload)
				}
			}
		})
	}
}
