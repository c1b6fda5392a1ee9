package mcsession

import (
	"bytes"
	"context"
	"encoding/gob"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// point is a registered value type without pointers.
type point struct{ X, Y int }

// unregistered is never registered with gob.
type unregistered struct{ A int }

func init() { gob.Register(point{}) }

func TestGobTranscoderRoundTrip(t *testing.T) {
	values := map[string]any{
		"string": "hello",
		"empty":  "",
		"int":    42,
		"zero":   0,
		"false":  false,
		"float":  1.5,
		"bytes":  []byte{1, 2, 3},
		"time":   time.Date(2024, 5, 6, 7, 8, 9, 10, time.UTC),
		"cart":   &cart{Items: []string{"a", "b"}},
		"point":  point{1, 2},
		"":       "empty key",
	}
	var gt GobTranscoder
	b, err := gt.Encode(values)
	require.NoError(t, err, "Encode(%v) error = %v, want nil", values, err)
	got, err := gt.Decode(b)
	require.NoError(t, err, "Decode(Encode(%v)) error = %v, want nil", values, err)
	assert.Equal(t, values, got, "Decode(Encode(v)) = %#v, want v with the same types", got)

	empty, err := gt.Encode(map[string]any{})
	require.NoError(t, err, "Encode({}) error = %v, want nil", err)
	got, err = gt.Decode(empty)
	require.NoError(t, err, "Decode(Encode({})) error = %v, want nil", err)
	assert.NotNil(t, got, "Decode(Encode({})) = nil, want an empty map")
	assert.Empty(t, got, "Decode(Encode({})) = %#v, want an empty map", got)
}

func TestGobTranscoderDeterministic(t *testing.T) {
	values := make(map[string]any)
	for i := range 50 {
		values[strings.Repeat("k", i+1)] = i
	}
	values["cart"] = &cart{Items: []string{"x"}}
	var gt GobTranscoder
	first, err := gt.Encode(values)
	require.NoError(t, err, "Encode(values) error = %v, want nil", err)
	for i := range 20 {
		b, err := gt.Encode(values)
		require.NoError(t, err, "Encode(values) #%d error = %v, want nil", i+2, err)
		require.Equal(t, first, b, "Encode(values) #%d = %x, want %x as the first time: map order must not show", i+2, b, first)
	}
}

func TestGobTranscoderErrors(t *testing.T) {
	var gt GobTranscoder
	_, err := gt.Encode(map[string]any{"x": unregistered{1}})
	if assert.Error(t, err, "Encode(unregistered type) error = nil, want one") {
		assert.Contains(t, err.Error(), "gob.Register", "Encode(unregistered type) error = %v, want one that mentions gob.Register", err)
	}
	var other bytes.Buffer
	require.NoError(t, gob.NewEncoder(&other).Encode("a plain string"), "gob encoding of a plain string")
	good, err := gt.Encode(map[string]any{"a": "b"})
	require.NoError(t, err, "Encode({a: b}) error = %v, want nil", err)
	for _, in := range [][]byte{nil, {}, []byte("garbage"), other.Bytes(), good[:len(good)-1], {0xff, 0xff, 0xff, 0xff, 0xff}} {
		v, err := gt.Decode(in)
		assert.Error(t, err, "Decode(%q) = %v, nil, want an error", in, v)
	}
}

func TestJSONTranscoder(t *testing.T) {
	var jt JSONTranscoder
	b, err := jt.Encode(map[string]any{"s": "hi", "n": 3, "cart": &cart{Items: []string{"a"}}})
	require.NoError(t, err, "Encode(values) error = %v, want nil", err)
	want := `{"cart":{"Items":["a"]},"n":3,"s":"hi"}`
	assert.Equal(t, want, string(b), "Encode(values) = %s, want %s (keys sorted)", b, want)
	values, err := jt.Decode(b)
	require.NoError(t, err, "Decode(%s) error = %v, want nil", b, err)
	// Encoding what was decoded, before any typed Get, gives the same bytes.
	again, err := jt.Encode(values)
	require.NoError(t, err, "Encode(Decode(%s)) error = %v, want nil", b, err)
	assert.Equal(t, string(b), string(again), "Encode(Decode(%s)) = %s, want the same bytes: untyped values keep their JSON", b, again)
	for _, in := range []string{"null x", "[1,2]", `"s"`, "{", `{"a":}`} {
		v, err := jt.Decode([]byte(in))
		assert.Error(t, err, "Decode(%q) = %v, nil, want an error", in, v)
	}
	_, err = jt.Encode(map[string]any{"ch": make(chan int)})
	assert.Error(t, err, "Encode(chan) error = nil, want one: encoding/json cannot encode a channel")
}

// TestJSONValueGet checks how loaded JSON values come out of a session:
// typed by Get[T], as encoding/json's interface form by Session.Get.
func TestJSONValueGet(t *testing.T) {
	m := newTestManager(t, Config{Transcoder: JSONTranscoder{}})
	values, err := JSONTranscoder{}.Decode([]byte(`{"cart":{"Items":["x","y"]},"n":7,"s":"str"}`))
	require.NoError(t, err, "JSONTranscoder.Decode error = %v, want nil", err)
	serveSession(m, "", func(s *Session) {
		s.Set("seed", true)
		s.mu.Lock()
		s.e.values = valuesOf(values) // as a takeover leaves them
		s.mu.Unlock()
		got := s.Get("cart")
		assert.Equal(t, map[string]any{"Items": []any{"x", "y"}}, got, `Get("cart") = %#v, want the JSON object as a map`, got)
		n, ok := Get[int](s, "s")
		assert.False(t, ok, `Get[int]("s") = %v, true, want false: "str" is no int`, n)
		str, ok := Get[string](s, "s")
		assert.True(t, ok, `Get[string]("s") ok = false, want true`)
		assert.Equal(t, "str", str, `Get[string]("s") = %q, want "str"`, str)
		n, ok = Get[int](s, "n")
		assert.True(t, ok, `Get[int]("n") ok = false, want true`)
		assert.Equal(t, 7, n, `Get[int]("n") = %v, want 7`, n)
		c, ok := Get[*cart](s, "cart")
		require.True(t, ok, `Get[*cart]("cart") ok = false, want true`)
		require.Equal(t, []string{"x", "y"}, c.Items, `Get[*cart]("cart") = %+v, want [x y]`, c)
		// The typed value replaced the JSON: later Gets share it.
		c2, ok := Get[*cart](s, "cart")
		assert.True(t, ok, `second Get[*cart]("cart") ok = false, want true`)
		assert.Same(t, c, c2, `second Get[*cart]("cart") = %p, want the same *cart %p`, c2, c)
	})
}

func TestMutable(t *testing.T) {
	tests := []struct {
		v    any
		want bool
	}{
		{nil, false},
		{"s", false},
		{42, false},
		{3.5, false},
		{time.Now(), false},
		{point{1, 2}, false},
		{[2]int{1, 2}, false},
		{struct{ T time.Time }{}, false},
		{&cart{}, true},
		{cart{}, true},
		{[]string{"a"}, true},
		{map[string]int{}, true},
		{[1][]int{}, true},
		{struct{ A any }{}, true},
		{jsonValue(`{}`), true},
		{make(chan int), true},
	}
	for _, tt := range tests {
		got := mutable(tt.v)
		assert.Equal(t, tt.want, got, "mutable(%T) = %t, want %t", tt.v, got, tt.want)
	}
}

// BenchmarkMutable asks mutable, on every read of a session value, about
// values of common kinds.
func BenchmarkMutable(b *testing.B) {
	for _, tc := range []struct {
		name string
		v    any
		want bool
	}{
		{"string", "ada", false},
		{"int", 42, false},
		{"int8", int8(42), false},
		{"float32", float32(0.5), false},
		{"time", time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC), false},
		{"strings", []string{"a"}, true},
		{"struct", point{1, 2}, false},
		{"pointer", &cart{}, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if mutable(tc.v) != tc.want {
					b.Fatalf("mutable(%T) = %t, want %t", tc.v, !tc.want, tc.want)
				}
			}
		})
	}
}

// FuzzGobDecode checks that the transcoders' Decode never panics on stored
// bytes, and that what GobTranscoder decodes it can encode again.
func FuzzGobDecode(f *testing.F) {
	good, err := GobTranscoder{}.Encode(map[string]any{"a": "b", "cart": &cart{Items: []string{"x"}}, "n": 1})
	require.NoError(f, err, "Encode(seed values) error = %v, want nil", err)
	f.Add(good)
	all, err := encodeGob(kindSession())
	require.NoError(f, err, "encodeGob(one value of every kind) error = %v, want nil", err)
	f.Add(all)
	f.Add([]byte(`{"a":"b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		values, err := GobTranscoder{}.Decode(data)
		if err == nil {
			_, err := GobTranscoder{}.Encode(values)
			require.NoError(t, err, "GobTranscoder.Decode(%q) = %#v, which Encode rejects: %v", data, values, err)
		}
		JSONTranscoder{}.Decode(data)
	})
}

// TestTooLargeSession checks that a session larger than ItemSizeLimit is
// not written, is counted and logged clearly, keeps working locally, and is
// written again once it is small enough.
func TestTooLargeSession(t *testing.T) {
	srv := memcachetest.Start(t)
	logger, logs := captureLogs()
	m := newTestManager(t, Config{Nodes: nodesOf(srv), ItemSizeLimit: 10_000, Logger: logger})
	big := strings.Repeat("x", 20_000)

	rec := serveSession(m, "", func(s *Session) {
		s.Set("big", big)
		s.Set("small", "1")
	})
	id := setCookieValue(t, rec.Result().Header)
	cookie := DefaultCookieName + "=" + id
	waitIdle(t, m)
	st := m.Stats()
	assert.Equal(t, uint64(1), st.BackupsTooLarge, "Stats().BackupsTooLarge = %d, want 1", st.BackupsTooLarge)
	assert.Equal(t, uint64(0), st.BackupsWritten, "Stats().BackupsWritten = %d, want 0: the session is over ItemSizeLimit", st.BackupsWritten)
	log := logs.String()
	assert.Contains(t, log, "too large", "log = %q, want an error saying the session is too large", log)
	assert.Contains(t, log, "ItemSizeLimit", "log = %q, want an error naming ItemSizeLimit", log)
	assert.Contains(t, log, "level=ERROR", "log = %q, want the too-large report at level ERROR", log)
	_, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, id))
	assert.NoError(t, err, "memcached Get(key of %s) error = %v, want nil", id, err)
	assert.False(t, found, "memcached Get(key of %s) found = true, want a miss: nothing was written", id)

	// Still works locally.
	serveSession(m, cookie, func(s *Session) {
		got, _ := Get[string](s, "big")
		assert.True(t, got == big, `Get("big") = %d bytes, want the %d stored`, len(got), len(big))
		assert.False(t, s.IsNew(), "IsNew() = true, want the existing session %s", id)
		assert.Equal(t, id, s.ID(), "ID() = %q, want %q", s.ID(), id)
		s.Delete("big")
	})
	waitIdle(t, m)
	st = m.Stats()
	assert.Equal(t, uint64(1), st.BackupsWritten, "after shrinking: Stats().BackupsWritten = %d, want 1", st.BackupsWritten)
	assert.Equal(t, uint64(1), st.BackupsTooLarge, "after shrinking: Stats().BackupsTooLarge = %d, want still 1", st.BackupsTooLarge)
	_, found, err = srv.Get(memcacheKey(DefaultKeyPrefix, id))
	assert.NoError(t, err, "after shrinking: memcached Get(key of %s) error = %v, want nil", id, err)
	assert.True(t, found, "after shrinking: memcached Get(key of %s) = a miss, want a hit", id)
}

// TestTooLargeForMemcached runs sessions of about memcached's item limit
// against a real memcached with the default ItemSizeLimit.
func TestTooLargeForMemcached(t *testing.T) {
	t.Run("over 1MB", func(t *testing.T) {
		srv := memcachetest.Start(t, memcachetest.Options{MaxItemSize: "1m"})
		logger, logs := captureLogs()
		m := newTestManager(t, Config{Nodes: nodesOf(srv), Logger: logger})
		big := strings.Repeat("y", 1<<20+1000)
		rec := serveSession(m, "", func(s *Session) { s.Set("big", big) })
		id := setCookieValue(t, rec.Result().Header)
		waitIdle(t, m)
		st := m.Stats()
		assert.Equal(t, uint64(1), st.BackupsTooLarge, "Stats().BackupsTooLarge = %d, want 1", st.BackupsTooLarge)
		assert.Equal(t, uint64(0), st.BackupsWritten, "Stats().BackupsWritten = %d, want 0", st.BackupsWritten)
		assert.Equal(t, uint64(0), st.BackupsFailed, "Stats().BackupsFailed = %d, want 0: too large is no failure", st.BackupsFailed)
		log := logs.String()
		assert.Contains(t, log, "too large", "log = %q, want an error saying the session is too large", log)
		assert.Contains(t, log, "ItemSizeLimit", "log = %q, want an error naming ItemSizeLimit", log)
		serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
			got, _ := Get[string](s, "big")
			assert.Len(t, got, len(big), `Get("big") = %d bytes, want %d: the session keeps working locally`, len(got), len(big))
		})
	})

	t.Run("exactly DefaultItemSizeLimit", func(t *testing.T) {
		srv := memcachetest.Start(t, memcachetest.Options{MaxItemSize: "1m"})
		m := newTestManager(t, Config{Nodes: nodesOf(srv)})
		n := valueForBlobSize(t, DefaultItemSizeLimit, testRandom+".n1")
		rec := serveSession(m, "", func(s *Session) { s.Set("big", strings.Repeat("z", n)) })
		id := setCookieValue(t, rec.Result().Header)
		waitIdle(t, m)
		st := m.Stats()
		assert.Equal(t, uint64(1), st.BackupsWritten, "Stats().BackupsWritten = %d, want 1", st.BackupsWritten)
		assert.Equal(t, uint64(0), st.BackupsTooLarge, "Stats().BackupsTooLarge = %d, want 0: the limit itself fits", st.BackupsTooLarge)
		assert.Equal(t, uint64(0), st.BackupsFailed, "Stats().BackupsFailed = %d, want 0", st.BackupsFailed)
		v, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, id))
		assert.NoError(t, err, "memcached Get(key of %s) error = %v, want nil", id, err)
		assert.True(t, found, "memcached Get(key of %s) = a miss, want a hit", id)
		assert.Len(t, v, DefaultItemSizeLimit, "memcached Get(key of %s) = %d bytes, want %d", id, len(v), DefaultItemSizeLimit)
	})

	// memcached started with a smaller -I than ItemSizeLimit refuses the
	// item itself: that is the same condition, not a node failure to retry.
	t.Run("memcached limit below ItemSizeLimit", func(t *testing.T) {
		srv := memcachetest.Start(t, memcachetest.Options{MaxItemSize: "512k"})
		logger, logs := captureLogs()
		passes := make(chan struct{}, 1)
		cfg := Config{Nodes: nodesOf(srv), Logger: logger, RetryInterval: 20 * time.Millisecond}
		cfg.hooks.retried = func() {
			select {
			case passes <- struct{}{}:
			default:
			}
		}
		m := newTestManager(t, cfg)
		big := strings.Repeat("w", 600<<10)
		rec := serveSession(m, "", func(s *Session) { s.Set("big", big) })
		id := setCookieValue(t, rec.Result().Header)
		eventually(t, 2*time.Second, "BackupsTooLarge never counted", func() bool { return m.Stats().BackupsTooLarge == 1 })
		waitIdle(t, m)
		sets := func() uint64 {
			st, err := srv.Stats()
			require.NoError(t, err, "memcached stats error = %v, want nil", err)
			return st.CmdSet
		}
		before := sets()
		// Three whole retry passes after before was read (the first pass
		// seen may have begun earlier): none may send it again.
		for range 4 {
			select {
			case <-passes:
			case <-time.After(5 * time.Second):
				require.FailNow(t, "the retry loop made no pass within 5s", "want one every RetryInterval")
			}
			require.Zero(t, m.Stats().PendingRetries, "Stats().PendingRetries = %d, want 0: the rejected session must not be retried", m.Stats().PendingRetries)
		}
		after := sets()
		assert.Equal(t, before, after, "memcached cmd_set went from %d to %d, want no change: the rejected session is retried", before, after)
		st := m.Stats()
		assert.Equal(t, 1, st.NodesUp, "Stats().NodesUp = %d, want 1: refusing a large item is not a node failure", st.NodesUp)
		log := logs.String()
		assert.Contains(t, log, "too large", "log = %q, want an error saying the session is too large", log)
		serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
			got, _ := Get[string](s, "big")
			assert.Len(t, got, len(big), `Get("big") = %d bytes, want %d: the session keeps working locally`, len(got), len(big))
		})
	})
}

// valueForBlobSize returns the length of a string that, stored alone under
// "big" in a session with an ID as long as id, makes a blob of size bytes.
func valueForBlobSize(t *testing.T, size int, id string) int {
	t.Helper()
	blobLen := func(n int) int {
		payload, err := GobTranscoder{}.Encode(map[string]any{"big": strings.Repeat("z", n)})
		require.NoError(t, err, "Encode(a %d-byte string) error = %v, want nil", n, err)
		return len(appendEnvelope(nil, envelope{created: time.Now(), idleTimeout: DefaultIdleTimeout, lifetime: 0}, payload))
	}
	n := size - blobLen(0)
	for blobLen(n) > size {
		n--
	}
	for blobLen(n+1) <= size {
		n++
	}
	got := blobLen(n)
	require.Equal(t, size, got, "no value makes a blob of %d bytes (closest %d)", size, got)
	return n
}

// TestJSONTranscoderTakeover stores sessions with JSONTranscoder, kills the
// instance, and takes them over on another one that reads them typed.
func TestJSONTranscoderTakeover(t *testing.T) {
	srv := memcachetest.Start(t)
	cfg := Config{Nodes: nodesOf(srv), Route: "a", Transcoder: JSONTranscoder{}}
	a := newInstance(t, cfg)
	cfg.Route = "b"
	b := newInstance(t, cfg)
	br := newBrowser(t)
	br.do(a, "POST", "/set?key=s&value=hello")
	br.do(a, "POST", "/cart/add?item=x")
	// /cart/add changes the cart in place: let the backup of the first add
	// finish encoding it before the second add changes it (the race
	// detector sees the worker's read and the handler's write otherwise).
	waitIdle(t, a.m)
	br.do(a, "POST", "/cart/add?item=y")
	waitIdle(t, a.m)
	blob, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, br.sessionID(a)))
	require.NoError(t, err, "memcached Get(session on a) error = %v, want nil", err)
	require.True(t, found, "memcached Get(session on a) = a miss, want its backup")
	require.Contains(t, string(blob), `{"cart":{"Items":["x","y"]},"s":"hello"}`, "stored blob = %q, want the JSON of the session", blob)
	a.crash()

	_, body := br.do(b, "GET", "/cart")
	assert.Equal(t, "x,y", body, "GET /cart on b = %q, want x,y", body)
	_, body = br.do(b, "GET", "/get?key=s")
	assert.Equal(t, "hello", body, "GET /get?key=s on b = %q, want hello", body)
	waitIdle(t, b.m) // see above: the cart is about to change in place
	_, body = br.do(b, "POST", "/cart/add?item=z")
	assert.Equal(t, "x,y,z", body, "POST /cart/add on b = %q, want x,y,z", body)
	st := b.m.Stats()
	assert.Equal(t, uint64(1), st.LoadsHit, "b.Stats().LoadsHit = %d, want 1", st.LoadsHit)
	assert.Equal(t, uint64(1), st.Takeovers, "b.Stats().Takeovers = %d, want 1", st.Takeovers)
	assert.Equal(t, uint64(0), st.DecodeErrors, "b.Stats().DecodeErrors = %d, want 0", st.DecodeErrors)
	id := br.sessionID(b)
	assert.True(t, strings.HasSuffix(id, ".b"), "cookie after takeover = %q, want route b", id)
}

// TestJSONGetNarrowerTypeKeepsStoredFields pins the bug where Get[T] with a
// T that lacks some stored fields replaced the value and the next backup
// wrote the narrower form, losing the fields.
func TestJSONGetNarrowerTypeKeepsStoredFields(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	type wide struct{ Name, Email string }
	type narrow struct{ Name string }
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "b", Transcoder: JSONTranscoder{}})
	id := "0123456789abcdef0123456789abcdef.n1.a"
	payload, err := JSONTranscoder{}.Encode(map[string]any{"u": wide{"ada", "ada@example.com"}})
	require.NoError(t, err, "JSONTranscoder.Encode(wide) error = %v, want nil", err)
	blob := appendEnvelope(nil, envelope{created: time.Now(), idleTimeout: time.Hour}, payload)
	require.NoError(t, servers[0].Set(memcacheKey(DefaultKeyPrefix, id), blob, 0), "memcached set of the stored session")
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, ok := Get[narrow](FromContext(r.Context()), "u")
		assert.True(t, ok, "Get[narrow](u) ok = false, want true")
		assert.Equal(t, "ada", n.Name, "Get[narrow](u) = %+v, want Name ada", n)
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: DefaultCookieName, Value: id})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	m.Shutdown(context.Background())
	newID := "0123456789abcdef0123456789abcdef.n1.b"
	raw, found, err := servers[0].Get(memcacheKey(DefaultKeyPrefix, newID))
	require.NoError(t, err, "memcached Get(backup under %s) error = %v, want nil", newID, err)
	require.True(t, found, "memcached Get(backup under %s) = a miss, want the session taken over", newID)
	_, p, err := decodeEnvelope(raw, newID)
	require.NoError(t, err, "decodeEnvelope(backup under %s) error = %v, want nil", newID, err)
	require.Contains(t, string(p), "ada@example.com", "stored session after Get[narrow] = %s, want the Email field kept", p)
}
