package mcsession

import (
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcsession/mcsession/internal/mcwire"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

// repairSessionsEnv overrides how many sessions BenchmarkNodeRestartRepair
// creates, e.g. MCSESSION_REPAIR_SESSIONS=1000000.
const repairSessionsEnv = "MCSESSION_REPAIR_SESSIONS"

const (
	// defaultRepairSessions keeps the benchmark to a few seconds under
	// -race, as CI runs it.
	defaultRepairSessions = 20_000
	// repairCheckInterval is the Config.RestartCheckInterval of the run.
	repairCheckInterval = 100 * time.Millisecond
	// The request stream: streamGoroutines goroutines, each pausing
	// streamPause after each request (about a thousand requests a second
	// each); one request in streamWriteEvery is a write.
	streamGoroutines = 2
	streamPause      = time.Millisecond
	streamWriteEvery = 10
)

// BenchmarkNodeRestartRepair measures the repair of a memcached node that
// restarted empty. One Manager holds N sessions (MCSESSION_REPAIR_SESSIONS,
// default 20,000), each a 3-item cart with a copy on both of two nodes. One
// node is restarted empty; the benchmark waits until the restart check
// (every 100ms) has noticed it and every session with a copy there is
// stored again: Stats.SessionsRepaired has reached their number, the
// backup queue is idle and the node holds a copy of each. Meanwhile two
// goroutines send sticky requests (reads of existing sessions, one in ten
// a write), as they do for the same time before the restart.
//
// It reports:
//
//	sessions            sessions with a copy on the restarted node
//	repair-s            from the restart to the end of the repair
//	detect-ms           from the restart until the check noticed it
//	sessions/s          sessions repaired per second, from detection to the end
//	mc-sets             memcached sets on both nodes during the repair (with
//	                    the two of each write of the requests)
//	mc-sets/s           the same per second, from detection to the end
//	req-p50/p99-before-µs, req-p50/p99-during-µs
//	                    request latency (ServeHTTP) before the restart and
//	                    during the repair
//	sched-p99-before-µs, sched-p99-during-µs
//	                    how long goroutines waited for a CPU (runtime/metrics
//	                    /sched/latencies, bucket bound), which a server's
//	                    requests wait too before ServeHTTP starts
//
// The scenario runs once per call, whatever b.N, and ns/op is the repair's
// duration: run it with -benchtime 1x (otherwise the framework calls it
// again, with a larger b.N, while the repair took less than -benchtime).
func BenchmarkNodeRestartRepair(b *testing.B) {
	n := repairSessions(b)
	deadline := repairDeadline(n)
	servers := memcachetest.StartN(b, 2, memcachetest.Options{MemoryMB: repairMemoryMB(n)})
	logger, logs := captureLogs()
	b.Cleanup(func() {
		if b.Failed() {
			b.Log("Manager log:\n" + logs.String())
		}
	})
	m := newTestManager(b, Config{
		Nodes:                nodesOf(servers...),
		Route:                "a",
		RestartCheckInterval: repairCheckInterval,
		Logger:               logger,
	})
	h := m.Middleware(repairApp())
	ids := createSessions(b, h, n)
	waitSettled(b, m, deadline)
	restarted, other := servers[0], servers[1] // n1, n2
	want := sessionsWithCopyOn(m, "n1")
	if want == 0 {
		b.Fatalf("no session of %d has a copy on n1", n)
	}

	st := startStream(b, h, ids)
	time.Sleep(beforeWindow(n))
	beforeEnd := st.pause()
	waitSettled(b, m, deadline) // the stream's writes are stored: n1 is idle
	otherBefore := mustStats(b, other)
	awaitRestartCheck(b, m, "n1")
	restarted.Restart()
	b.ResetTimer()
	start := time.Now()
	st.resume(windowDuring)
	detect := waitRepaired(b, m, restarted, want, start, start.Add(deadline))
	b.StopTimer()
	took := time.Since(start)
	st.stop()

	if f := st.failed.Load(); f > 0 {
		b.Errorf("%d requests of the stream did not find their session", f)
	}
	beforeStart := beforeEnd.Add(-took) // a stretch as long as the repair
	if beforeStart.Before(st.started) {
		beforeStart = st.started // the repair took longer than beforeWindow
	}
	res := repairResult{
		sessions:     want,
		took:         took,
		detect:       detect,
		sets:         mustStats(b, restarted).CmdSet + mustStats(b, other).CmdSet - otherBefore.CmdSet,
		before:       st.latencies(windowBefore, beforeStart),
		beforeWindow: beforeEnd.Sub(beforeStart),
		during:       st.latencies(windowDuring, start),
		writes:       st.writes.Load(),
		schedBefore:  schedPercentile(st.sched[windowBefore][0], st.sched[windowBefore][1], 0.99),
		schedDuring:  schedPercentile(st.sched[windowDuring][0], st.sched[windowDuring][1], 0.99),
	}
	res.report(b)
	b.Logf("%+v", m.Stats())
}

// repairResult is what BenchmarkNodeRestartRepair measured.
type repairResult struct {
	sessions     int           // sessions with a copy on the restarted node
	took         time.Duration // from the restart to the end of the repair
	detect       time.Duration // from the restart until the check noticed it
	sets         uint64        // memcached sets during the repair, both nodes
	before       []time.Duration
	beforeWindow time.Duration // the stretch before the restart that before covers
	during       []time.Duration
	writes       int64 // writes among the requests during the repair
	// schedBefore and schedDuring are the 99th percentiles of how long
	// goroutines waited for a CPU while the stream ran before the restart,
	// and during the repair.
	schedBefore, schedDuring time.Duration
}

func (r repairResult) report(b *testing.B) {
	stored := (r.took - r.detect).Seconds()
	b.ReportMetric(float64(r.sessions), "sessions")
	b.ReportMetric(r.took.Seconds(), "repair-s")
	b.ReportMetric(float64(r.detect.Milliseconds()), "detect-ms")
	b.ReportMetric(float64(r.sessions)/stored, "sessions/s")
	b.ReportMetric(float64(r.sets), "mc-sets")
	b.ReportMetric(float64(r.sets)/stored, "mc-sets/s")
	b.ReportMetric(micros(percentile(r.before, 0.50)), "req-p50-before-µs")
	b.ReportMetric(micros(percentile(r.before, 0.99)), "req-p99-before-µs")
	b.ReportMetric(micros(percentile(r.during, 0.50)), "req-p50-during-µs")
	b.ReportMetric(micros(percentile(r.during, 0.99)), "req-p99-during-µs")
	b.ReportMetric(micros(r.schedBefore), "sched-p99-before-µs")
	b.ReportMetric(micros(r.schedDuring), "sched-p99-during-µs")
	b.Logf("%d sessions repaired in %v, noticed after %v; %d memcached sets",
		r.sessions, r.took, r.detect, r.sets)
	b.Logf("requests: %d in the %v before the restart (max %v), %d during the repair (max %v), %d of them writes",
		len(r.before), r.beforeWindow, percentile(r.before, 1), len(r.during), percentile(r.during, 1), r.writes)
}

// repairSessions returns the number of sessions to create.
func repairSessions(b *testing.B) int {
	s := os.Getenv(repairSessionsEnv)
	if s == "" {
		return defaultRepairSessions
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q, want a positive number of sessions", repairSessionsEnv, s)
	}
	return n
}

// repairMemoryMB is memcached's -m for n sessions. Every node holds a copy
// of each (two nodes, two copies), about 150 bytes with its key; 400 leaves
// room for memcached's slab rounding. memcached takes memory as it stores,
// so a large -m costs nothing.
func repairMemoryMB(n int) int { return 64 + n*400>>20 }

// repairDeadline bounds each wait of the benchmark for n sessions: the
// stores after they are created, and the repair.
func repairDeadline(n int) time.Duration {
	return 10*time.Second + time.Duration(n)*100*time.Microsecond
}

// beforeWindow is how long the request stream runs before the restart:
// longer than the repair should take, so that the latencies of its last
// stretch as long as the repair can be compared with those during it.
func beforeWindow(n int) time.Duration {
	return 200*time.Millisecond + time.Duration(n)*20*time.Microsecond
}

// repairApp is the application of the benchmark:
//
//	GET /new    creates a session holding a cart
//	GET /write  sets a value in the request's session
//	GET /       reads the cart
//
// /write and / answer 404 if the request names no existing session.
func repairApp() http.Handler {
	var visits atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		switch r.URL.Path {
		case "/new":
			s.Set("cart", []string{"apple", "pear", "plum"})
			return
		case "/write":
			s.Set("visits", visits.Add(1))
		default:
			Get[[]string](s, "cart")
		}
		if s.IsNew() {
			http.Error(w, "no session", http.StatusNotFound)
		}
	})
}

// serveRepair sends GET path through h, with the session cookie id unless
// it is empty.
func serveRepair(h http.Handler, id, path string) *httptest.ResponseRecorder {
	req := httptest.NewRequest("GET", path, nil)
	if id != "" {
		req.Header["Cookie"] = []string{DefaultCookieName + "=" + id}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// createSessions creates n sessions through h and returns their IDs. Each
// client comes back once: past Config.UnconfirmedBudget, a session is
// stored only then.
func createSessions(b *testing.B, h http.Handler, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		id := setCookieValue(b, serveRepair(h, "", "/new").Header())
		if id == "" {
			b.Fatalf("session %d: GET /new set no cookie", i)
		}
		if rec := serveRepair(h, id, "/"); rec.Code != http.StatusOK {
			b.Fatalf("session %d: GET / = %d %q, want 200", i, rec.Code, rec.Body)
		}
		ids[i] = id
	}
	return ids
}

// waitSettled waits until every change m holds is stored: the backup queue
// is empty and nothing is pending.
func waitSettled(b *testing.B, m *Manager, within time.Duration) {
	b.Helper()
	r := replicaOf(m)
	eventually(b, within, "backups still queued or pending", func() bool {
		return r.queue.backlog.Load() == 0 && r.queue.pendingLen() == 0
	})
}

// sessionsWithCopyOn counts the local sessions that a restart of node would
// repair: those named after it or with a copy there (nodeRestarted).
func sessionsWithCopyOn(m *Manager, node string) int {
	n := 0
	m.sessions.Range(func(_ string, e *entry) bool {
		e.mu.Lock()
		if e.node == node || e.stored.on(node) {
			n++
		}
		e.mu.Unlock()
		return true
	})
	return n
}

// awaitRestartCheck returns just after the restart check has asked node
// which server process it is, so that a restart now is over long before the
// next check: a check that found the old process killed and the new one not
// yet listening would mark the node down (its sessions would move to new
// IDs) rather than find it restarted. It forgets the process the check saw
// last, which the next check records again (a first sighting is not a
// restart), and waits for that.
func awaitRestartCheck(b *testing.B, m *Manager, node string) {
	b.Helper()
	n := replicaOf(m).cluster.load().byID[node]
	seen := func() bool {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.instance != (mcwire.Instance{})
	}
	n.mu.Lock()
	n.instance = mcwire.Instance{}
	n.mu.Unlock()
	deadline := time.Now().Add(10 * repairCheckInterval)
	for !seen() {
		if time.Now().After(deadline) {
			b.Fatalf("the restart check did not ask %s within %v", node, 10*repairCheckInterval)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// waitRepaired waits until the sessions of the node restarted at start
// (srv) are stored again: Stats.SessionsRepaired has reached want, the
// backup queue is idle, and srv holds want items. It returns how long the
// restart check took to notice the restart. It fails the benchmark at
// deadline, or if the node was seen down rather than restarted.
func waitRepaired(b *testing.B, m *Manager, srv *memcachetest.Server, want int, start, deadline time.Time) (detect time.Duration) {
	b.Helper()
	r := replicaOf(m)
	for {
		st := m.Stats()
		if detect == 0 && st.NodeRestarts > 0 {
			detect = time.Since(start)
		}
		if st.NodesUp < st.Nodes || st.Relocations > 0 {
			b.Fatalf("a node was seen down (%d of %d up, %d sessions moved): sessions moved rather than being repaired", st.NodesUp, st.Nodes, st.Relocations)
		}
		if st.SessionsRepaired >= uint64(want) && r.queue.backlog.Load() == 0 && r.queue.pendingLen() == 0 &&
			mustStats(b, srv).CurrItems >= uint64(want) {
			return detect
		}
		if time.Now().After(deadline) {
			mc := mustStats(b, srv)
			b.Fatalf("repair not done %v after the restart: %d of %d sessions repaired, the node holds %d items (%s evicted); stats %+v",
				deadline.Sub(start), st.SessionsRepaired, want, mc.CurrItems, mc.Raw["evictions"], st)
		}
		time.Sleep(time.Millisecond)
	}
}

// mustStats reads srv's counters.
func mustStats(b *testing.B, srv *memcachetest.Server) memcachetest.Stats {
	b.Helper()
	st, err := srv.Stats()
	if err != nil {
		b.Fatalf("Stats() of %s: %v", srv.Addr(), err)
	}
	return st
}

// The windows of the request stream: where a request's latency is kept.
const (
	windowBefore = iota
	windowDuring
	windowNone
)

// stream sends sticky requests for random sessions from streamGoroutines
// goroutines, each pausing streamPause after each request, and keeps the
// latency of each request in the window it started in.
type stream struct {
	h       http.Handler
	ids     []string
	started time.Time
	gate    sync.RWMutex // held for reading by each request; pause holds it
	paused  bool         // pause holds gate; only the benchmark's goroutine uses it

	window atomic.Int32 // the window of the requests starting now
	writes atomic.Int64 // writes sent during the repair
	failed atomic.Int64 // requests that did not answer 200

	stopOnce sync.Once
	done     chan struct{}
	wg       sync.WaitGroup

	mu      sync.Mutex // guards samples
	samples [windowNone][]sample

	// sched holds, for each window, the runtime's scheduling latencies
	// read when it began and when it ended.
	sched [windowNone][2]*metrics.Float64Histogram
}

// sample is one request's latency and when it started.
type sample struct {
	at time.Time
	d  time.Duration
}

// startStream starts the stream in windowBefore. It is stopped when the
// benchmark ends, if not before.
func startStream(b *testing.B, h http.Handler, ids []string) *stream {
	s := &stream{h: h, ids: ids, started: time.Now(), done: make(chan struct{})}
	s.sched[windowBefore][0] = schedLatencies()
	s.window.Store(windowBefore)
	for i := range streamGoroutines {
		s.wg.Add(1)
		go s.run(uint64(i))
	}
	b.Cleanup(s.stop)
	return s
}

func (s *stream) run(seed uint64) {
	defer s.wg.Done()
	rng := rand.New(rand.NewPCG(seed, 0))
	var kept [windowNone][]sample
	defer func() {
		s.mu.Lock()
		for w := range kept {
			s.samples[w] = append(s.samples[w], kept[w]...)
		}
		s.mu.Unlock()
	}()
	for i := 0; ; i++ {
		path := "/"
		if i%streamWriteEvery == 0 {
			path = "/write"
		}
		s.gate.RLock()
		select {
		case <-s.done:
			s.gate.RUnlock()
			return
		default:
		}
		w := s.window.Load()
		at := time.Now()
		rec := serveRepair(s.h, s.ids[rng.IntN(len(s.ids))], path)
		d := time.Since(at)
		s.gate.RUnlock()
		if rec.Code != http.StatusOK {
			s.failed.Add(1)
		}
		if w != windowNone {
			kept[w] = append(kept[w], sample{at, d})
			if w == windowDuring && path == "/write" {
				s.writes.Add(1)
			}
		}
		time.Sleep(streamPause)
	}
}

// pause waits for the requests under way and holds the next ones until
// resume. It returns the end of the window the stream was in.
func (s *stream) pause() time.Time {
	s.gate.Lock()
	s.paused = true
	s.endWindow()
	return time.Now()
}

// resume lets requests go on, in window w.
func (s *stream) resume(w int32) {
	s.sched[w][0] = schedLatencies()
	s.window.Store(w)
	s.paused = false
	s.gate.Unlock()
}

// endWindow ends the current window. The gate is held.
func (s *stream) endWindow() {
	if w := s.window.Swap(windowNone); w != windowNone {
		s.sched[w][1] = schedLatencies()
	}
}

// stop stops the stream and waits for its goroutines; it is idempotent.
func (s *stream) stop() {
	s.stopOnce.Do(func() {
		if !s.paused { // a failure may stop a paused stream
			s.gate.Lock()
		}
		s.endWindow()
		close(s.done)
		s.gate.Unlock()
		s.wg.Wait()
	})
}

// latencies returns the latencies of window w's requests that started at or
// after from. Call it after stop.
func (s *stream) latencies(w int, from time.Time) []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []time.Duration
	for _, x := range s.samples[w] {
		if !x.at.Before(from) {
			out = append(out, x.d)
		}
	}
	return out
}

// percentile returns the q quantile of ds (nearest rank), or 0 if empty.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Clone(ds)
	slices.Sort(ds)
	i := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}

// schedLatencies reads the runtime's histogram of how long goroutines
// waited, runnable, for a CPU (sampled, all goroutines of the process).
func schedLatencies() *metrics.Float64Histogram {
	s := []metrics.Sample{{Name: "/sched/latencies:seconds"}}
	metrics.Read(s)
	return s[0].Value.Float64Histogram()
}

// schedPercentile returns the q quantile of the scheduling latencies
// counted between two readings of schedLatencies: the upper bound of its
// bucket, or its lower bound for the last bucket; 0 if none was counted.
func schedPercentile(from, to *metrics.Float64Histogram, q float64) time.Duration {
	var total uint64
	for i := range to.Counts {
		total += to.Counts[i] - from.Counts[i]
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i := range to.Counts {
		seen += to.Counts[i] - from.Counts[i]
		if seen >= rank && seen > 0 {
			bound := to.Buckets[i+1]
			if math.IsInf(bound, 1) {
				bound = to.Buckets[i]
			}
			return time.Duration(bound * float64(time.Second))
		}
	}
	return 0
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
