package mcsession

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
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
			got := vs.remove(k)
			require.Equal(t, had, got, "step %d: remove(%q) = %t, want %t", i, k, got, had)
			delete(want, k)
		}
		require.Len(t, vs, len(want), "step %d: %d values, want %d, as many as the map holds", i, len(vs), len(want))
	}
	for k, v := range want {
		got, ok := vs.get(k)
		assert.True(t, ok, "get(%q) found nothing, want %v", k, v)
		assert.Equal(t, v, got, "get(%q) = %v, want %v", k, got, v)
	}
	_, ok := vs.get("absent")
	assert.False(t, ok, "get(absent) found a value, want none")
	wantKeys := slices.Sorted(maps.Keys(want))
	assert.Equal(t, wantKeys, vs.keys(), "keys() = %v, want %v (sorted)", vs.keys(), wantKeys)
	assert.Equal(t, want, vs.asMap(), "asMap() = %v, want %v", vs.asMap(), want)
	back := valuesOf(want)
	assert.True(t, slices.EqualFunc(back, vs, func(a, b field) bool { return a.key == b.key && a.value == b.value }),
		"valuesOf(map) = %v, want %v", back, vs)
	assert.Nil(t, valuesOf(nil), "valuesOf(nil) = %v, want nil", valuesOf(nil))
	assert.Nil(t, valuesOf(map[string]any{}), "valuesOf(empty map) = %v, want nil", valuesOf(map[string]any{}))
}

// Equal sessions are stored as equal bytes, whatever order their values
// were set in: the Manager compares stored bytes to skip writes, so an
// order-dependent encoding would cost a write per request. Both the
// compact form and gob are checked.
func TestStoredBytesIgnoreSetOrder(t *testing.T) {
	srv := memcachetest.Start(t)
	m := newTestManager(t, Config{Nodes: nodesOf(srv)})
	orders := [][]string{{"b", "c", "a"}, {"a", "c", "b"}, {"c", "b", "a"}, {"a", "b", "c", "-a", "a"}}
	forms := []struct {
		name  string
		value func(k string) any
	}{
		{"compact", func(k string) any { return []string{k, k + "!"} }},
		{"gob", func(k string) any { return &cart{Items: []string{k}} }},
	}
	for _, form := range forms {
		t.Run(form.name, func(t *testing.T) {
			payloads := make([][]byte, len(orders))
			for i, order := range orders {
				rec := serveSession(m, "", func(s *Session) {
					for _, k := range order {
						if k[0] == '-' {
							s.Delete(k[1:])
						} else {
							s.Set(k, form.value(k))
						}
					}
				})
				id := setCookieValue(t, rec.Result().Header)
				waitIdle(t, m)
				blob, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, id))
				require.NoError(t, err, "memcached get of session %s: error = %v, want nil", id, err)
				require.True(t, found, "memcached get of session %s: miss, want its backup", id)
				_, payload, err := decodeEnvelope(blob, id)
				require.NoError(t, err, "decodeEnvelope(backup of %s) error = %v, want nil", id, err)
				payloads[i] = payload
			}
			isCompact := payloads[0][0] == compactMarker
			assert.Equal(t, form.name == "compact", isCompact, "stored payload[0] = %#x, want the %s form", payloads[0][0], form.name)
			for i := 1; i < len(orders); i++ {
				assert.Equal(t, payloads[0], payloads[i], "payload after sets in order %v = %x, want %x as after order %v",
					orders[i], payloads[i], payloads[0], orders[0])
			}
		})
	}
}
