// Benchmarks of every contender (see package contenders) on the common
// application, calling its handler directly: no network between the client
// and the handler, real memcached processes behind the contenders that use
// memcached.
//
//	cd bench && go test -run '^$' -bench . -benchmem -count 3 ./... > new.txt
//	go run golang.org/x/perf/cmd/benchstat@latest new.txt
//
// BenchmarkWorkload/<workload>/<contender> runs, per contender:
//
//	a        GET /read on one existing session with a 3-item cart
//	b        POST /write on one existing session with a 3-item cart (one item replaced)
//	c        90% reads, 10% writes over 10,000 sessions with 3-item carts, picked
//	         pseudo-randomly with a fixed seed (the same sequence for every contender)
//	d        GET /read on one session with a 50-item (4 KB) cart
//	d-write  POST /write on one session with a 50-item (4 KB) cart
//
// Besides ns/op, B/op and allocs/op, each reports mcops/op: memcached
// operations (get, set, touch, delete; summed over both nodes, read from
// memcached's own counters) per request, measured, not estimated. The
// sessions are created before the timed loop and their memcached traffic
// is left out; the traffic of the timed requests is counted after the
// contender has been closed, which for mcsession/async means after
// Shutdown has written every pending backup. Contenders without memcached
// report 0. The ns/op of a contender that waits on memcached is mostly the
// loopback round trip, which varies a lot between machines (and between
// runs on a VM); mcops/op does not.
//
// Each timed request is a fresh shallow copy of a prebuilt *http.Request
// carrying the session's Cookie header, served into a ResponseWriter that
// keeps only the headers and the status (a status >= 400 fails the run).
//
// Two memcached nodes are started once per test binary, on first use, and
// killed when it exits (TestMain); they are flushed before each benchmark.
// Without a memcached binary the memcached contenders are skipped (or fail,
// with MCSESSION_REQUIRE_MEMCACHED=1).
//
// BenchmarkIdleSessionMemory measures the heap held by 1,000,000 idle
// sessions. It is skipped unless MCSESSION_BENCH_MEMORY is set (see there),
// so `go test -run '^$' -bench . -benchtime 1x ./...`, which CI runs, stays
// quick.
package bench

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/mcsession/mcsession/bench/contenders"
	"github.com/mcsession/mcsession/internal/memcachetest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(libraryLog, nil)))
	code := m.Run()
	libraryLog.print()
	if !stopNodes() && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// libraryLog holds what the libraries log during the run (mcsession warns
// through slog.Default, gin-contrib/sessions logs failed loads with
// slog.Error, scs logs errors with the log package, which slog.SetDefault
// also redirects), so that it cannot break the benchmark result lines that
// benchstat parses. TestMain prints it to stderr at the end.
var libraryLog = &logTap{}

// logTap is an io.Writer that keeps the first logTapKeep lines and counts the
// rest.
type logTap struct {
	mu      sync.Mutex
	lines   []string
	dropped int
}

const logTapKeep = 20

func (t *logTap) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) < logTapKeep {
		t.lines = append(t.lines, strings.TrimRight(string(p), "\n"))
	} else {
		t.dropped++
	}
	return len(p), nil
}

func (t *logTap) print() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "logged by the libraries during the run (%d lines):\n", len(t.lines)+t.dropped)
	for _, l := range t.lines {
		fmt.Fprintln(os.Stderr, "  "+l)
	}
	if t.dropped > 0 {
		fmt.Fprintf(os.Stderr, "  ... and %d more\n", t.dropped)
	}
}

// smallCart is the cart size of workloads a, b and c, and of the memory
// benchmark; bigCart (50 items of 64 bytes) makes the 4 KB session of d.
const (
	smallCart = 3
	bigCart   = 50
)

// workload is one request mix.
type workload struct {
	name     string
	sessions int // sessions created before the timed loop
	items    int // cart size
	// writePercent of the requests are POST /write, the rest GET /read.
	writePercent int
}

var workloads = []workload{
	{name: "a", sessions: 1, items: smallCart, writePercent: 0},
	{name: "b", sessions: 1, items: smallCart, writePercent: 100},
	{name: "c", sessions: 10_000, items: smallCart, writePercent: 10},
	{name: "d", sessions: 1, items: bigCart, writePercent: 0},
	{name: "d-write", sessions: 1, items: bigCart, writePercent: 100},
}

// BenchmarkWorkload runs every workload against every contender.
func BenchmarkWorkload(b *testing.B) {
	for _, w := range workloads {
		b.Run(w.name, func(b *testing.B) {
			for _, c := range contenders.All() {
				b.Run(strings.ReplaceAll(c.Name, "/", "-"), func(b *testing.B) {
					runWorkload(b, c, w)
				})
			}
		})
	}
}

// scheduleLen is the length of the precomputed request sequence; the timed
// loop cycles through it, so the choice costs an index and nothing else.
const scheduleLen = 1 << 16

// step is one request of the sequence: which session, read or write.
type step struct {
	session int32
	write   bool
}

// schedule returns the request sequence of w, the same for every contender
// and every run (fixed seed).
func schedule(w workload) []step {
	rng := rand.New(rand.NewPCG(20240601, uint64(w.sessions)))
	s := make([]step, scheduleLen)
	for i := range s {
		s[i] = step{session: int32(rng.IntN(w.sessions)), write: rng.IntN(100) < w.writePercent}
	}
	return s
}

func runWorkload(b *testing.B, c contenders.Contender, w workload) {
	var nodes []*memcachetest.Server
	var addrs []string
	if c.Memcached {
		nodes = memcachedNodes(b)
		for _, n := range nodes {
			require.NoError(b, n.Flush(), "flush memcached %s before the benchmark", n.Addr())
			addrs = append(addrs, n.Addr())
		}
	}
	h, closeContender, err := c.New(addrs)
	require.NoError(b, err, "%s: New(%q) failed, want a handler", c.Name, addrs)
	closed := false
	defer func() {
		if !closed {
			closeContender()
		}
	}()

	cookies := login(b, h, w.sessions, w.items)
	reads := make([]*http.Request, len(cookies))
	writes := make([]*http.Request, len(cookies))
	for i, cookie := range cookies {
		reads[i] = newRequest(b, "GET", "/read", cookie)
		writes[i] = newRequest(b, "POST", "/write", cookie)
	}
	if !c.NoSessions { // the floors keep no cart per session
		for _, i := range []int{0, len(cookies) - 1} {
			got := serve(b, h, reads[i])
			require.Equal(b, strconv.Itoa(w.items), got, "session %d: /read answered %q, want %d items: login filled the cart", i, got, w.items)
		}
	}
	sched := schedule(w)
	before := settle(b, h, nodes)

	rw := &discardWriter{h: make(http.Header)}
	req := new(http.Request)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		st := sched[i%scheduleLen]
		i++
		base := reads[st.session]
		if st.write {
			base = writes[st.session]
		}
		// A fresh copy each time: gorilla/sessions stores its registry by
		// replacing *r with r.WithContext(...), and nothing of one request
		// may leak into the next.
		*req = *base
		clear(rw.h)
		rw.code = 0
		h.ServeHTTP(rw, req)
		if rw.code >= 400 { // tested before calling require, which would cost the loop its arguments
			require.FailNowf(b, "error status", "%s %s: status %d, want < 400", base.Method, base.URL.Path, rw.code)
		}
	}

	var mcops float64
	if c.Memcached {
		closeContender() // mcsession: Shutdown writes the pending backups
		closed = true
		mcops = float64(settle(b, h, nodes)-before) / float64(b.N)
	}
	b.ReportMetric(mcops, "mcops/op")
}

// login creates n sessions holding a cart of items items through h and
// returns the Cookie header of each (empty for a contender without
// sessions).
func login(b *testing.B, h http.Handler, n, items int) []string {
	b.Helper()
	target := "/login?items=" + strconv.Itoa(items)
	cookies := make([]string, n)
	for i := range cookies {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", target, nil))
		res := rec.Result()
		require.Equal(b, http.StatusOK, res.StatusCode, "POST %s: status %d: %s, want 200", target, res.StatusCode, rec.Body)
		var parts []string
		for _, c := range res.Cookies() {
			parts = append(parts, c.Name+"="+c.Value)
		}
		cookies[i] = strings.Join(parts, "; ")
	}
	return cookies
}

// newRequest returns a request for the timed loop, carrying cookie.
func newRequest(b *testing.B, method, target, cookie string) *http.Request {
	r, err := http.NewRequest(method, "http://bench.test"+target, nil)
	require.NoError(b, err, "NewRequest(%s, %s)", method, target)
	r.RemoteAddr = "127.0.0.1:40000"
	if cookie != "" {
		r.Header.Set("Cookie", cookie)
	}
	return r
}

// serve runs a copy of r through h and returns the body; a status other than
// 200 fails the benchmark.
func serve(b *testing.B, h http.Handler, r *http.Request) string {
	b.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r.Clone(r.Context()))
	require.Equal(b, http.StatusOK, rec.Code, "%s %s: status %d: %s, want 200", r.Method, r.URL.Path, rec.Code, rec.Body)
	return rec.Body.String()
}

// discardWriter is the cheapest http.ResponseWriter: it keeps the headers
// (cleared between requests) and the status, and drops the body.
type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header { return w.h }

func (w *discardWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return len(p), nil
}

func (w *discardWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
}

// settle waits until the contender's memcached traffic has stopped and
// returns the number of operations memcached has handled (summed over
// nodes). A contender that writes in the background (contenders.Backlogged)
// must first have nothing queued; then the counters must stay unchanged for
// settleQuiet, which covers a write a worker has taken from its queue but
// not yet sent.
func settle(b *testing.B, h http.Handler, nodes []*memcachetest.Server) uint64 {
	b.Helper()
	if len(nodes) == 0 {
		return 0
	}
	deadline := time.Now().Add(30 * time.Second)
	if bl, ok := h.(contenders.Backlogged); ok {
		for bl.Backlog() > 0 {
			if time.Now().After(deadline) {
				require.FailNowf(b, "backlog", "backups still queued after 30s: %d, want none", bl.Backlog())
			}
			time.Sleep(time.Millisecond) // poll until the deadline
		}
	}
	prev, quietSince := nodeOps(b, nodes), time.Now()
	for time.Since(quietSince) < settleQuiet {
		if time.Now().After(deadline) {
			require.FailNow(b, "memcached traffic did not stop within 30s, want it to once the backlog is empty")
		}
		time.Sleep(settleQuiet / 5) // poll until the deadline
		if cur := nodeOps(b, nodes); cur != prev {
			prev, quietSince = cur, time.Now()
		}
	}
	return prev
}

// settleQuiet is how long memcached's counters must stay still for settle.
const settleQuiet = 20 * time.Millisecond

// nodeOps sums the data operations of nodes (memcachetest.Stats.Ops: get,
// set, touch, delete, incr, decr).
func nodeOps(b *testing.B, nodes []*memcachetest.Server) uint64 {
	b.Helper()
	var ops uint64
	for _, n := range nodes {
		st, err := n.Stats()
		require.NoError(b, err, "Stats() of memcached %s", n.Addr())
		ops += st.Ops()
	}
	return ops
}

// The memcached nodes are shared by every benchmark of the process. They are
// started with processTB, not with a benchmark's *testing.B, whose cleanup
// would kill them when that benchmark ends; TestMain runs the cleanups.
var (
	nodesOnce   sync.Once
	nodesTB     = &processTB{}
	sharedNodes []*memcachetest.Server
)

// memcachedNodes returns the two shared memcached nodes, starting them on
// first use, or skips (fails, if memcachetest.EnvRequire is set) b when
// memcached cannot be started.
func memcachedNodes(b *testing.B) []*memcachetest.Server {
	b.Helper()
	nodesOnce.Do(func() { sharedNodes = memcachetest.StartN(nodesTB, 2) })
	if len(sharedNodes) == 2 {
		return sharedNodes
	}
	nodesTB.mu.Lock()
	defer nodesTB.mu.Unlock()
	if nodesTB.skip != "" && !nodesTB.failed {
		b.Skip(nodesTB.skip)
	}
	require.FailNowf(b, "no memcached", "memcached nodes could not be started: %s", strings.Join(nodesTB.errors, "; "))
	return nil
}

// stopNodes kills the shared memcached nodes and reports whether that and
// everything else processTB was told went well.
func stopNodes() bool {
	nodesTB.mu.Lock()
	cleanups := nodesTB.cleanups
	nodesTB.cleanups = nil
	nodesTB.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	nodesTB.mu.Lock()
	defer nodesTB.mu.Unlock()
	for _, e := range nodesTB.errors {
		fmt.Fprintln(os.Stderr, "memcached:", e)
	}
	return !nodesTB.failed
}

// processTB is the testing.TB memcachetest.Start is given for the process's
// nodes: it collects cleanups for TestMain and records failures and skips.
// It implements what memcachetest calls; the embedded nil TB makes any
// other method panic, which would be a bug here.
type processTB struct {
	testing.TB
	mu       sync.Mutex
	cleanups []func()
	errors   []string
	failed   bool
	skip     string
}

func (t *processTB) Helper()          {}
func (t *processTB) Name() string     { return "bench-memcached" }
func (t *processTB) Cleanup(f func()) { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }

func (t *processTB) Errorf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }
func (t *processTB) Error(args ...any)                 { t.fail(fmt.Sprint(args...)) }
func (t *processTB) Fatalf(format string, args ...any) { t.fail(fmt.Sprintf(format, args...)) }
func (t *processTB) Fatal(args ...any)                 { t.fail(fmt.Sprint(args...)) }
func (t *processTB) Skip(args ...any)                  { t.skipped(fmt.Sprint(args...)) }
func (t *processTB) Skipf(format string, args ...any)  { t.skipped(fmt.Sprintf(format, args...)) }

func (t *processTB) fail(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed = true
	t.errors = append(t.errors, msg)
}

func (t *processTB) skipped(msg string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.skip = msg
}

// memoryEnv enables BenchmarkIdleSessionMemory: "1" for the default
// 1,000,000 sessions, or a number of sessions (at least 1000).
const memoryEnv = "MCSESSION_BENCH_MEMORY"

// memorySessions is the default session count of the memory benchmark.
const memorySessions = 1_000_000

// BenchmarkIdleSessionMemory creates many idle sessions, each holding a
// 3-item cart, in a contender that keeps them in process memory, and reports
// the heap they hold (HeapAlloc after GC, before and after):
//
//	B/session           heap per session
//	cart-B/session      the cart's own size: slice header, string headers, bytes
//	overhead-B/session  B/session minus cart-B/session: what the library costs
//
// and, with "op" meaning the creation of one session (GOMAXPROCS goroutines
// create them, one POST /login each): ns/op (wall time, including the GC
// work of a growing heap), B/op and allocs/op (everything allocated while
// creating, garbage included).
//
// It is heavy (about 1 GB of heap and 5 to 10 s per contender), so it is
// skipped unless MCSESSION_BENCH_MEMORY is set:
//
//	MCSESSION_BENCH_MEMORY=1 go test -run '^$' -bench IdleSessionMemory ./...
//
// The sessions are created once per run of the benchmark (once per -count),
// whatever b.N is: the runs with a larger b.N that the benchmark framework
// may ask for report the same figures without measuring again.
// scs/memstore keeps each session gob-encoded, not as Go values, so for it
// "overhead" is everything beyond the size the cart would have as a value.
func BenchmarkIdleSessionMemory(b *testing.B) {
	n := memorySessions
	switch v := os.Getenv(memoryEnv); v {
	case "", "0":
		b.Skipf("heavy (%d sessions, ~1 GB); set %s=1 to run it, or %s=<sessions>", memorySessions, memoryEnv, memoryEnv)
	case "1":
	default:
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err, "%s=%q: want 1 or a number of sessions >= 1000", memoryEnv, v)
		require.GreaterOrEqual(b, n, 1000, "%s=%q: want 1 or a number of sessions >= 1000", memoryEnv, v)
	}
	for _, c := range []contenders.Contender{
		contenders.MCSession("mcsession/inprocess", false, false),
		contenders.SCSMemstore(),
	} {
		var m *idleMemory
		b.Run(strings.ReplaceAll(c.Name, "/", "-"), func(b *testing.B) {
			if m == nil || b.N == 1 {
				m = measureIdleSessions(b, c, n)
			}
			b.ReportMetric(m.perSession, "B/session")
			b.ReportMetric(m.cart, "cart-B/session")
			b.ReportMetric(m.perSession-m.cart, "overhead-B/session")
			b.ReportMetric(float64(m.create.Nanoseconds())/float64(n), "ns/op")
			b.ReportMetric(float64(m.allocBytes)/float64(n), "B/op")
			b.ReportMetric(float64(m.allocs)/float64(n), "allocs/op")
		})
	}
}

// idleMemory is what measureIdleSessions found.
type idleMemory struct {
	perSession float64       // heap bytes per session
	cart       float64       // the cart's own bytes
	create     time.Duration // time to create the sessions
	allocBytes uint64        // bytes allocated while creating them
	allocs     uint64        // objects allocated while creating them
}

// measureIdleSessions creates n sessions with a smallCart-item cart through
// c, on GOMAXPROCS goroutines, and measures the heap they hold.
func measureIdleSessions(tb testing.TB, c contenders.Contender, n int) *idleMemory {
	tb.Helper()
	h, closeContender, err := c.New(nil)
	require.NoError(tb, err, "%s: New(nil) failed, want a handler", c.Name)
	defer closeContender()
	base := httptest.NewRequest("POST", "/login?items="+strconv.Itoa(smallCart), nil)
	workers := runtime.GOMAXPROCS(0)
	failed := make(chan int, workers)
	before := memStatsAfterGC()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := new(http.Request)
			rw := &discardWriter{h: make(http.Header)}
			for i := w; i < n; i += workers {
				*req = *base
				clear(rw.h)
				rw.code = 0
				h.ServeHTTP(rw, req)
				if rw.code >= 400 {
					failed <- rw.code
					return
				}
			}
		}()
	}
	wg.Wait()
	created := time.Since(start)
	close(failed)
	code, ok := <-failed
	require.False(tb, ok, "login: status %d, want 200 for every session", code)
	after := memStatsAfterGC()
	runtime.KeepAlive(h)
	return &idleMemory{
		perSession: (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n),
		cart:       float64(cartSize(contenders.Cart(smallCart))),
		create:     created,
		allocBytes: after.TotalAlloc - before.TotalAlloc,
		allocs:     after.Mallocs - before.Mallocs,
	}
}

// memStatsAfterGC returns the memory statistics after a full collection
// (two, so that objects freed by finalizers are gone too).
func memStatsAfterGC() *runtime.MemStats {
	runtime.GC()
	runtime.GC()
	ms := new(runtime.MemStats)
	runtime.ReadMemStats(ms)
	return ms
}

// cartSize is the memory a cart holds as a value: its slice header (boxed
// when stored in an interface, as every session library does), the backing
// array of string headers, and the strings' bytes. Go's allocator rounds
// each up to its size class; for 3 items of 64 bytes every piece is exactly
// a size class (24, 48, 64).
func cartSize(cart []string) int {
	n := int(unsafe.Sizeof(cart)) + cap(cart)*int(unsafe.Sizeof(""))
	for _, s := range cart {
		n += len(s)
	}
	return n
}

// TestIdleSessionMemory runs the memory measurement on a few sessions, so
// that `go test` keeps it working; the figures come from the benchmark.
func TestIdleSessionMemory(t *testing.T) {
	for _, c := range []contenders.Contender{
		contenders.MCSession("mcsession/inprocess", false, false),
		contenders.SCSMemstore(),
	} {
		m := measureIdleSessions(t, c, 2000)
		assert.Positive(t, m.perSession, "%s: %.0f B/session, want > 0: idle sessions hold memory", c.Name, m.perSession)
		assert.Equal(t, float64(24+3*16+3*64), m.cart, "%s: cart %.0f B, want %d: a slice header, 3 string headers, 3 x 64 bytes", c.Name, m.cart, 24+3*16+3*64)
	}
}
