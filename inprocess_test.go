package mcsession

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
		if code, body := br.do(in, s.method, s.path); code != http.StatusOK || body != s.want {
			t.Fatalf("%s %s = %d %q, want 200 %q", s.method, s.path, code, body, s.want)
		}
	}
	id := br.sessionID(in)
	if _, body := br.do(in, "GET", "/id"); body != id {
		t.Errorf("GET /id = %q, want the cookie's %q", body, id)
	}

	br.do(in, "POST", "/renew")
	renewed := br.sessionID(in)
	if renewed == id || len(renewed) != randomLen {
		t.Errorf("RenewID: %q -> %q, want a new ID", id, renewed)
	}
	if _, body := br.do(in, "GET", "/keys"); body != "b,cart" {
		t.Errorf("GET /keys after RenewID = %q, want b,cart", body)
	}
	old := newBrowser(t)
	old.setSessionID(in, id)
	if _, body := old.do(in, "GET", "/keys"); body != "" {
		t.Errorf("GET /keys with the ID before RenewID = %q, want no session", body)
	}

	br.do(in, "POST", "/invalidate")
	if got := br.sessionID(in); got != "" {
		t.Errorf("cookie after invalidate = %q, want none", got)
	}
	old.setSessionID(in, renewed)
	if _, body := old.do(in, "GET", "/keys"); body != "" {
		t.Errorf("GET /keys with the invalidated ID = %q, want no session", body)
	}
	if st := in.m.Stats(); st.SessionsCreated != 1 || st.SessionsInvalidated != 1 || st.LocalSessions != 0 || st.Nodes != 0 {
		t.Errorf("Stats() = %+v, want 1 created, 1 invalidated, none left, no nodes", st)
	}
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
			if got := setCookieValue(t, rec.Result().Header); got != id {
				t.Errorf("cookie = %q, want the session's ID %q", got, id)
			}
			random, ok := strings.CutSuffix(id, tt.suffix)
			if !ok || len(random) != randomLen || strings.Trim(random, "0123456789abcdef") != "" {
				t.Errorf("ID() = %q, want 32 lowercase hex digits then %q", id, tt.suffix)
			}
		})
	}
}

func TestIsNew(t *testing.T) {
	m := newTestManager(t, Config{})
	var id string
	serveSession(m, "", func(s *Session) {
		if !s.IsNew() || s.ID() != "" {
			t.Errorf("before Set: IsNew() = %v, ID() = %q, want true, none", s.IsNew(), s.ID())
		}
		s.Set("a", 1)
		if id = s.ID(); !s.IsNew() || id == "" {
			t.Errorf("after Set: IsNew() = %v, ID() = %q, want true and an ID", s.IsNew(), id)
		}
	})
	serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
		if s.IsNew() || s.ID() != id {
			t.Errorf("next request: IsNew() = %v, ID() = %q, want false, %q", s.IsNew(), s.ID(), id)
		}
		s.Invalidate()
		if !s.IsNew() || s.ID() != "" {
			t.Errorf("after Invalidate: IsNew() = %v, ID() = %q, want true, none", s.IsNew(), s.ID())
		}
	})
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
		if v := s.Get("user"); v != nil {
			t.Errorf(`Get("user") after Invalidate = %v, want nil`, v)
		}
	})
	if got := setCookieValue(t, rec.Result().Header); got != newID || newID == oldID || newID == "" {
		t.Errorf("Set-Cookie = %q, want the new session %q (old %q)", got, newID, oldID)
	}
	if st := m.Stats(); st.SessionsCreated != 2 || st.SessionsInvalidated != 1 || st.LocalSessions != 1 {
		t.Errorf("Stats() = %+v, want 2 created, 1 invalidated, 1 held", st)
	}
}

// TestNoCookieWithoutWrite sends requests that only read, or do not touch
// the session: no cookie, no session.
func TestNoCookieWithoutWrite(t *testing.T) {
	in := newInstance(t, Config{})
	for _, path := range []string{"/none", "/get?key=a", "/keys", "/id", "/cart"} {
		resp, err := http.Get(in.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
			t.Errorf("GET %s: Set-Cookie %q, want none", path, got)
		}
	}
	for _, path := range []string{"/delete?key=a", "/invalidate", "/renew"} {
		resp, err := http.Post(in.srv.URL+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Values("Set-Cookie"); len(got) != 0 {
			t.Errorf("POST %s: Set-Cookie %q, want none", path, got)
		}
	}
	if st := in.m.Stats(); st.SessionsCreated != 0 || st.LocalSessions != 0 || st.RequestsWithSession != 0 {
		t.Errorf("Stats() = %+v, want no session", st)
	}
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

	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		if s == nil {
			t.Fatal("FromContext = nil on an ignored request")
		}
		if v := s.Get("a"); v != nil || s.ID() != "" || s.Keys() != nil {
			t.Errorf("ignored request: Get(a) = %v, ID() = %q, Keys() = %v, want no session", v, s.ID(), s.Keys())
		}
		s.Set("b", "2") // dropped, must not panic
		s.Delete("a")
		s.RenewID()
		s.Invalidate()
		if v := s.Get("b"); v != nil {
			t.Errorf("ignored request: Get(b) after Set = %v, want nil", v)
		}
		io.WriteString(w, "static")
	}))
	req := httptest.NewRequest("GET", "/static/app.css", nil)
	req.Header.Set("Cookie", DefaultCookieName+"="+id)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got := rec.Result().Header; len(got.Values("Set-Cookie")) != 0 || len(got.Values("Vary")) != 0 {
		t.Errorf("ignored request: Set-Cookie %q, Vary %q, want neither", got.Values("Set-Cookie"), got.Values("Vary"))
	}
	// The real session is untouched.
	serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
		if v := s.Get("a"); v != "1" || s.Get("b") != nil || s.ID() != id {
			t.Errorf("after an ignored request: Get(a) = %v, Get(b) = %v, ID %q, want 1, nil, %q", v, s.Get("b"), s.ID(), id)
		}
	})
	if st := m.Stats(); st.RequestsIgnored != 1 || st.Requests != 3 || st.SessionsCreated != 1 || st.SessionsInvalidated != 0 {
		t.Errorf("Stats() = %+v, want 3 requests, 1 ignored, 1 session", st)
	}
}

func TestFromContextOutsideMiddleware(t *testing.T) {
	type otherKey struct{}
	for _, ctx := range []context.Context{
		context.Background(),
		context.WithValue(context.Background(), otherKey{}, &Session{}),
		httptest.NewRequest("GET", "/", nil).Context(),
	} {
		if s := FromContext(ctx); s != nil {
			t.Errorf("FromContext(%v) = %p, want nil", ctx, s)
		}
	}
}

func TestGetType(t *testing.T) {
	m := newTestManager(t, Config{})
	serveSession(m, "", func(s *Session) {
		if v, ok := Get[string](s, "missing"); ok || v != "" {
			t.Errorf(`Get[string] without a session = %q, %v, want "", false`, v, ok)
		}
		s.Set("n", 42)
		s.Set("s", "str")
		s.Set("cart", &cart{Items: []string{"x"}})
		s.Set("nil", nil)
		if v, ok := Get[string](s, "n"); ok || v != "" {
			t.Errorf(`Get[string]("n") = %q, %v, want "", false`, v, ok)
		}
		if v, ok := Get[int64](s, "n"); ok || v != 0 {
			t.Errorf(`Get[int64]("n") = %v, %v, want 0, false`, v, ok)
		}
		if v, ok := Get[int](s, "n"); !ok || v != 42 {
			t.Errorf(`Get[int]("n") = %v, %v, want 42, true`, v, ok)
		}
		if v, ok := Get[cart](s, "cart"); ok {
			t.Errorf(`Get[cart]("cart") = %v, true, want false: it holds a *cart`, v)
		}
		if v, ok := Get[*cart](s, "cart"); !ok || v.Items[0] != "x" {
			t.Errorf(`Get[*cart]("cart") = %v, %v, want the cart`, v, ok)
		}
		if v, ok := Get[any](s, "s"); !ok || v != "str" {
			t.Errorf(`Get[any]("s") = %v, %v, want "str", true`, v, ok)
		}
		if v, ok := Get[string](s, "missing"); ok {
			t.Errorf(`Get[string]("missing") = %q, true, want false`, v)
		}
		if v, ok := Get[*cart](s, "nil"); ok || v != nil {
			t.Errorf(`Get[*cart]("nil") = %v, %v, want nil, false`, v, ok)
		}
		if v := s.Get("missing"); v != nil {
			t.Errorf(`Get("missing") = %v, want nil`, v)
		}
	})
}
