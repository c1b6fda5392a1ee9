package mcsession

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestConcurrentRequestsOnOneSessionLoseNothing proves that concurrent
// requests each setting their own key on one session all reach memcached:
// after the owning instance stops, another instance sees every key. With
// SyncBackup every change is stored before its response, so even a crash
// loses nothing.
func TestConcurrentRequestsOnOneSessionLoseNothing(t *testing.T) {
	for _, tt := range []struct {
		name  string
		sync  bool
		crash bool // stop instance a with crash instead of Shutdown
	}{
		{"async, Shutdown", false, false},
		{"sync, Shutdown", true, false},
		{"sync, crash", true, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			servers := memcachetest.StartN(t, 2)
			cfg := Config{Nodes: nodesOf(servers...), Route: "a", SyncBackup: tt.sync, OperationTimeout: opTimeout}
			a := newInstance(t, cfg)
			cfg.Route = "b"
			b := newInstance(t, cfg)

			br := newBrowser(t)
			mustDo(t, br, a, "POST", "/set?key=init&value=1")
			want := []string{"init"}
			const n = 50
			paths := make([]string, n)
			codes := make([]int, n)
			bodies := make([]string, n)
			var wg sync.WaitGroup
			for i := range n {
				key := fmt.Sprintf("k%02d", i)
				want = append(want, key)
				paths[i] = "/set?key=" + key + "&value=x"
				wg.Add(1)
				go func() {
					defer wg.Done()
					// do, not mustDo: this is not the test's goroutine.
					codes[i], bodies[i] = br.do(a, "POST", paths[i])
				}()
			}
			wg.Wait()
			for i, code := range codes {
				assert.Equal(t, http.StatusOK, code, "POST %s = %d %q, want 200", paths[i], code, bodies[i])
			}
			slices.Sort(want)
			wantKeys := strings.Join(want, ",")
			body := mustDo(t, br, a, "GET", "/keys")
			require.Equal(t, wantKeys, body, "GET /keys on a after %d concurrent sets = %q, want %q", n, body, wantKeys)

			if tt.crash {
				a.crash()
			} else {
				a.srv.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				err := a.m.Shutdown(ctx)
				require.NoError(t, err, "Shutdown() = %v, want nil: every backup must be written before it returns", err)
			}
			body = mustDo(t, br, b, "GET", "/keys")
			assert.Equal(t, wantKeys, body, "GET /keys on b after a stopped = %q, want %q: b must take over every key", body, wantKeys)
			got := b.m.Stats().Takeovers
			assert.Equal(t, uint64(1), got, "Stats().Takeovers on b = %d, want 1: the session is loaded from memcached once", got)
		})
	}
}

// TestCloseStopsEveryGoroutine proves that Close and Shutdown, in any order
// and any number of times, return promptly, return nil, and leave no
// goroutine of the Manager running. It is not parallel: it counts the
// goroutines of the whole process (runtime.NumGoroutine), so the requests
// go straight to the middleware, without a server or client whose
// connection goroutines would blur the count.
func TestCloseStopsEveryGoroutine(t *testing.T) {
	shutdown := func(m *Manager) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return m.Shutdown(ctx)
	}
	closeM := func(m *Manager) error { return m.Close() }
	type stop struct {
		name string
		f    func(*Manager) error
	}
	for _, tt := range []struct {
		nodes bool
		stops []stop
	}{
		{true, []stop{{"Close", closeM}, {"Close", closeM}}},
		{true, []stop{{"Shutdown", shutdown}, {"Shutdown", shutdown}}},
		{true, []stop{{"Close", closeM}, {"Shutdown", shutdown}}},
		{true, []stop{{"Shutdown", shutdown}, {"Close", closeM}}},
		{false, []stop{{"Shutdown", shutdown}, {"Close", closeM}, {"Shutdown", shutdown}}},
	} {
		var names []string
		for _, s := range tt.stops {
			names = append(names, s.name)
		}
		name := strings.Join(names, ", ")
		if !tt.nodes {
			name = "no nodes: " + name
		}
		t.Run(name, func(t *testing.T) {
			cfg := Config{BackupWorkers: 3, Route: "a", OperationTimeout: opTimeout}
			if tt.nodes {
				// Started before the baseline: memcachetest keeps a
				// goroutine per process until the test's cleanup.
				servers := memcachetest.StartN(t, 2)
				cfg.Nodes = nodesOf(servers...)
			}
			base := settledGoroutines(t)
			m := newTestManager(t, cfg)
			// Some traffic, so the workers have had something to do.
			rec := serveSession(m, "", func(s *Session) { s.Set("k", "v") })
			id := setCookieValue(t, rec.Result().Header)
			require.NotEmpty(t, id, "Set-Cookie after Set = none, want a session cookie")
			waitIdle(t, m) // the cart is changed after Set below: no backup may be encoding the session then
			serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
				c := &cart{}
				s.Set("cart", c)
				c.Items = append(c.Items, "x") // changed in place after Set
			})
			waitIdle(t, m)
			wantRunning := 1 // the sweeper
			if tt.nodes {
				wantRunning += 3 + 3 // the workers, the retry loop, the prober and the restart check
			}
			running := goroutinesWithin(2*time.Second, func(n int) bool { return n-base == wantRunning }) - base
			assert.Equal(t, wantRunning, running, "goroutines of a running Manager = %d, want %d", running, wantRunning)
			assert.Equal(t, int32(wantRunning), m.running.Load(), "Manager.running of a running Manager")

			for _, s := range tt.stops {
				done := make(chan error, 1)
				go func() { done <- s.f(m) }()
				select {
				case err := <-done:
					assert.NoError(t, err, "%s() = %v, want nil", s.name, err)
				case <-time.After(2 * time.Second):
					require.FailNow(t, s.name+"() did not return within 2s", "want it to stop the Manager promptly")
				}
				// No polling: Close has waited for every loop to return.
				assert.Zero(t, m.running.Load(), "after %s() returned: Manager.running, want 0", s.name)
				n := goroutinesWithin(2*time.Second, func(n int) bool { return n <= base })
				assert.LessOrEqual(t, n, base, "after %s() returned: %d goroutines, want at most the %d before New: no loop of the Manager may keep running", s.name, n, base)
			}
			waited := make(chan struct{})
			go func() {
				m.wg.Wait()
				close(waited)
			}()
			select {
			case <-waited:
			case <-time.After(time.Second):
				require.FailNow(t, "the Manager's WaitGroup is not done within 1s after it was stopped", "want it done: Close waits for it")
			}
		})
	}
}

// TestCloseWaitsForBusyWorker proves that Close does not return while a
// backup worker is still storing a session: it waits for the store to end.
func TestCloseWaitsForBusyWorker(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	base := settledGoroutines(t)
	in, gate := newGatedInstance(t, Config{Nodes: nodesOf(servers...), BackupWorkers: 1, OperationTimeout: opTimeout})
	br := newBrowser(t)
	mustDo(t, br, in, "POST", "/set?key=gate&value=1")
	gate.waitEntered(t)
	in.srv.Close()
	br.client.CloseIdleConnections()

	done := make(chan error, 1)
	go func() { done <- in.m.Close() }()
	// Close marks the Manager closed first, then stops its loops and waits
	// for them: every loop but the worker in the gate returns, and Close
	// must still be waiting.
	eventually(t, 2*time.Second, "Close did not stop the idle loops", func() bool {
		return in.m.closed.Load() && in.m.running.Load() == 1
	})
	select {
	case err := <-done:
		require.FailNow(t, fmt.Sprintf("Close() = %v while a backup worker was still storing a session", err), "want it to wait for the worker")
	default:
	}
	gate.open()
	select {
	case err := <-done:
		assert.NoError(t, err, "Close() = %v, want nil", err)
	case <-time.After(2 * time.Second):
		require.FailNow(t, "Close did not return within 2s after the worker was let go", "want it to return once the store ends")
	}
	assert.Zero(t, in.m.running.Load(), "after Close returned: Manager.running, want 0")
	n := goroutinesWithin(2*time.Second, func(n int) bool { return n <= base })
	assert.LessOrEqual(t, n, base, "after Close returned: %d goroutines, want at most the %d before New: no loop of the Manager may keep running", n, base)
}

// TestInPlaceChangeDoesNotRaceWithBackup pins the race between a backup
// worker encoding a *cart and the next request changing it in place: the
// worker must not encode a session while a request uses it. Run with -race.
func TestInPlaceChangeDoesNotRaceWithBackup(t *testing.T) {
	for _, tc := range []struct {
		name string
		tc   Transcoder
	}{{"gob", GobTranscoder{}}, {"json", JSONTranscoder{}}} {
		t.Run(tc.name, func(t *testing.T) {
			servers := memcachetest.StartN(t, 2)
			cfg := Config{Nodes: nodesOf(servers...), Route: "a", Transcoder: tc.tc, RetryInterval: 10 * time.Millisecond}
			a := newInstance(t, cfg)
			cfg.Route = "b"
			b := newInstance(t, cfg)
			br := newBrowser(t)
			var want []string
			for i := range 100 {
				item := fmt.Sprintf("i%d", i)
				want = append(want, item)
				body := mustDo(t, br, a, "POST", "/cart/add?item="+item)
				require.Equal(t, strings.Join(want, ","), body, "POST /cart/add?item=%s = %q, want every item so far", item, body)
			}
			a.srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := a.m.Shutdown(ctx)
			require.NoError(t, err, "Shutdown() = %v, want nil: every backup must be written before it returns", err)
			body := mustDo(t, br, b, "GET", "/cart")
			assert.Equal(t, strings.Join(want, ","), body, "GET /cart on b = %q, want all 100 items taken over from memcached", body)
		})
	}
}

// settledGoroutines returns runtime.NumGoroutine once it has stayed the
// same for 50ms (or after 5s, whatever it is then): a baseline for
// goroutinesWithin. Idle client connections are closed first, and the
// goroutines of earlier tests (connections their servers closed) get the
// time to exit, so they do not leave during the measurement.
func settledGoroutines(t testing.TB) int {
	t.Helper()
	http.DefaultClient.CloseIdleConnections()
	deadline := time.Now().Add(5 * time.Second)
	n, same := runtime.NumGoroutine(), 0
	for same < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // sampling interval of the poll
		if m := runtime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	return n
}

// goroutinesWithin polls runtime.NumGoroutine every 10ms until done holds
// for it or within has passed, and returns the last count, for the caller
// to check.
func goroutinesWithin(within time.Duration, done func(n int) bool) int {
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if done(n) || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}
