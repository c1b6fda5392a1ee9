package mcsession

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// cookieManager returns a Manager that is never used to serve requests, for
// calling sessionCookie.
func cookieManager(tb testing.TB, cfg Config) *Manager {
	tb.Helper()
	cfg.Logger = slog.New(slog.DiscardHandler)
	return newTestManager(tb, cfg)
}

func TestSessionCookie(t *testing.T) {
	withNode := testRandom + ".n1.app1"
	plain := testRandom + ".app1"
	other := "fedcba9876543210fedcba9876543210.n1"
	tests := []struct {
		name    string
		nodes   bool
		cookies []string // Cookie header lines
		want    string
	}{
		{"no header", true, nil, ""},
		{"one cookie", true, []string{"SESSIONID=" + withNode}, withNode},
		{"among others", true, []string{"a=1; SESSIONID=" + withNode + "; b=2"}, withNode},
		{"no space after semicolon", true, []string{"a=1;SESSIONID=" + withNode + ";b=2"}, withNode},
		{"tabs and spaces around", true, []string{"a=1;\t SESSIONID=" + withNode + " \t; b=2"}, withNode},
		{"second header line", true, []string{"a=1", "SESSIONID=" + withNode}, withNode},
		{"quoted", true, []string{`SESSIONID="` + withNode + `"`}, withNode},
		{"first valid wins", true, []string{"SESSIONID=" + withNode + "; SESSIONID=" + other}, withNode},
		{"invalid one skipped", true, []string{"SESSIONID=junk; SESSIONID=" + other}, other},
		{"invalid in first line skipped", true, []string{"SESSIONID=junk", "SESSIONID=" + other}, other},
		{"in-process ID with nodes", true, []string{"SESSIONID=" + testRandom}, ""},
		{"route taken for a node", true, []string{"SESSIONID=" + plain}, plain}, // unknown node: load skips it
		{"in-process ID without nodes", false, []string{"SESSIONID=" + plain}, plain},
		{"node ID without nodes", false, []string{"SESSIONID=" + withNode}, ""},
		{"name is case sensitive", true, []string{"sessionid=" + withNode}, ""},
		{"longer name", true, []string{"XSESSIONID=" + withNode + "; SESSIONIDX=" + withNode}, ""},
		{"space before equals", true, []string{"SESSIONID =" + withNode}, ""},
		{"empty value", true, []string{"SESSIONID="}, ""},
		{"name only", true, []string{"SESSIONID"}, ""},
		{"lone quote", true, []string{`SESSIONID="`}, ""},
		{"unbalanced quote", true, []string{`SESSIONID="` + withNode}, ""},
		{"trailing quote", true, []string{`SESSIONID=` + withNode + `"`}, ""},
		{"single quotes", true, []string{`SESSIONID='` + withNode + `'`}, ""},
		{"double quoted twice", true, []string{`SESSIONID=""` + withNode + `""`}, ""},
		{"space inside", true, []string{"SESSIONID=" + testRandom + " .n1"}, ""},
		{"only separators", true, []string{";;; ;=;=="}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Route: "app1"}
			if tt.nodes {
				cfg.Nodes = "n1:127.0.0.1:1"
			}
			m := cookieManager(t, cfg)
			r := httptest.NewRequest("GET", "/", nil)
			if tt.cookies != nil {
				r.Header["Cookie"] = tt.cookies
			}
			got := m.sessionCookie(r)
			assert.Equal(t, tt.want, got, "sessionCookie(Cookie: %q) = %q, want %q", tt.cookies, got, tt.want)
		})
	}
}

func TestSessionCookieCustomName(t *testing.T) {
	m := cookieManager(t, Config{Cookie: CookieConfig{Name: "sid"}})
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Cookie", "SESSIONID="+testRandom+"; sid="+testRandom)
	got := m.sessionCookie(r)
	assert.Equal(t, testRandom, got, "sessionCookie(%q) = %q, want %q: only the configured name counts", r.Header.Get("Cookie"), got, testRandom)
}

// TestBadCookieCostsNothing sends malformed session cookies to a Manager
// with a memcached node: each must give the handler a fresh, empty session
// without a single memcached operation, and must not panic.
func TestBadCookieCostsNothing(t *testing.T) {
	srv := memcachetest.Start(t)
	m := newTestManager(t, Config{Nodes: nodesOf(srv), Route: "app1"})
	valid := testRandom + ".n1.app1"
	tests := []struct {
		name   string
		cookie string // the whole Cookie header
	}{
		{"malformed", "SESSIONID=not-a-session-id"},
		{"oversized", "SESSIONID=" + valid + strings.Repeat("a", 5000)},
		{"oversized header", "SESSIONID=" + strings.Repeat(testRandom, 160)},
		{"unknown node", "SESSIONID=" + testRandom + ".n9.app1"},
		{"unknown node without route", "SESSIONID=" + testRandom + ".zz"},
		{"no node", "SESSIONID=" + testRandom},
		{"short random", "SESSIONID=" + testRandom[1:] + ".n1.app1"},
		{"long random", "SESSIONID=0" + testRandom + ".n1.app1"},
		{"uppercase hex", "SESSIONID=" + strings.ToUpper(testRandom) + ".n1.app1"},
		{"non-hex", "SESSIONID=" + strings.Replace(testRandom, "a", "x", 1) + ".n1.app1"},
		{"control character", "SESSIONID=" + testRandom + ".n1\x01.app1"},
		{"NUL", "SESSIONID=" + testRandom[:5] + "\x00" + testRandom[6:] + ".n1"},
		{"newline", "SESSIONID=" + testRandom + ".n1\r\nset x 0 0 1"},
		{"empty", "SESSIONID="},
		{"empty header", ""},
		{"extra dot", "SESSIONID=" + valid + ".x"},
		{"double dot", "SESSIONID=" + testRandom + "..n1"},
		{"trailing dot", "SESSIONID=" + testRandom + ".n1."},
		{"unbalanced quote", `SESSIONID="` + valid},
		{"quoted junk", `SESSIONID="junk"`},
		{"single quotes", `SESSIONID='` + valid + `'`},
		{"quotes inside", `SESSIONID=` + testRandom + `".n1"`},
		{"space inside", "SESSIONID=" + testRandom + ". n1"},
		{"non-ASCII", "SESSIONID=" + testRandom + ".n1.äpp"},
		{"other name", "sessionid=" + valid + "; SESSIONID2=" + valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := srv.Ops(t)
			rec, saw := serveProbe(t, m, tt.cookie, "a", false)
			d := opsDelta(t, srv, base)
			assert.Zero(t, d, "GET with Cookie %q cost %d memcached operations, want 0", tt.cookie, d)
			noSession := saw.isNew && saw.id == "" && len(saw.keys) == 0 && saw.value == ""
			assert.True(t, noSession, "GET with Cookie %q: handler saw %+v, want no session (new, no ID, no keys, no value)", tt.cookie, saw)
			// Nothing was written, so no session cookie; a well-formed ID
			// of a session that cannot exist (unknown node) is cleared, so
			// the browser stops sending it.
			for _, c := range rec.Result().Cookies() {
				assert.True(t, c.Value == "" && c.MaxAge < 0, "GET with Cookie %q: Set-Cookie %q, want none or a removal", tt.cookie, c.String())
			}
		})
	}

	// Controls: a well-formed ID of a known node is looked up, quoted or not
	// (RFC 6265 allows a quoted cookie-value), so the zeros above are real.
	for _, cookie := range []string{"SESSIONID=" + valid, `SESSIONID="` + "00" + valid[2:] + `"`} {
		base := srv.Ops(t)
		serveProbe(t, m, cookie, "a", false)
		d := opsDelta(t, srv, base)
		assert.Equal(t, uint64(1), d, "GET with Cookie %q cost %d memcached operations, want 1 get", cookie, d)
	}
	st := m.Stats()
	assert.Equal(t, [3]uint64{0, 2, 0}, [3]uint64{st.SessionsCreated, st.LoadsMiss, st.DecodeErrors},
		"Stats() = SessionsCreated %d, LoadsMiss %d, DecodeErrors %d, want 0, 2, 0", st.SessionsCreated, st.LoadsMiss, st.DecodeErrors)

	// A bad cookie, then a write: a new session with a new, valid ID.
	rec, _ := serveProbe(t, m, "SESSIONID="+strings.ToUpper(valid), "a", true)
	id := setCookieValue(t, rec.Result().Header)
	p, ok := parseID(id, true)
	if assert.True(t, ok, "Set-Cookie after a bad cookie = %q, want a valid ID", id) {
		assert.NotEqual(t, testRandom, p.random, "Set-Cookie after a bad cookie = %q, want a new ID, not the bad cookie's", id)
	}
}

func TestCookieAttributes(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want http.Cookie // Value is not compared
	}{
		{"defaults", Config{},
			http.Cookie{Name: DefaultCookieName, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}},
		{"configured", Config{Cookie: CookieConfig{Name: "sid", Path: "/app", Domain: "example.com", Secure: true, SameSite: http.SameSiteStrictMode}},
			http.Cookie{Name: "sid", Path: "/app", Domain: "example.com", Secure: true, HttpOnly: true, SameSite: http.SameSiteStrictMode}},
		{"SameSite=None with Secure", Config{Cookie: CookieConfig{Secure: true, SameSite: http.SameSiteNoneMode}},
			http.Cookie{Name: DefaultCookieName, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteNoneMode}},
		{"partitioned", Config{Cookie: CookieConfig{Secure: true, SameSite: http.SameSiteNoneMode, Partitioned: true}},
			http.Cookie{Name: DefaultCookieName, Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteNoneMode, Partitioned: true}},
		{"persistent", Config{IdleTimeout: time.Hour, Cookie: CookieConfig{Persist: true}},
			http.Cookie{Name: DefaultCookieName, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: 3600}},
		{"persistent with shorter lifetime", Config{IdleTimeout: time.Hour, Lifetime: 10 * time.Minute, Cookie: CookieConfig{Persist: true}},
			http.Cookie{Name: DefaultCookieName, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: 600}},
		{"persistent with longer lifetime", Config{IdleTimeout: time.Hour, Lifetime: 24 * time.Hour, Cookie: CookieConfig{Persist: true}},
			http.Cookie{Name: DefaultCookieName, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: 3600}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestManager(t, tt.cfg)
			rec, _ := serveProbe(t, m, "", "a", true)
			h := rec.Result().Header
			cs := setCookies(t, h, tt.want.Name)
			require.Len(t, cs, 1, "Set-Cookie = %q, want one %s cookie", h.Values("Set-Cookie"), tt.want.Name)
			c := cs[0]
			_, ok := parseID(c.Value, false)
			assert.True(t, ok, "cookie value = %q, want a session ID", c.Value)
			got := http.Cookie{Name: c.Name, Path: c.Path, Domain: c.Domain, Secure: c.Secure, HttpOnly: c.HttpOnly,
				SameSite: c.SameSite, MaxAge: c.MaxAge, Expires: c.Expires, Partitioned: c.Partitioned}
			assert.Equal(t, tt.want.Partitioned, strings.Contains(h.Get("Set-Cookie"), "; Partitioned"), "Set-Cookie = %q: the Partitioned attribute", h.Get("Set-Cookie"))
			assert.Equal(t, tt.want, got, "Set-Cookie = %q, want %s and no Expires", h.Get("Set-Cookie"), tt.want.String())
			vary := h.Values("Vary")
			assert.Contains(t, vary, "Cookie", "Vary = %q, want Cookie: the response depends on the session cookie", vary)
		})
	}
}

func TestAddVaryCookie(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{"none", nil, []string{"Cookie"}},
		{"other", []string{"Accept-Encoding"}, []string{"Accept-Encoding", "Cookie"}},
		{"already", []string{"Cookie"}, []string{"Cookie"}},
		{"already in a list", []string{"Accept-Encoding, cookie"}, []string{"Accept-Encoding, cookie"}},
		{"star", []string{"*"}, []string{"*"}},
		{"lookalike", []string{"Cookies, X-Cookie"}, []string{"Cookies, X-Cookie", "Cookie"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.in != nil {
				h["Vary"] = slices.Clone(tt.in)
			}
			var spare [1]string
			addVaryCookie(h, &spare)
			got := h.Values("Vary")
			assert.Equal(t, tt.want, got, "addVaryCookie(Vary: %q) = %q, want %q", tt.in, got, tt.want)
			// A handler adding its own Vary afterwards must not write
			// into the request's spare storage.
			h.Add("Vary", "Accept-Language")
			assert.Contains(t, []string{"", "Cookie"}, spare[0], "after Add: spare = %q, want Cookie or empty", spare[0])
			got = h.Values("Vary")
			want := append(slices.Clone(tt.want), "Accept-Language")
			assert.Equal(t, want, got, "after Add: Vary = %q, want %q then Accept-Language", got, tt.want)
		})
	}
}

// FuzzSessionCookie checks that sessionCookie never panics on any Cookie
// headers and returns only IDs that parse, taken from the headers.
func FuzzSessionCookie(f *testing.F) {
	f.Add("SESSIONID="+testRandom+".n1.app1", "")
	f.Add(`a=1; SESSIONID="`+testRandom+`.app1"`, "SESSIONID=x")
	withNodes := cookieManager(f, Config{Nodes: "n1:127.0.0.1:1", Route: "app1"})
	without := cookieManager(f, Config{Route: "app1"})
	f.Fuzz(func(t *testing.T, line1, line2 string) {
		r := &http.Request{Header: http.Header{"Cookie": {line1, line2}}}
		for _, m := range []*Manager{withNodes, without} {
			id := m.sessionCookie(r)
			if id == "" {
				continue
			}
			_, ok := parseID(id, m.withNode)
			require.True(t, ok, "sessionCookie(%q, %q) = %q, which does not parse, want a valid ID or none", line1, line2, id)
			inRequest := strings.Contains(line1, DefaultCookieName+"="+id) || strings.Contains(line1, DefaultCookieName+`="`+id+`"`) ||
				strings.Contains(line2, DefaultCookieName+"="+id) || strings.Contains(line2, DefaultCookieName+`="`+id+`"`)
			require.True(t, inRequest, "sessionCookie(%q, %q) = %q, not a cookie value of the request, want one of its values", line1, line2, id)
		}
	})
}

// TestStaleCookieIsCleared pins that a cookie naming a session that is
// certainly gone is removed, so it costs a memcached get once, not on every
// request; a session out of reach (node down) keeps its cookie.
func TestStaleCookieIsCleared(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	in := newInstance(t, Config{Nodes: nodesOf(servers...), Route: "a", ProbeInterval: time.Hour})
	br := newBrowser(t)
	stale := testRandom + ".n1.x"
	br.setSessionID(in, stale)
	base := servers[0].Ops(t)
	mustDo(t, br, in, "GET", "/get?key=a")
	d := opsDelta(t, servers[0], base)
	require.Equal(t, uint64(1), d, "first request with a stale cookie cost %d memcached operations, want 1 get", d)
	id := br.sessionID(in)
	require.Empty(t, id, "cookie after a miss = %q, want it removed", id)
	mustDo(t, br, in, "GET", "/get?key=a")
	d = opsDelta(t, servers[0], base) - 1
	require.Zero(t, d, "second request cost %d more memcached operations, want 0: the cookie is gone", d)

	// Another ID: the first is remembered as gone for a while (load.go).
	unreachable := "fedcba9876543210fedcba9876543210.n1.x"
	servers[0].Kill()
	br.setSessionID(in, unreachable)
	mustDo(t, br, in, "GET", "/get?key=a")
	id = br.sessionID(in)
	assert.Equal(t, unreachable, id, "cookie after a failed load = %q, want %q kept (the session may come back)", id, unreachable)
}

// TestReplayedForgedIDCostsOneLookup pins the recently-gone cache: a
// well-formed ID found missing on every node is answered from memory when
// it comes again, so replaying a forged cookie costs memcached one lookup
// per node, not one per request. A failed lookup is not remembered.
func TestReplayedForgedIDCostsOneLookup(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a"})
	forged := DefaultCookieName + "=" + testRandom + ".n1.x"
	before := servers[0].Ops(t) + servers[1].Ops(t)
	for range 100 {
		serveSession(m, forged, func(s *Session) { s.Get("k") })
	}
	ops := servers[0].Ops(t) + servers[1].Ops(t) - before
	assert.Equal(t, uint64(2), ops, "memcached operations for 100 requests with one forged ID: one get per node")
	st := m.Stats()
	assert.Equal(t, uint64(1), st.LoadsMiss, "Stats().LoadsMiss: the one lookup")
	assert.Equal(t, uint64(99), st.LoadsKnownGone, "Stats().LoadsKnownGone: the 99 answered from memory")
}

// TestCookieResponsesAreNotSharedCacheable pins that a response which sets
// or deletes the session cookie can never be stored by a shared cache (it
// would hand one visitor's new session to the next), while a response that
// sends no cookie keeps the handler's Cache-Control as it is.
func TestCookieResponsesAreNotSharedCacheable(t *testing.T) {
	m := newTestManager(t, Config{})
	set := func(s *Session) { s.Set("k", "v") }
	tests := []struct {
		name     string
		existing bool   // the request carries the cookie of a session of its own
		set      string // the handler's Cache-Control, if any
		f        func(*Session)
		want     string // "" for none
	}{
		{"new session", false, "", set, "private"},
		{"new session, handler says public", false, "public, max-age=60", set, "max-age=60, private"},
		{"new session, handler says s-maxage", false, "max-age=60, s-maxage=600", set, "max-age=60, private"},
		{"new session, handler says no-store", false, "no-store", set, "no-store"},
		{"new session, handler says private", false, "private, max-age=5", set, "private, max-age=5"},
		{"renewed ID", true, "public", func(s *Session) { s.RenewID() }, "private"},
		{"invalidated: the cookie is deleted", true, "", func(s *Session) { s.Invalidate() }, "private"},
		{"read with the current cookie: no Set-Cookie, Cache-Control untouched", true, "public, max-age=60", func(s *Session) { s.Get("k") }, "public, max-age=60"},
		{"read with the current cookie, no Cache-Control", true, "", func(s *Session) { s.Get("k") }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cookie := ""
			if tt.existing {
				rec := serveSession(m, "", set)
				id := setCookieValue(t, rec.Result().Header)
				require.NotEmpty(t, id, "a new session sends its cookie")
				cookie = DefaultCookieName + "=" + id
			}
			h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.set != "" {
					w.Header().Set("Cache-Control", tt.set)
				}
				tt.f(FromContext(r.Context()))
				io.WriteString(w, "ok")
			}))
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			setCookies := rec.Header().Values("Set-Cookie")
			assert.Equal(t, tt.want, rec.Header().Get("Cache-Control"), "Cache-Control of the response (Set-Cookie %q)", setCookies)
			// The cases are right about the cookie: a new, renewed or
			// invalidated session sends one, a read does not.
			wantCookie := !tt.existing || !strings.HasPrefix(tt.name, "read")
			assert.Equal(t, wantCookie, len(setCookies) > 0, "Set-Cookie of the response: %q", setCookies)
		})
	}
}

// TestLiveCookieWinsOverAPlantedOne pins that with several cookies of the
// session's name, the one naming a live session is used, whichever comes
// first, and the real session is neither hidden nor deleted because a
// well-formed forged one (planted by a sibling subdomain, say) came first.
func TestLiveCookieWinsOverAPlantedOne(t *testing.T) {
	for _, withNodes := range []bool{false, true} {
		t.Run(map[bool]string{false: "in process", true: "memcached"}[withNodes], func(t *testing.T) {
			cfg := Config{Route: "a"}
			forgedID := testRandom
			if withNodes {
				cfg.Nodes = nodesOf(memcachetest.Start(t))
				forgedID += ".n1.a"
			}
			m := newTestManager(t, cfg)
			rec := serveSession(m, "", func(s *Session) { s.Set("user", "alice") })
			realID := setCookieValue(t, rec.Result().Header)
			require.NotEmpty(t, realID, "the real session's cookie")
			forged, real := DefaultCookieName+"="+forgedID, DefaultCookieName+"="+realID

			for _, header := range []string{forged + "; " + real, real + "; " + forged, forged + "; " + forged + "; " + real} {
				var user, id string
				rec := serveSession(m, header, func(s *Session) {
					user, _ = Get[string](s, "user")
					id = s.ID()
				})
				assert.Equal(t, "alice", user, "Cookie: %s: the handler sees the live session", header)
				assert.Equal(t, realID, id, "Cookie: %s: the session's ID", header)
				assert.Empty(t, rec.Result().Header.Values("Set-Cookie"), "Cookie: %s: no cookie set or deleted", header)
			}
			rec = serveSession(m, forged+"; "+DefaultCookieName+"=fedcba9876543210fedcba9876543210"+forgedID[randomLen:], func(s *Session) { s.Get("user") })
			assert.Equal(t, []string{""}, cookieValues(rec), "two gone cookies: the cookie is deleted")
		})
	}
}

// cookieValues returns the values of the session cookies rec sets.
func cookieValues(rec *httptest.ResponseRecorder) []string {
	var vs []string
	for _, c := range rec.Result().Cookies() {
		if c.Name == DefaultCookieName {
			vs = append(vs, c.Value)
		}
	}
	return vs
}
