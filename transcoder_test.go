package mcsession

import (
	"bytes"
	"context"
	"encoding/gob"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// logCapture is a log destination a test can read while the Manager's
// goroutines write to it.
type logCapture struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *logCapture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *logCapture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// captureLogs returns a logger that writes text records to the returned
// capture.
func captureLogs() (*slog.Logger, *logCapture) {
	c := &logCapture{}
	return slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug})), c
}

// serveSession sends one GET through m's middleware with the raw Cookie
// header cookie (none if empty), running f on the request's session.
func serveSession(m *Manager, cookie string, f func(s *Session)) *httptest.ResponseRecorder {
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f(FromContext(r.Context()))
	}))
	req := httptest.NewRequest("GET", "/", nil)
	if cookie != "" {
		req.Header["Cookie"] = []string{cookie}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

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
	if err != nil {
		t.Fatalf("Encode(%v) error = %v", values, err)
	}
	got, err := gt.Decode(b)
	if err != nil {
		t.Fatalf("Decode(Encode(%v)) error = %v", values, err)
	}
	if !reflect.DeepEqual(got, values) {
		t.Errorf("Decode(Encode(%#v)) = %#v", values, got)
	}

	empty, err := gt.Encode(map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := gt.Decode(empty); err != nil || len(got) != 0 || got == nil {
		t.Errorf("Decode(Encode({})) = %#v, %v, want an empty map", got, err)
	}
}

func TestGobTranscoderDeterministic(t *testing.T) {
	values := make(map[string]any)
	for i := range 50 {
		values[strings.Repeat("k", i+1)] = i
	}
	values["cart"] = &cart{Items: []string{"x"}}
	var gt GobTranscoder
	first, err := gt.Encode(values)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		b, err := gt.Encode(values)
		if err != nil || !bytes.Equal(b, first) {
			t.Fatalf("Encode(values) = %x, %v; first %x", b, err, first)
		}
	}
}

func TestGobTranscoderErrors(t *testing.T) {
	var gt GobTranscoder
	if _, err := gt.Encode(map[string]any{"x": unregistered{1}}); err == nil || !strings.Contains(err.Error(), "gob.Register") {
		t.Errorf("Encode(unregistered type) error = %v, want one that mentions gob.Register", err)
	}
	var other bytes.Buffer
	if err := gob.NewEncoder(&other).Encode("a plain string"); err != nil {
		t.Fatal(err)
	}
	good, _ := gt.Encode(map[string]any{"a": "b"})
	for _, in := range [][]byte{nil, {}, []byte("garbage"), other.Bytes(), good[:len(good)-1], {0xff, 0xff, 0xff, 0xff, 0xff}} {
		if v, err := gt.Decode(in); err == nil {
			t.Errorf("Decode(%q) = %v, nil, want an error", in, v)
		}
	}
}

func TestJSONTranscoder(t *testing.T) {
	var jt JSONTranscoder
	b, err := jt.Encode(map[string]any{"s": "hi", "n": 3, "cart": &cart{Items: []string{"a"}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"cart":{"Items":["a"]},"n":3,"s":"hi"}`; string(b) != want {
		t.Errorf("Encode = %s, want %s", b, want)
	}
	values, err := jt.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	// Encoding what was decoded, before any typed Get, gives the same bytes.
	again, err := jt.Encode(values)
	if err != nil || !bytes.Equal(again, b) {
		t.Errorf("Encode(Decode(%s)) = %s, %v", b, again, err)
	}
	for _, in := range []string{"", "null x", "[1,2]", `"s"`, "{", `{"a":}`} {
		if v, err := jt.Decode([]byte(in)); err == nil && in != "" {
			t.Errorf("Decode(%q) = %v, nil, want an error", in, v)
		}
	}
	if _, err := jt.Encode(map[string]any{"ch": make(chan int)}); err == nil {
		t.Errorf("Encode(chan) error = nil, want one")
	}
}

// TestJSONValueGet checks how loaded JSON values come out of a session:
// typed by Get[T], as encoding/json's interface form by Session.Get.
func TestJSONValueGet(t *testing.T) {
	m := newTestManager(t, Config{Transcoder: JSONTranscoder{}})
	values, err := JSONTranscoder{}.Decode([]byte(`{"cart":{"Items":["x","y"]},"n":7,"s":"str"}`))
	if err != nil {
		t.Fatal(err)
	}
	serveSession(m, "", func(s *Session) {
		s.Set("seed", true)
		s.mu.Lock()
		s.e.values = valuesOf(values) // as a takeover leaves them
		s.mu.Unlock()
		if got := s.Get("cart"); !reflect.DeepEqual(got, map[string]any{"Items": []any{"x", "y"}}) {
			t.Errorf(`Get("cart") = %#v, want the JSON object as a map`, got)
		}
		if got, ok := Get[int](s, "s"); ok {
			t.Errorf(`Get[int]("s") = %v, true, want false`, got)
		}
		if got, ok := Get[string](s, "s"); !ok || got != "str" {
			t.Errorf(`Get[string]("s") = %q, %v, want "str", true`, got, ok)
		}
		if got, ok := Get[int](s, "n"); !ok || got != 7 {
			t.Errorf(`Get[int]("n") = %v, %v, want 7, true`, got, ok)
		}
		c, ok := Get[*cart](s, "cart")
		if !ok || !reflect.DeepEqual(c.Items, []string{"x", "y"}) {
			t.Fatalf(`Get[*cart]("cart") = %+v, %v, want [x y]`, c, ok)
		}
		// The typed value replaced the JSON: later Gets share it.
		if c2, ok := Get[*cart](s, "cart"); !ok || c2 != c {
			t.Errorf(`second Get[*cart]("cart") = %p, %v, want the same *cart %p`, c2, ok, c)
		}
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
		if got := mutable(tt.v); got != tt.want {
			t.Errorf("mutable(%T) = %v, want %v", tt.v, got, tt.want)
		}
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
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(`{"a":"b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		values, err := GobTranscoder{}.Decode(data)
		if err == nil {
			if _, err := (GobTranscoder{}).Encode(values); err != nil {
				t.Fatalf("GobTranscoder.Decode(%q) = %#v, which Encode rejects: %v", data, values, err)
			}
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
	if st := m.Stats(); st.BackupsTooLarge != 1 || st.BackupsWritten != 0 {
		t.Errorf("Stats() = BackupsTooLarge %d, BackupsWritten %d, want 1, 0", st.BackupsTooLarge, st.BackupsWritten)
	}
	if log := logs.String(); !strings.Contains(log, "too large") || !strings.Contains(log, "ItemSizeLimit") || !strings.Contains(log, "level=ERROR") {
		t.Errorf("log = %q, want an error saying the session is too large for ItemSizeLimit", log)
	}
	if _, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, id)); err != nil || found {
		t.Errorf("memcached Get(key of %s) = found %v, %v, want a miss", id, found, err)
	}

	// Still works locally.
	serveSession(m, cookie, func(s *Session) {
		if got, _ := Get[string](s, "big"); got != big {
			t.Errorf(`Get("big") = %d bytes, want %d`, len(got), len(big))
		}
		if s.IsNew() || s.ID() != id {
			t.Errorf("session = %q (new %v), want %q", s.ID(), s.IsNew(), id)
		}
		s.Delete("big")
	})
	waitIdle(t, m)
	if st := m.Stats(); st.BackupsWritten != 1 || st.BackupsTooLarge != 1 {
		t.Errorf("after shrinking: Stats() = BackupsWritten %d, BackupsTooLarge %d, want 1, 1", st.BackupsWritten, st.BackupsTooLarge)
	}
	if _, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, id)); err != nil || !found {
		t.Errorf("after shrinking: memcached Get(key of %s) = found %v, %v, want a hit", id, found, err)
	}
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
		if st := m.Stats(); st.BackupsTooLarge != 1 || st.BackupsWritten != 0 || st.BackupsFailed != 0 {
			t.Errorf("Stats() = BackupsTooLarge %d, BackupsWritten %d, BackupsFailed %d, want 1, 0, 0", st.BackupsTooLarge, st.BackupsWritten, st.BackupsFailed)
		}
		if log := logs.String(); !strings.Contains(log, "too large") || !strings.Contains(log, "ItemSizeLimit") {
			t.Errorf("log = %q, want an error saying the session is too large", log)
		}
		serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
			if got, _ := Get[string](s, "big"); len(got) != len(big) {
				t.Errorf(`Get("big") = %d bytes, want %d`, len(got), len(big))
			}
		})
	})

	t.Run("exactly DefaultItemSizeLimit", func(t *testing.T) {
		srv := memcachetest.Start(t, memcachetest.Options{MaxItemSize: "1m"})
		m := newTestManager(t, Config{Nodes: nodesOf(srv)})
		n := valueForBlobSize(t, DefaultItemSizeLimit, testRandom+".n1")
		rec := serveSession(m, "", func(s *Session) { s.Set("big", strings.Repeat("z", n)) })
		id := setCookieValue(t, rec.Result().Header)
		waitIdle(t, m)
		if st := m.Stats(); st.BackupsWritten != 1 || st.BackupsTooLarge != 0 || st.BackupsFailed != 0 {
			t.Errorf("Stats() = BackupsWritten %d, BackupsTooLarge %d, BackupsFailed %d, want 1, 0, 0", st.BackupsWritten, st.BackupsTooLarge, st.BackupsFailed)
		}
		v, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, id))
		if err != nil || !found || len(v) != DefaultItemSizeLimit {
			t.Errorf("memcached Get(key of %s) = %d bytes, found %v, %v, want %d bytes", id, len(v), found, err, DefaultItemSizeLimit)
		}
	})

	// memcached started with a smaller -I than ItemSizeLimit refuses the
	// item itself: that is the same condition, not a node failure to retry.
	t.Run("memcached limit below ItemSizeLimit", func(t *testing.T) {
		srv := memcachetest.Start(t, memcachetest.Options{MaxItemSize: "512k"})
		logger, logs := captureLogs()
		m := newTestManager(t, Config{Nodes: nodesOf(srv), Logger: logger, RetryInterval: 20 * time.Millisecond})
		big := strings.Repeat("w", 600<<10)
		rec := serveSession(m, "", func(s *Session) { s.Set("big", big) })
		id := setCookieValue(t, rec.Result().Header)
		eventually(t, 2*time.Second, "BackupsTooLarge never counted", func() bool { return m.Stats().BackupsTooLarge == 1 })
		waitIdle(t, m)
		sets := func() uint64 {
			st, err := srv.Stats()
			if err != nil {
				t.Fatal(err)
			}
			return st.CmdSet
		}
		before := sets()
		// Several retry intervals: nothing more may be sent.
		deadline := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(deadline) {
			if m.Stats().PendingRetries != 0 {
				t.Fatalf("the rejected session is pending a retry")
			}
			time.Sleep(10 * time.Millisecond)
		}
		if after := sets(); after != before {
			t.Errorf("memcached cmd_set went from %d to %d: the rejected session is retried", before, after)
		}
		if st := m.Stats(); st.NodesUp != 1 {
			t.Errorf("Stats().NodesUp = %d, want 1: refusing a large item is not a node failure", st.NodesUp)
		}
		if log := logs.String(); !strings.Contains(log, "too large") {
			t.Errorf("log = %q, want an error saying the session is too large", log)
		}
		serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
			if got, _ := Get[string](s, "big"); len(got) != len(big) {
				t.Errorf(`Get("big") = %d bytes, want %d`, len(got), len(big))
			}
		})
	})
}

// valueForBlobSize returns the length of a string that, stored alone under
// "big" in a session with an ID as long as id, makes a blob of size bytes.
func valueForBlobSize(t *testing.T, size int, id string) int {
	t.Helper()
	blobLen := func(n int) int {
		payload, err := GobTranscoder{}.Encode(map[string]any{"big": strings.Repeat("z", n)})
		if err != nil {
			t.Fatal(err)
		}
		return len(appendEnvelope(nil, envelope{id, time.Now(), DefaultIdleTimeout, 0}, payload))
	}
	n := size - blobLen(0)
	for blobLen(n) > size {
		n--
	}
	for blobLen(n+1) <= size {
		n++
	}
	if got := blobLen(n); got != size {
		t.Fatalf("no value makes a blob of %d bytes (closest %d)", size, got)
	}
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
	if err != nil || !found || !bytes.Contains(blob, []byte(`{"cart":{"Items":["x","y"]},"s":"hello"}`)) {
		t.Fatalf("stored blob = %q, %v, %v, want the JSON of the session", blob, found, err)
	}
	a.crash()

	if _, body := br.do(b, "GET", "/cart"); body != "x,y" {
		t.Errorf("GET /cart on b = %q, want x,y", body)
	}
	if _, body := br.do(b, "GET", "/get?key=s"); body != "hello" {
		t.Errorf("GET /get?key=s on b = %q, want hello", body)
	}
	waitIdle(t, b.m) // see above: the cart is about to change in place
	if _, body := br.do(b, "POST", "/cart/add?item=z"); body != "x,y,z" {
		t.Errorf("POST /cart/add on b = %q, want x,y,z", body)
	}
	if st := b.m.Stats(); st.LoadsHit != 1 || st.Takeovers != 1 || st.DecodeErrors != 0 {
		t.Errorf("b.Stats() = LoadsHit %d, Takeovers %d, DecodeErrors %d, want 1, 1, 0", st.LoadsHit, st.Takeovers, st.DecodeErrors)
	}
	if id := br.sessionID(b); !strings.HasSuffix(id, ".b") {
		t.Errorf("cookie after takeover = %q, want route b", id)
	}
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
	payload, _ := JSONTranscoder{}.Encode(map[string]any{"u": wide{"ada", "ada@example.com"}})
	blob := appendEnvelope(nil, envelope{id: id, created: time.Now(), idleTimeout: time.Hour}, payload)
	if err := servers[0].Set(memcacheKey(DefaultKeyPrefix, id), blob, 0); err != nil {
		t.Fatal(err)
	}
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, ok := Get[narrow](FromContext(r.Context()), "u")
		if !ok || n.Name != "ada" {
			t.Errorf("Get[narrow] = %+v, %v", n, ok)
		}
	}))
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: DefaultCookieName, Value: id})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	m.Shutdown(context.Background())
	newID := "0123456789abcdef0123456789abcdef.n1.b"
	raw, found, err := servers[0].Get(memcacheKey(DefaultKeyPrefix, newID))
	if err != nil || !found {
		t.Fatalf("backup under %s: found %v, %v", newID, found, err)
	}
	_, p, _ := decodeEnvelope(raw)
	if !strings.Contains(string(p), "ada@example.com") {
		t.Fatalf("stored session after Get[narrow] = %s, want the Email field kept", p)
	}
}
