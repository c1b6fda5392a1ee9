package mcsession

import (
	"net/http"
	"testing"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

var (
	benchRead = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := FromContext(r.Context()); s != nil {
			v, _ := Get[string](s, "user")
			w.Write([]byte(v))
			return
		}
		w.Write([]byte("ada"))
	})
	benchWrite = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := FromContext(r.Context()); s != nil {
			s.Set("n", 1)
		}
		w.Write([]byte("ok"))
	})
)

// benchSession creates a session holding user=ada through m and returns a
// request that carries its cookie.
func benchSession(tb testing.TB, m *Manager) *http.Request {
	tb.Helper()
	return sessionRequest(tb, m, func(s *Session) { s.Set("user", "ada") })
}

func runHandler(b *testing.B, h http.Handler, r *http.Request) {
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

// BenchmarkBare is the floor: the handlers without any session middleware.
func BenchmarkBare(b *testing.B) {
	b.Run("read", func(b *testing.B) { runHandler(b, benchRead, mustRequest(b, nil)) })
	b.Run("write", func(b *testing.B) { runHandler(b, benchWrite, mustRequest(b, nil)) })
}

// BenchmarkSticky measures a request on a session held locally: a read and
// a write, in process only and with asynchronous memcached backup.
func BenchmarkSticky(b *testing.B) {
	modes := []struct {
		name  string
		nodes func(b *testing.B) string
	}{
		{"inprocess", func(*testing.B) string { return "" }},
		{"memcached", func(b *testing.B) string { return nodesOf(memcachetest.StartN(b, 2)...) }},
	}
	for _, mode := range modes {
		b.Run(mode.name, func(b *testing.B) {
			nodes := mode.nodes(b)
			b.Run("read", func(b *testing.B) {
				m := newTestManager(b, Config{Nodes: nodes, Route: "a"})
				runHandler(b, m.Middleware(benchRead), benchSession(b, m))
			})
			b.Run("write", func(b *testing.B) {
				m := newTestManager(b, Config{Nodes: nodes, Route: "a"})
				runHandler(b, m.Middleware(benchWrite), benchSession(b, m))
			})
			b.Run("read-signed", func(b *testing.B) { // Config.Keys: the MAC is not checked on a local hit
				m := newTestManager(b, Config{Nodes: nodes, Route: "a", Keys: testKeys()})
				runHandler(b, m.Middleware(benchRead), benchSession(b, m))
			})
		})
	}
}

// BenchmarkStickyReadSpread reads sessions picked in turn from 10,000 held
// locally, so the lookup meets the cache misses of a real server's mix
// rather than one hot session. One request carries each cookie in turn, as
// a server's freshly parsed request would: the misses are the sessions'.
func BenchmarkStickyReadSpread(b *testing.B) {
	m := newTestManager(b, Config{})
	cookies := make([]string, 10000)
	for i := range cookies {
		cookies[i] = benchSession(b, m).Header.Get("Cookie")
	}
	r := mustRequest(b, nil)
	r.Header["Cookie"] = []string{""}
	h := m.Middleware(benchRead)
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		clear(w.h)
		r.Header["Cookie"][0] = cookies[i]
		h.ServeHTTP(w, r)
		i = (i + 7919) % len(cookies)
	}
}
