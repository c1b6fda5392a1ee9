package shardmap

import (
	"strconv"
	"sync"
	"testing"
)

func TestMapBasics(t *testing.T) {
	m := New[int]()
	if _, ok := m.Get("a"); ok {
		t.Fatalf("Get(a) on empty map found a value")
	}
	m.Set("a", 1)
	if v, ok := m.Get("a"); !ok || v != 1 {
		t.Fatalf("Get(a) = %d, %v, want 1, true", v, ok)
	}
	if v, loaded := m.LoadOrStore("a", 2); !loaded || v != 1 {
		t.Fatalf("LoadOrStore(a, 2) = %d, %v, want 1, true", v, loaded)
	}
	if v, loaded := m.LoadOrStore("b", 2); loaded || v != 2 {
		t.Fatalf("LoadOrStore(b, 2) = %d, %v, want 2, false", v, loaded)
	}
	if n := m.Len(); n != 2 {
		t.Fatalf("Len() = %d, want 2", n)
	}
	if m.DeleteIf("a", func(v int) bool { return v == 5 }) {
		t.Fatalf("DeleteIf(a, v==5) removed a value of 1")
	}
	if !m.DeleteIf("a", func(v int) bool { return v == 1 }) {
		t.Fatalf("DeleteIf(a, v==1) = false, want true")
	}
	if !m.DeleteIf("b", func(int) bool { return true }) {
		t.Fatalf("DeleteIf(b, true) = false, want true")
	}
	if n := m.Len(); n != 0 {
		t.Fatalf("Len() after deletes = %d, want 0", n)
	}
}

func TestMapRangeSeesEveryKey(t *testing.T) {
	m := New[int]()
	for i := range 1000 {
		m.Set(strconv.Itoa(i), i)
	}
	seen := make(map[string]bool)
	m.Range(func(k string, v int) bool {
		if k != strconv.Itoa(v) {
			t.Errorf("Range gave %q => %d", k, v)
		}
		seen[k] = true
		return true
	})
	if len(seen) != 1000 {
		t.Fatalf("Range saw %d keys, want 1000", len(seen))
	}
	n := 0
	m.Range(func(string, int) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("Range after returning false at 10 visited %d keys", n)
	}
}

func TestMapConcurrent(t *testing.T) {
	m := New[int]()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				k := strconv.Itoa(g*1000 + i)
				m.Set(k, i)
				m.Get(k)
				if i%2 == 0 {
					m.DeleteIf(k, func(int) bool { return true })
				}
			}
		}()
	}
	wg.Wait()
	if n := m.Len(); n != 8*250 {
		t.Fatalf("Len() = %d, want %d", n, 8*250)
	}
}

func BenchmarkMapGet(b *testing.B) {
	m := New[int]()
	for i := range 10000 {
		m.Set(strconv.Itoa(i), i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			m.Get(strconv.Itoa(i % 10000))
			i++
		}
	})
}
