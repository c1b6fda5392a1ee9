package mcsession

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// values behaves as a map whose keys come out sorted, under any sequence
// of sets and removes.
func TestValuesMatchAMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var vs values
	want := map[string]any{}
	for i := range 2000 {
		k := fmt.Sprintf("k%02d", r.IntN(40))
		switch r.IntN(3) {
		case 0, 1:
			vs.set(k, i)
			want[k] = i
		case 2:
			_, had := want[k]
			if got := vs.remove(k); got != had {
				t.Fatalf("step %d: remove(%q) = %v, want %v", i, k, got, had)
			}
			delete(want, k)
		}
		if len(vs) != len(want) {
			t.Fatalf("step %d: %d values, want %d", i, len(vs), len(want))
		}
	}
	for k, v := range want {
		if got, ok := vs.get(k); !ok || got != v {
			t.Errorf("get(%q) = %v, %v; want %v, true", k, got, ok, v)
		}
	}
	if _, ok := vs.get("absent"); ok {
		t.Errorf("get(absent) found a value")
	}
	if got, wantKeys := vs.keys(), slices.Sorted(maps.Keys(want)); !slices.Equal(got, wantKeys) {
		t.Errorf("keys() = %v, want %v (sorted)", got, wantKeys)
	}
	if !maps.Equal(vs.asMap(), want) {
		t.Errorf("asMap() = %v, want %v", vs.asMap(), want)
	}
	back := valuesOf(want)
	if !slices.EqualFunc(back, vs, func(a, b field) bool { return a.key == b.key && a.value == b.value }) {
		t.Errorf("valuesOf(map) = %v, want %v", back, vs)
	}
	if valuesOf(nil) != nil || valuesOf(map[string]any{}) != nil {
		t.Errorf("valuesOf(empty) is not nil")
	}
}

// The encoding of values does not depend on the order they were set in.
func TestEncodingIgnoresSetOrder(t *testing.T) {
	var a, b values
	for _, k := range []string{"b", "c", "a"} {
		a.set(k, k+"!")
	}
	for _, k := range []string{"a", "c", "b"} {
		b.set(k, k+"!")
	}
	ea, err1 := encodeGob(a)
	eb, err2 := encodeGob(b)
	if err1 != nil || err2 != nil || string(ea) != string(eb) {
		t.Errorf("encodings differ by set order: %q (%v) vs %q (%v)", ea, err1, eb, err2)
	}
}
