package mcsession

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSameValues(t *testing.T) {
	tags := []string{"a", "b", "c"}
	now := time.Now()
	tests := []struct {
		name string
		snap values // taken with snapshot
		cur  values
		want bool
	}{
		{"identical", values{{"n", 1}, {"tags", tags}}, values{{"n", 1}, {"tags", tags}}, true},
		{"item changed in place", values{{"tags", tags}}, values{{"tags", []string{"a", "x", "c"}}}, false},
		{"equal item, other bytes", values{{"tags", tags}}, values{{"tags", []string{"a", strings.Clone("b"), "c"}}}, true},
		{"longer", values{{"tags", tags}}, values{{"tags", []string{"a", "b", "c", "d"}}}, false},
		{"nil and empty", values{{"tags", []string(nil)}}, values{{"tags", []string{}}}, true},
		{"scalar changed", values{{"n", 1}}, values{{"n", 2}}, false},
		{"scalar type changed", values{{"n", 1}}, values{{"n", int64(1)}}, false},
		{"slice became string", values{{"tags", tags}}, values{{"tags", "a"}}, false},
		{"string became slice", values{{"tags", "a"}}, values{{"tags", []string{"a"}}}, false},
		{"key renamed", values{{"a", 1}}, values{{"b", 1}}, false},
		{"key added", values{{"a", 1}}, values{{"a", 1}, {"b", 2}}, false},
		{"NaN is never the same", values{{"f", math.NaN()}}, values{{"f", math.NaN()}}, false},
		{"time", values{{"t", now}}, values{{"t", now}}, true},
		{"pointer", values{{"tags", tags}}, values{{"tags", &cart{}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := snapshot(tt.snap)
			require.NotNil(t, snap, "snapshot(%v) = nil, want a copy", tt.snap)
			got := sameValues(snap, tt.cur)
			assert.Equal(t, tt.want, got, "sameValues(snapshot(%v), %v) = %t, want %t", tt.snap, tt.cur, got, tt.want)
		})
	}
}

func TestSnapshot(t *testing.T) {
	t.Run("copies slices", func(t *testing.T) {
		tags := []string{"a", "b"}
		vs := values{{"tags", tags}}
		snap := snapshot(vs)
		require.NotNil(t, snap, "snapshot(%v) = nil, want a copy", vs)
		tags[1] = "changed in place"
		assert.False(t, sameValues(snap, vs), "sameValues after an in-place change = true, want false: the snapshot shares the slice")
	})
	for _, v := range []any{&cart{}, map[string]string{"a": "b"}, []byte("ab"), []int{1}, struct{ A int }{1}} {
		got := snapshot(values{{"s", "x"}, {"v", v}})
		assert.Nil(t, got, "snapshot with a %T = %v, want nil (fingerprinted instead)", v, got)
	}
	got := snapshot(nil)
	assert.Nil(t, got, "snapshot(nil) = %v, want nil", got)
}

// BenchmarkSnapshot takes a snapshot of a session and compares the session
// with it, as the in-place check does after a read: a cart of 50 items with
// two scalars, and one of the small numeric kinds.
func BenchmarkSnapshot(b *testing.B) {
	items := make([]string, 50)
	for i := range items {
		items[i] = strings.Repeat(string(rune('a'+i%26)), 40)
	}
	for _, s := range []struct {
		name   string
		values values
	}{
		{"cart", valuesOf(map[string]any{"cart": items, "user": "ada", "n": 42})},
		{"small", valuesOf(map[string]any{"age": int8(42), "port": uint16(8080), "ratio": float32(0.5), "user": "ada"})},
	} {
		b.Run(s.name+"/take", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				snapshot(s.values)
			}
		})
		b.Run(s.name+"/compare", func(b *testing.B) {
			snap := snapshot(s.values)
			require.NotNil(b, snap, "snapshot(%v) = nil, want a copy", s.values)
			b.ReportAllocs()
			for b.Loop() {
				if !sameValues(snap, s.values) {
					b.Fatalf("sameValues(snapshot(v), v) = false, want true")
				}
			}
		})
	}
}
