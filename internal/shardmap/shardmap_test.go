package shardmap

import (
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMapBasics(t *testing.T) {
	m := New[int]()
	_, ok := m.Get("a")
	require.False(t, ok, "Get(a) on an empty map found a value, want none")
	m.Set("a", 1)
	v, ok := m.Get("a")
	require.True(t, ok, "Get(a) after Set(a, 1) found nothing, want 1")
	require.Equal(t, 1, v, "Get(a) = %d, want 1", v)
	v, loaded := m.LoadOrStore("a", 2)
	require.True(t, loaded, "LoadOrStore(a, 2) stored, want it to load the 1 already there")
	require.Equal(t, 1, v, "LoadOrStore(a, 2) = %d, want the stored 1", v)
	v, loaded = m.LoadOrStore("b", 2)
	require.False(t, loaded, "LoadOrStore(b, 2) loaded, want it to store: b was absent")
	require.Equal(t, 2, v, "LoadOrStore(b, 2) = %d, want 2", v)
	require.Equal(t, 2, m.Len(), "Len() = %d, want 2", m.Len())

	require.False(t, m.DeleteIf("a", func(v int) bool { return v == 5 }), "DeleteIf(a, v==5) = true, want false: a holds 1")
	v, ok = m.Get("a")
	require.True(t, ok, "Get(a) after a refused DeleteIf found nothing, want 1 still there")
	require.Equal(t, 1, v, "Get(a) after a refused DeleteIf = %d, want 1", v)
	require.True(t, m.DeleteIf("a", func(v int) bool { return v == 1 }), "DeleteIf(a, v==1) = false, want true")
	_, ok = m.Get("a")
	require.False(t, ok, "Get(a) after DeleteIf removed it found a value, want none")
	require.False(t, m.DeleteIf("a", func(int) bool { return true }), "DeleteIf(a) on a missing key = true, want false")
	require.True(t, m.DeleteIf("b", func(int) bool { return true }), "DeleteIf(b, true) = false, want true")
	assert.Equal(t, 0, m.Len(), "Len() after deletes = %d, want 0", m.Len())
}

func TestMapRangeSeesEveryKey(t *testing.T) {
	m := New[int]()
	for i := range 1000 {
		m.Set(strconv.Itoa(i), i)
	}
	seen := make(map[string]bool)
	m.Range(func(k string, v int) bool {
		assert.Equal(t, strconv.Itoa(v), k, "Range gave %q => %d, want the key stored with that value", k, v)
		seen[k] = true
		return true
	})
	assert.Len(t, seen, 1000, "Range saw %d keys, want 1000", len(seen))
	n := 0
	m.Range(func(string, int) bool { n++; return n < 10 })
	assert.Equal(t, 10, n, "Range after returning false at 10 visited %d keys, want 10", n)
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
	assert.Equal(t, 8*250, m.Len(), "Len() = %d, want %d: each goroutine keeps the odd half of its keys", m.Len(), 8*250)
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

func TestCountAndSample(t *testing.T) {
	m := New[int]()
	for i := range 1000 {
		m.Set(string(rune('a'+i%26))+string(rune(i)), i)
	}
	m.Set("a"+string(rune(0)), 7) // a replacement: no new key
	m.LoadOrStore("new", 1)
	m.LoadOrStore("new", 2)
	if got, want := m.Count(), m.Len(); got != want || got != 1001 {
		t.Fatalf("Count() = %d, Len() = %d, want both 1001", got, want)
	}
	m.DeleteIf("new", func(int) bool { return true })
	m.DeleteIf("missing", func(int) bool { return true })
	if got := m.Count(); got != 1000 {
		t.Fatalf("Count() after a delete = %d, want 1000", got)
	}
	seen := 0
	for r := range uint64(shardCount) {
		m.Sample(r, 3, func(string, int) bool { seen++; return true })
	}
	if seen == 0 || seen > 3*shardCount {
		t.Fatalf("Sample of 3 in each of %d shards saw %d, want 1..%d", shardCount, seen, 3*shardCount)
	}
}
