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
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
	"github.com/mcsession/mcsession/internal/proctest"
)

// The helpers shared by the tests of the root package. A helper that only
// one test file uses lives in that file.

// --- Session values the test handlers store ---

// cart is a mutable session value: handlers change it in place.
type cart struct {
	Items []string
}

// typedTime is the time.Time that typedApp stores.
var typedTime = time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)

func init() {
	gob.Register(&cart{})
	gob.Register(time.Time{})
}

// typedValues is what POST /typed stores.
func typedValues() map[string]any {
	return map[string]any{"str": "s", "int": 42, "float": 1.5, "bool": true, "time": typedTime}
}

// typedBody is what GET /typed answers after POST /typed.
const typedBody = "s 42 1.5 true 2024-01-02T03:04:05Z"

// testRandom is a well-formed random part of a session ID.
const testRandom = "0123456789abcdef0123456789abcdef"

// mustParseID parses a session ID that must carry a node part.
func mustParseID(t testing.TB, id string) sessionID {
	t.Helper()
	p, ok := parseID(id, true)
	require.True(t, ok, "parseID(%q) = _, false, want a <random>.<node>[.<route>] ID", id)
	return p
}

// --- Managers and their logs ---

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

// logRecord is what logRecorder keeps of a record.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]any
}

// logRecorder is a slog.Handler that keeps every record it is given, for
// tests that check what was logged. Records below level are not enabled;
// a nil level enables every record.
type logRecorder struct {
	level slog.Leveler

	mu      sync.Mutex // guards records
	records []logRecord
}

func (h *logRecorder) Enabled(_ context.Context, l slog.Level) bool {
	return h.level == nil || l >= h.level.Level()
}

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]any{}}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	h.records = append(h.records, rec)
	h.mu.Unlock()
	return nil
}

func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

// take returns the records written since the last take.
func (h *logRecorder) take() []logRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	recs := h.records
	h.records = nil
	return recs
}

// atLeast returns the messages of the records at level or above.
func (h *logRecorder) atLeast(level slog.Level) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var msgs []string
	for _, r := range h.records {
		if r.level >= level {
			msgs = append(msgs, r.msg)
		}
	}
	return msgs
}

// --- Requests straight through the middleware, without a server ---

// probeSaw is what serveProbe's handler saw of its session.
type probeSaw struct {
	isNew bool
	id    string
	keys  []string
	value string // the string under the probed key
}

// serveProbe sends one GET through m's middleware with the raw Cookie
// header cookie (none if empty), to a handler that records what it sees of
// the session under key and then, if set, sets "probe" in it. It bypasses
// the HTTP client, so the header may hold any bytes.
func serveProbe(t testing.TB, m *Manager, cookie, key string, set bool) (*httptest.ResponseRecorder, probeSaw) {
	t.Helper()
	var saw probeSaw
	rec := serveSession(m, cookie, func(s *Session) {
		saw.value, _ = Get[string](s, key)
		saw.isNew = s.IsNew()
		saw.id = s.ID()
		saw.keys = s.Keys()
		if set {
			s.Set("probe", "1")
		}
	})
	return rec, saw
}

// setCookies returns the Set-Cookie headers of h for the cookie named name.
func setCookies(t testing.TB, h http.Header, name string) []*http.Cookie {
	t.Helper()
	var out []*http.Cookie
	for _, line := range h.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		require.NoError(t, err, "http.ParseSetCookie(%q) error = %v, want a cookie the middleware could have sent", line, err)
		if c.Name == name {
			out = append(out, c)
		}
	}
	return out
}

// setCookieValue returns the value of the one session cookie set in h, or
// "" if none is set.
func setCookieValue(t testing.TB, h http.Header) string {
	t.Helper()
	cs := setCookies(t, h, DefaultCookieName)
	require.LessOrEqual(t, len(cs), 1, "%d session cookies set: %q, want at most one", len(cs), h.Values("Set-Cookie"))
	if len(cs) == 0 {
		return ""
	}
	return cs[0].Value
}

// discardWriter is the cheapest http.ResponseWriter, so the benchmarks
// measure the middleware rather than a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// sessionRequest creates a session through m's middleware, filled by set,
// and returns a request that carries its cookie. It checks that the
// request finds the session, so a benchmark never measures a miss.
func sessionRequest(tb testing.TB, m *Manager, set func(s *Session)) *http.Request {
	tb.Helper()
	w := &discardWriter{h: http.Header{}}
	m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set(FromContext(r.Context()))
	})).ServeHTTP(w, mustRequest(tb, nil))
	line := w.h.Get("Set-Cookie")
	c, err := http.ParseSetCookie(line)
	require.NoError(tb, err, "http.ParseSetCookie(%q) error = %v, want the new session's cookie", line, err)
	r := mustRequest(tb, c)
	var isNew bool
	m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		isNew = FromContext(r.Context()).IsNew()
	})).ServeHTTP(&discardWriter{h: http.Header{}}, r)
	require.False(tb, isNew, "IsNew() with the cookie %q = true, want false: the request must find the session", c.Value)
	return r
}

// mustRequest returns a GET request carrying cookie c (none if nil).
func mustRequest(tb testing.TB, c *http.Cookie) *http.Request {
	tb.Helper()
	r, err := http.NewRequest("GET", "http://example.com/", nil)
	require.NoError(tb, err, "http.NewRequest error = %v, want nil", err)
	if c != nil {
		r.AddCookie(c)
	}
	return r
}

// --- Instances and browsers: the middleware behind a real HTTP server ---

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
	return newAppInstance(t, cfg, testApp())
}

// newAppInstance is newInstance with handler h instead of testApp.
func newAppInstance(t testing.TB, cfg Config, h http.Handler) *instance {
	t.Helper()
	m := newTestManager(t, cfg)
	srv := httptest.NewServer(m.Middleware(h))
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

// typedApp is testApp plus two routes for values of the immutable kinds:
//
//	POST /typed  sets str, int, float, bool and time
//	GET  /typed  reads them back with Get[T]; 500 if one is missing
func typedApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /typed", func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		s.Set("str", "s")
		s.Set("int", 42)
		s.Set("float", 1.5)
		s.Set("bool", true)
		s.Set("time", typedTime)
	})
	mux.HandleFunc("GET /typed", func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		str, ok1 := Get[string](s, "str")
		n, ok2 := Get[int](s, "int")
		f, ok3 := Get[float64](s, "float")
		b, ok4 := Get[bool](s, "bool")
		tm, ok5 := Get[time.Time](s, "time")
		if !(ok1 && ok2 && ok3 && ok4 && ok5) {
			http.Error(w, "missing value", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%s %d %g %t %s", str, n, f, b, tm.Format(time.RFC3339))
	})
	mux.Handle("/", testApp())
	return mux
}

// browser is a client with a cookie jar. Cookies for 127.0.0.1 are shared
// by every instance (cookies ignore ports), as behind a load balancer.
type browser struct {
	t      testing.TB
	client *http.Client
}

func newBrowser(t testing.TB) *browser {
	t.Helper()
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

// do sends a request to in and returns the status and body. A failure to
// build or send the request, or to read the answer, marks the test failed
// with Errorf and (but for a failed read) returns 0, "": do never stops the
// test, so it is safe to call from any goroutine.
func (b *browser) do(in *instance, method, path string) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, in.srv.URL+path, nil)
	if err != nil {
		b.t.Errorf("%s %s: %v", method, path, err)
		return 0, ""
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Errorf("%s %s: %v", method, path, err)
		return 0, ""
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Errorf("%s %s: reading the body: %v", method, path, err)
	}
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

// mustDo sends a request and fails the test unless it answers 200. Call it
// on the test's goroutine only; elsewhere, use browser.do.
func mustDo(t testing.TB, b *browser, in *instance, method, path string) string {
	t.Helper()
	code, body := b.do(in, method, path)
	if code != http.StatusOK {
		t.Fatalf("%s %s = %d %q, want 200", method, path, code, body)
	}
	return body
}

// checkSet fails the test unless POST /set?key=key&value=value on in
// answers 200 ok.
func checkSet(t testing.TB, br *browser, in *instance, key, value string) {
	t.Helper()
	code, body := br.do(in, "POST", "/set?key="+key+"&value="+value)
	require.Equal(t, http.StatusOK, code, "POST /set?key=%s&value=%s = %d %q, want 200", key, value, code, body)
	require.Equal(t, "ok", body, "POST /set?key=%s&value=%s = %q, want \"ok\"", key, value, body)
}

// newSessionOn returns a browser whose new session, holding key=value, has
// an ID naming node. New sessions are spread over the up primary nodes by
// their random part, so a few tries suffice.
func newSessionOn(t testing.TB, in *instance, node, key, value string) *browser {
	t.Helper()
	for range 64 {
		br := newBrowser(t)
		checkSet(t, br, in, key, value)
		if mustParseID(t, br.sessionID(in)).node == node {
			return br
		}
	}
	require.FailNow(t, "no new session on node "+node+" in 64 tries")
	return nil
}

// --- Backups held at a gate ---

// gateTranscoder is GobTranscoder whose Encode blocks, for any session
// holding the key "gate", until open is called. A session with a gate value
// holds the backup worker that picks it up, so a test can fill the queue
// behind it deterministically.
type gateTranscoder struct {
	GobTranscoder
	entered   chan struct{} // closed when the first gated Encode waits
	release   chan struct{} // closed by open
	enterOnce sync.Once
	openOnce  sync.Once
	encodes   atomic.Int64
}

func newGateTranscoder() *gateTranscoder {
	return &gateTranscoder{entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateTranscoder) Encode(values map[string]any) ([]byte, error) {
	g.encodes.Add(1)
	if _, ok := values["gate"]; ok {
		g.enterOnce.Do(func() { close(g.entered) })
		<-g.release
	}
	return g.GobTranscoder.Encode(values)
}

// open lets gated encodes through; it is idempotent.
func (g *gateTranscoder) open() { g.openOnce.Do(func() { close(g.release) }) }

// waitEntered waits until a backup worker is held by the gate.
func (g *gateTranscoder) waitEntered(t testing.TB) {
	t.Helper()
	waitFor(t, g.entered, "a backup worker to reach the gate")
}

// newGatedInstance starts an instance whose backups go through a gate,
// which is opened when the test ends (before the Manager is closed, so
// Close never waits on a held worker).
func newGatedInstance(t testing.TB, cfg Config) (*instance, *gateTranscoder) {
	t.Helper()
	g := newGateTranscoder()
	cfg.Transcoder = g
	in := newInstance(t, cfg)
	t.Cleanup(g.open)
	return in, g
}

// --- memcached nodes and what they hold ---

// opTimeout is the OperationTimeout of these tests: generous, so that a
// machine slowed down by the race detector and parallel tests never takes a
// healthy node for down and moves sessions to new IDs mid-test.
const opTimeout = 2 * time.Second

// nodesOf formats servers as a Config.Nodes list n1, n2, ...
func nodesOf(servers ...*memcachetest.Server) string {
	var parts []string
	for i, s := range servers {
		parts = append(parts, fmt.Sprintf("n%d:%s", i+1, s.Addr()))
	}
	return strings.Join(parts, " ")
}

// serverOf returns the server behind node id "nK" of a nodesOf list.
func serverOf(t testing.TB, servers []*memcachetest.Server, node string) *memcachetest.Server {
	t.Helper()
	i, err := strconv.Atoi(strings.TrimPrefix(node, "n"))
	require.True(t, err == nil && i >= 1 && i <= len(servers), "node %q is not one of n1..n%d", node, len(servers))
	return servers[i-1]
}

// replicaOf returns m's memcached replica; m must have nodes.
func replicaOf(m *Manager) *memcacheReplica { return m.replica.(*memcacheReplica) }

// waitIdle waits until m's backup queue is empty and nothing is pending.
func waitIdle(t testing.TB, m *Manager) {
	t.Helper()
	eventually(t, 5*time.Second, "backups still queued or pending", func() bool {
		r, ok := m.replica.(*memcacheReplica)
		return !ok || r.queue.backlog.Load() == 0 && r.queue.pendingLen() == 0
	})
}

// storedSession reads the backup of session id from srv with the raw
// protocol and decodes it with gob. found is false if srv has no such key.
func storedSession(t testing.TB, srv *memcachetest.Server, id string) (values map[string]any, found bool) {
	t.Helper()
	key := memcacheKey(DefaultKeyPrefix, id)
	blob, found, err := srv.Get(key)
	if err != nil {
		t.Fatalf("Get(%q) on %s: %v", key, srv.Addr(), err)
	}
	if !found {
		return nil, false
	}
	_, payload, err := decodeEnvelope(blob, id)
	if err != nil {
		t.Fatalf("decodeEnvelope(backup of %s) error = %v", id, err)
	}
	values, err = GobTranscoder{}.Decode(payload)
	if err != nil {
		t.Fatalf("GobTranscoder.Decode(backup of %s) error = %v", id, err)
	}
	return values, true
}

// isStored reports whether s holds the backup of session id.
func isStored(t testing.TB, s *memcachetest.Server, id string) bool {
	t.Helper()
	_, found := storedSession(t, s, id)
	return found
}

// holdsLatest reports whether the backup of id on its node holds want.
func holdsLatest(t testing.TB, servers []*memcachetest.Server, id string, want map[string]any) bool {
	t.Helper()
	got, found := storedSession(t, serverOf(t, servers, mustParseID(t, id).node), id)
	return found && reflect.DeepEqual(got, want)
}

// serverStats reads the counters of every server.
func serverStats(t testing.TB, servers []*memcachetest.Server) []memcachetest.Stats {
	t.Helper()
	out := make([]memcachetest.Stats, len(servers))
	for i, s := range servers {
		st, err := s.Stats()
		if err != nil {
			t.Fatalf("Stats() of server %d: %v", i, err)
		}
		out[i] = st
	}
	return out
}

// opsDiff describes the memcached operations between two readings of one
// server's counters.
type opsDiff struct {
	gets, sets, touches, deletes uint64
}

func diffOps(before, after memcachetest.Stats) opsDiff {
	return opsDiff{
		gets:    after.CmdGet - before.CmdGet,
		sets:    after.CmdSet - before.CmdSet,
		touches: after.CmdTouch - before.CmdTouch,
		deletes: after.DeleteHits + after.DeleteMisses - before.DeleteHits - before.DeleteMisses,
	}
}

func (d opsDiff) total() uint64 { return d.gets + d.sets + d.touches + d.deletes }

func (d opsDiff) String() string {
	return fmt.Sprintf("get %d, set %d, touch %d, delete %d", d.gets, d.sets, d.touches, d.deletes)
}

// opsDelta returns how many data operations memcached server s has served
// since base was read.
func opsDelta(t testing.TB, s *memcachetest.Server, base uint64) uint64 {
	t.Helper()
	return s.Ops(t) - base
}

// --- Waiting ---

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

// waitFor waits until ch is closed, for at most 5s.
func waitFor(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("after 5s: still waiting for %s", what)
	}
}

// --- Messages ---

// jsonString is a tiny helper for messages.
func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// captureLogs returns a logger that writes text records to the returned
// buffer, which a test can read while the Manager's goroutines write.
func captureLogs() (*slog.Logger, *proctest.Buffer) {
	c := &proctest.Buffer{}
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

// testKeys returns Config.Keys for tests: one key of 32 bytes.
func testKeys() [][]byte { return [][]byte{[]byte("0123456789abcdef0123456789abcdef")} }
