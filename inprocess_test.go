package mcsession

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInProcessSession runs a session's whole life without memcached.
func TestInProcessSession(t *testing.T) {
	in := newInstance(t, Config{})
	br := newBrowser(t)
	steps := []struct {
		method, path string
		want         string
	}{
		{"GET", "/keys", ""},
		{"POST", "/set?key=a&value=1", "ok"},
		{"POST", "/set?key=b&value=2", "ok"},
		{"GET", "/get?key=a", "1"},
		{"GET", "/keys", "a,b"},
		{"POST", "/set?key=a&value=3", "ok"},
		{"GET", "/get?key=a", "3"},
		{"POST", "/delete?key=a", ""},
		{"POST", "/delete?key=nothing", ""},
		{"GET", "/keys", "b"},
		{"GET", "/get?key=a", ""},
		{"POST", "/cart/add?item=x", "x"},
		{"POST", "/cart/add?item=y", "x,y"},
		{"GET", "/cart", "x,y"},
	}
	for _, s := range steps {
		body := mustDo(t, br, in, s.method, s.path)
		require.Equal(t, s.want, body, "%s %s = %q, want 200 %q", s.method, s.path, body, s.want)
	}
	id := br.sessionID(in)
	body := mustDo(t, br, in, "GET", "/id")
	assert.Equal(t, id, body, "GET /id = %q, want the cookie's %q", body, id)

	mustDo(t, br, in, "POST", "/renew")
	renewed := br.sessionID(in)
	assert.NotEqual(t, id, renewed, "RenewID: %q -> %q, want a new ID", id, renewed)
	assert.Len(t, renewed, randomLen, "RenewID: %q -> %q, want a new ID of %d hex digits", id, renewed, randomLen)
	body = mustDo(t, br, in, "GET", "/keys")
	assert.Equal(t, "b,cart", body, "GET /keys after RenewID = %q, want b,cart: the values move to the new ID", body)
	old := newBrowser(t)
	old.setSessionID(in, id)
	body = mustDo(t, old, in, "GET", "/keys")
	assert.Empty(t, body, "GET /keys with the ID before RenewID = %q, want no session", body)

	mustDo(t, br, in, "POST", "/invalidate")
	got := br.sessionID(in)
	assert.Empty(t, got, "cookie after invalidate = %q, want none", got)
	old.setSessionID(in, renewed)
	body = mustDo(t, old, in, "GET", "/keys")
	assert.Empty(t, body, "GET /keys with the invalidated ID = %q, want no session", body)
	st := in.m.Stats()
	assert.Equal(t, [4]uint64{1, 1, 0, 0}, [4]uint64{st.SessionsCreated, st.SessionsInvalidated, uint64(st.LocalSessions), uint64(st.Nodes)},
		"Stats() = %+v, want 1 created, 1 invalidated, none left, no nodes", st)
}

func TestInProcessIDFormat(t *testing.T) {
	tests := []struct {
		route  string
		suffix string
	}{
		{"", ""},
		{"web-1", ".web-1"},
		{"A_b", ".A_b"},
	}
	for _, tt := range tests {
		t.Run("route="+tt.route, func(t *testing.T) {
			m := newTestManager(t, Config{Route: tt.route})
			var id string
			rec := serveSession(m, "", func(s *Session) {
				s.Set("a", 1)
				id = s.ID()
			})
			got := setCookieValue(t, rec.Result().Header)
			assert.Equal(t, id, got, "cookie = %q, want the session's ID %q", got, id)
			random, ok := strings.CutSuffix(id, tt.suffix)
			wellFormed := ok && len(random) == randomLen && strings.Trim(random, "0123456789abcdef") == ""
			assert.True(t, wellFormed, "ID() = %q, want 32 lowercase hex digits then %q", id, tt.suffix)
		})
	}
}

func TestIsNew(t *testing.T) {
	m := newTestManager(t, Config{})
	var id string
	ran := 0
	serveSession(m, "", func(s *Session) {
		ran++
		assert.True(t, s.IsNew(), "before Set: IsNew() = false, want true")
		assert.Empty(t, s.ID(), "before Set: ID() = %q, want none", s.ID())
		s.Set("a", 1)
		id = s.ID()
		assert.True(t, s.IsNew(), "after Set: IsNew() = false, want true: the session is new in this request")
		assert.NotEmpty(t, id, "after Set: ID() = none, want an ID")
	})
	serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
		ran++
		assert.False(t, s.IsNew(), "next request: IsNew() = true, want false")
		assert.Equal(t, id, s.ID(), "next request: ID() = %q, want %q", s.ID(), id)
		s.Invalidate()
		assert.True(t, s.IsNew(), "after Invalidate: IsNew() = false, want true")
		assert.Empty(t, s.ID(), "after Invalidate: ID() = %q, want none", s.ID())
	})
	assert.Equal(t, 2, ran, "handlers run = %d, want 2: the checks are inside them", ran)
}

// TestInvalidateThenSet logs out and starts a new session in one request.
func TestInvalidateThenSet(t *testing.T) {
	m := newTestManager(t, Config{})
	rec := serveSession(m, "", func(s *Session) { s.Set("user", "alice") })
	oldID := setCookieValue(t, rec.Result().Header)
	var newID string
	rec = serveSession(m, DefaultCookieName+"="+oldID, func(s *Session) {
		s.Invalidate()
		s.Set("flash", "bye")
		newID = s.ID()
		v := s.Get("user")
		assert.Nil(t, v, `Get("user") after Invalidate = %v, want nil`, v)
	})
	got := setCookieValue(t, rec.Result().Header)
	assert.Equal(t, newID, got, "Set-Cookie = %q, want the new session %q (old %q)", got, newID, oldID)
	assert.NotEmpty(t, newID, "ID() after Invalidate and Set = none, want a new session's ID")
	assert.NotEqual(t, oldID, newID, "ID() after Invalidate and Set = %q, want a new ID, not the old one", newID)
	st := m.Stats()
	assert.Equal(t, [3]uint64{2, 1, 1}, [3]uint64{st.SessionsCreated, st.SessionsInvalidated, uint64(st.LocalSessions)},
		"Stats() = %+v, want 2 created, 1 invalidated, 1 held", st)
}

// TestNoCookieWithoutWrite sends requests that only read, or do not touch
// the session: no cookie, no session.
func TestNoCookieWithoutWrite(t *testing.T) {
	in := newInstance(t, Config{})
	for _, path := range []string{"/none", "/get?key=a", "/keys", "/id", "/cart"} {
		resp, err := http.Get(in.srv.URL + path)
		require.NoError(t, err, "GET %s error = %v, want a response", path, err)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		got := resp.Header.Values("Set-Cookie")
		assert.Empty(t, got, "GET %s: Set-Cookie %q, want none", path, got)
	}
	for _, path := range []string{"/delete?key=a", "/invalidate", "/renew"} {
		resp, err := http.Post(in.srv.URL+path, "", nil)
		require.NoError(t, err, "POST %s error = %v, want a response", path, err)
		resp.Body.Close()
		got := resp.Header.Values("Set-Cookie")
		assert.Empty(t, got, "POST %s: Set-Cookie %q, want none", path, got)
	}
	st := in.m.Stats()
	assert.Equal(t, [3]uint64{0, 0, 0}, [3]uint64{st.SessionsCreated, uint64(st.LocalSessions), st.RequestsWithSession},
		"Stats() = %+v, want no session", st)
}

// TestIgnore skips session work for static files, even with a valid
// session cookie.
func TestIgnore(t *testing.T) {
	logger, _ := captureLogs()
	m := newTestManager(t, Config{
		Logger: logger,
		Ignore: func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/static/") },
	})
	rec := serveSession(m, "", func(s *Session) { s.Set("a", "1") })
	id := setCookieValue(t, rec.Result().Header)

	ran := 0
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran++
		s := FromContext(r.Context())
		require.NotNil(t, s, "FromContext = nil on an ignored request, want a detached Session")
		v, id, keys := s.Get("a"), s.ID(), s.Keys()
		noSession := v == nil && id == "" && keys == nil
		assert.True(t, noSession, "ignored request: Get(a) = %v, ID() = %q, Keys() = %v, want no session", v, id, keys)
		s.Set("b", "2") // dropped, must not panic
		s.Delete("a")
		s.RenewID()
		s.Invalidate()
		v = s.Get("b")
		assert.Nil(t, v, "ignored request: Get(b) after Set = %v, want nil", v)
		io.WriteString(w, "static")
	}))
	req := httptest.NewRequest("GET", "/static/app.css", nil)
	req.Header.Set("Cookie", DefaultCookieName+"="+id)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, 1, ran, "handler runs for an ignored request = %d, want 1", ran)
	got := rec.Result().Header
	assert.Empty(t, got.Values("Set-Cookie"), "ignored request: Set-Cookie %q, want none", got.Values("Set-Cookie"))
	assert.Empty(t, got.Values("Vary"), "ignored request: Vary %q, want none", got.Values("Vary"))
	// The real session is untouched.
	ran = 0
	serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
		ran++
		a, b, gotID := s.Get("a"), s.Get("b"), s.ID()
		assert.Equal(t, []any{"1", nil, id}, []any{a, b, gotID},
			"after an ignored request: Get(a) = %v, Get(b) = %v, ID %q, want 1, nil, %q", a, b, gotID, id)
	})
	assert.Equal(t, 1, ran, "handler runs after the ignored request = %d, want 1: the check is inside it", ran)
	st := m.Stats()
	assert.Equal(t, [4]uint64{3, 1, 1, 0}, [4]uint64{st.Requests, st.RequestsIgnored, st.SessionsCreated, st.SessionsInvalidated},
		"Stats() = %+v, want 3 requests, 1 ignored, 1 session, none invalidated", st)
}

func TestFromContextOutsideMiddleware(t *testing.T) {
	type otherKey struct{}
	for _, ctx := range []context.Context{
		context.Background(),
		context.WithValue(context.Background(), otherKey{}, &Session{}),
		httptest.NewRequest("GET", "/", nil).Context(),
	} {
		s := FromContext(ctx)
		assert.Nil(t, s, "FromContext(%v) = %p, want nil: the context did not come through the middleware", ctx, s)
	}
}

func TestGetType(t *testing.T) {
	m := newTestManager(t, Config{})
	ran := false
	serveSession(m, "", func(s *Session) {
		ran = true
		v, ok := Get[string](s, "missing")
		assert.False(t, ok, `Get[string] without a session = %q, true, want "", false`, v)
		assert.Empty(t, v, `Get[string] without a session = %q, %v, want "", false`, v, ok)
		s.Set("n", 42)
		s.Set("s", "str")
		s.Set("cart", &cart{Items: []string{"x"}})
		s.Set("nil", nil)

		str, ok := Get[string](s, "n")
		assert.False(t, ok, `Get[string]("n") = %q, true, want "", false: it holds an int`, str)
		assert.Empty(t, str, `Get[string]("n") = %q, %v, want "", false`, str, ok)
		i64, ok := Get[int64](s, "n")
		assert.False(t, ok, `Get[int64]("n") = %v, true, want 0, false: it holds an int`, i64)
		assert.Zero(t, i64, `Get[int64]("n") = %v, %v, want 0, false`, i64, ok)
		n, ok := Get[int](s, "n")
		assert.True(t, ok, `Get[int]("n") = %v, false, want 42, true`, n)
		assert.Equal(t, 42, n, `Get[int]("n") = %v, %v, want 42, true`, n, ok)
		c, ok := Get[cart](s, "cart")
		assert.False(t, ok, `Get[cart]("cart") = %v, true, want false: it holds a *cart`, c)
		pc, ok := Get[*cart](s, "cart")
		if assert.True(t, ok, `Get[*cart]("cart") = %v, false, want the cart`, pc) && assert.NotNil(t, pc, `Get[*cart]("cart") = nil, true, want the cart`) {
			assert.Equal(t, []string{"x"}, pc.Items, `Get[*cart]("cart").Items = %q, want [x]`, pc.Items)
		}
		a, ok := Get[any](s, "s")
		assert.True(t, ok, `Get[any]("s") = %v, false, want "str", true`, a)
		assert.Equal(t, any("str"), a, `Get[any]("s") = %v, %v, want "str", true`, a, ok)
		str, ok = Get[string](s, "missing")
		assert.False(t, ok, `Get[string]("missing") = %q, true, want false`, str)
		pc, ok = Get[*cart](s, "nil")
		assert.False(t, ok, `Get[*cart]("nil") = %v, true, want nil, false: a nil value is no *cart`, pc)
		assert.Nil(t, pc, `Get[*cart]("nil") = %v, %v, want nil, false`, pc, ok)
		v2 := s.Get("missing")
		assert.Nil(t, v2, `Get("missing") = %v, want nil`, v2)
	})
	assert.True(t, ran, "the handler did not run, want it run: the checks are inside it")
}
