package mcsession

import (
	"math"
	"strings"
	"testing"
	"time"
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
			if snap == nil {
				t.Fatalf("snapshot(%v) = nil, want a copy", tt.snap)
			}
			if got := sameValues(snap, tt.cur); got != tt.want {
				t.Errorf("sameValues(snapshot(%v), %v) = %t, want %t", tt.snap, tt.cur, got, tt.want)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	t.Run("copies slices", func(t *testing.T) {
		tags := []string{"a", "b"}
		vs := values{{"tags", tags}}
		snap := snapshot(vs)
		tags[1] = "changed in place"
		if sameValues(snap, vs) {
			t.Errorf("sameValues after an in-place change = true, want false: the snapshot shares the slice")
		}
	})
	for _, v := range []any{&cart{}, map[string]string{"a": "b"}, []byte("ab"), []int{1}, struct{ A int }{1}} {
		if got := snapshot(values{{"s", "x"}, {"v", v}}); got != nil {
			t.Errorf("snapshot with a %T = %v, want nil (fingerprinted instead)", v, got)
		}
	}
	if got := snapshot(nil); got != nil {
		t.Errorf("snapshot(nil) = %v, want nil", got)
	}
}
