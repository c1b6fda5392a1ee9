package mcsession

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// cart is a mutable session value: handlers change it in place.
type cart struct {
	Items []string
}

func init() {
	gob.Register(&cart{})
}

// nodesOf formats servers as a Config.Nodes list n1, n2, ...
func nodesOf(servers ...*memcachetest.Server) string {
	var parts []string
	for i, s := range servers {
		parts = append(parts, fmt.Sprintf("n%d:%s", i+1, s.Addr()))
	}
	return strings.Join(parts, " ")
}

// testLogger returns a logger that writes to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newTestManager returns a Manager for cfg, closed when the test ends.
func newTestManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%+v) error = %v", cfg, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// instance is one application instance: a Manager behind an httptest
// server running testApp.
type instance struct {
	m   *Manager
	srv *httptest.Server
}

// newInstance starts an instance with cfg. Crash it with crash (no
// Shutdown), stop it with srv.Close and m.Shutdown.
func newInstance(t testing.TB, cfg Config) *instance {
	t.Helper()
	m := newTestManager(t, cfg)
	srv := httptest.NewServer(m.Middleware(testApp()))
	t.Cleanup(srv.Close)
	return &instance{m: m, srv: srv}
}

// crash stops the instance as a crash would: no Shutdown, nothing flushed.
func (in *instance) crash() {
	in.srv.CloseClientConnections()
	in.srv.Close()
	in.m.Close()
}

// testApp is the handler the tests drive:
//
//	GET  /get?key=K        the string value of K ("" if none)
//	POST /set?key=K&value=V sets K to the string V
//	POST /delete?key=K     deletes K
//	POST /cart/add?item=I  appends I to the *cart under "cart", in place
//	GET  /cart             the cart's items, comma separated
//	GET  /keys             the session's keys, sorted, comma separated
//	POST /invalidate       ends the session
//	POST /renew            renews the ID
//	GET  /id               the session ID
//	GET  /none             does not touch the session
func testApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		v, _ := Get[string](FromContext(r.Context()), r.FormValue("key"))
		io.WriteString(w, v)
	})
	mux.HandleFunc("POST /set", func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Set(r.FormValue("key"), r.FormValue("value"))
		if loc := r.FormValue("redirect"); loc != "" {
			http.Redirect(w, r, loc, http.StatusFound)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("POST /delete", func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Delete(r.FormValue("key"))
	})
	mux.HandleFunc("POST /cart/add", func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		c, ok := Get[*cart](s, "cart")
		if !ok {
			c = &cart{}
			s.Set("cart", c)
		}
		c.Items = append(c.Items, r.FormValue("item"))
		io.WriteString(w, strings.Join(c.Items, ","))
	})
	mux.HandleFunc("GET /cart", func(w http.ResponseWriter, r *http.Request) {
		if c, ok := Get[*cart](FromContext(r.Context()), "cart"); ok {
			io.WriteString(w, strings.Join(c.Items, ","))
		}
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		keys := FromContext(r.Context()).Keys()
		slices.Sort(keys)
		io.WriteString(w, strings.Join(keys, ","))
	})
	mux.HandleFunc("POST /invalidate", func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Invalidate()
	})
	mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).RenewID()
	})
	mux.HandleFunc("GET /id", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, FromContext(r.Context()).ID())
	})
	mux.HandleFunc("GET /none", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "none")
	})
	return mux
}

// browser is a client with a cookie jar. Cookies for 127.0.0.1 are shared
// by every instance (cookies ignore ports), as behind a load balancer.
type browser struct {
	t      testing.TB
	client *http.Client
}

func newBrowser(t testing.TB) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, client: &http.Client{
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// do sends a request to in and returns the status and body. It fails the
// test on a transport error. Safe to call from several goroutines, but
// then failures are reported with Errorf.
func (b *browser) do(in *instance, method, path string) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, in.srv.URL+path, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Errorf("%s %s: %v", method, path, err)
		return 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// sessionID returns the session cookie the browser holds for in.
func (b *browser) sessionID(in *instance) string {
	u, _ := url.Parse(in.srv.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == DefaultCookieName {
			return c.Value
		}
	}
	return ""
}

// setSessionID replaces the browser's session cookie.
func (b *browser) setSessionID(in *instance, id string) {
	u, _ := url.Parse(in.srv.URL)
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: DefaultCookieName, Value: id, Path: "/"}})
}

// eventually polls cond every 10ms until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitIdle waits until m's backup queue is empty and nothing is pending.
func waitIdle(t testing.TB, m *Manager) {
	t.Helper()
	eventually(t, 5*time.Second, "backups still queued or pending", func() bool {
		r, ok := m.replica.(*memcacheReplica)
		return !ok || r.queue.backlog.Load() == 0 && r.queue.pendingLen() == 0
	})
}

// opsSince returns how many data operations memcached server s has served
// since base was read.
func opsDelta(t testing.TB, s *memcachetest.Server, base uint64) uint64 {
	t.Helper()
	return s.Ops(t) - base
}

// jsonString is a tiny helper for messages.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

var _ sync.Mutex

// logRecorder is a slog.Handler that keeps every record, for tests that
// check what a Manager logged.
type logRecorder struct {
	mu      sync.Mutex // guards records
	records []slog.Record
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecorder) WithGroup(string) slog.Handler            { return h }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

// atLeast returns the messages of the records at level or above.
func (h *logRecorder) atLeast(level slog.Level) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var msgs []string
	for _, r := range h.records {
		if r.Level >= level {
			msgs = append(msgs, r.Message)
		}
	}
	return msgs
}

// replicaOf returns m's memcached replica; m must have nodes.
func replicaOf(m *Manager) *memcacheReplica { return m.replica.(*memcacheReplica) }

// waitFor waits until ch is closed, for at most 5s.
func waitFor(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("after 5s: still waiting for %s", what)
	}
}
