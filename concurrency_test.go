package mcsession

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
			var wg sync.WaitGroup
			for i := range n {
				key := fmt.Sprintf("k%02d", i)
				want = append(want, key)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if code, body := br.do(a, "POST", "/set?key="+key+"&value=x"); code != http.StatusOK {
						t.Errorf("POST /set?key=%s = %d %q, want 200", key, code, body)
					}
				}()
			}
			wg.Wait()
			slices.Sort(want)
			wantKeys := strings.Join(want, ",")
			if body := mustDo(t, br, a, "GET", "/keys"); body != wantKeys {
				t.Fatalf("GET /keys on a after %d concurrent sets = %q, want %q", n, body, wantKeys)
			}

			if tt.crash {
				a.crash()
			} else {
				a.srv.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := a.m.Shutdown(ctx); err != nil {
					t.Fatalf("Shutdown() = %v, want nil", err)
				}
			}
			if body := mustDo(t, br, b, "GET", "/keys"); body != wantKeys {
				t.Errorf("GET /keys on b after a stopped = %q, want %q", body, wantKeys)
			}
			if got := b.m.Stats().Takeovers; got != 1 {
				t.Errorf("Stats().Takeovers on b = %d, want 1", got)
			}
		})
	}
}

// TestCloseStopsEveryGoroutine proves that Close and Shutdown, in any order
// and any number of times, return promptly, return nil, and leave no
// goroutine of the Manager running. It is not parallel: it counts the
// library's goroutines in the whole process.
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
				servers := memcachetest.StartN(t, 2)
				cfg.Nodes = nodesOf(servers...)
			}
			in := newInstance(t, cfg)
			// Some traffic, so the workers have had something to do.
			br := newBrowser(t)
			mustDo(t, br, in, "POST", "/set?key=k&value=v")
			waitIdle(t, in.m) // /cart/add changes the cart after Set: no backup may be encoding it
			mustDo(t, br, in, "POST", "/cart/add?item=x")
			waitIdle(t, in.m)
			wantRunning := 1 // the sweeper
			if tt.nodes {
				wantRunning += 3 + 2 // the workers, the retry loop and the prober
			}
			if got := int(in.m.running.Load()); got != wantRunning {
				t.Errorf("goroutines of a running Manager = %d, want %d", got, wantRunning)
			}
			in.srv.Close()

			for _, s := range tt.stops {
				done := make(chan error, 1)
				go func() { done <- s.f(in.m) }()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("%s() = %v, want nil", s.name, err)
					}
				case <-time.After(2 * time.Second):
					t.Fatalf("%s() did not return within 2s", s.name)
				}
				// No polling: Close has waited for every loop to return.
				if got := in.m.running.Load(); got != 0 {
					t.Errorf("after %s() returned: %d Manager loops still running, want 0", s.name, got)
				}
			}
			waited := make(chan struct{})
			go func() {
				in.m.wg.Wait()
				close(waited)
			}()
			select {
			case <-waited:
			case <-time.After(time.Second):
				t.Fatal("the Manager's WaitGroup is not done after it was stopped")
			}
		})
	}
}

// TestCloseWaitsForBusyWorker proves that Close does not return while a
// backup worker is still storing a session: it waits for the store to end.
func TestCloseWaitsForBusyWorker(t *testing.T) {
	servers := memcachetest.StartN(t, 1)
	in, gate := newGatedInstance(t, Config{Nodes: nodesOf(servers...), BackupWorkers: 1, OperationTimeout: opTimeout})
	br := newBrowser(t)
	mustDo(t, br, in, "POST", "/set?key=gate&value=1")
	gate.waitEntered(t)
	in.srv.Close()

	done := make(chan error, 1)
	go func() { done <- in.m.Close() }()
	eventually(t, 2*time.Second, "Close did not start waiting for the busy worker", func() bool {
		select {
		case <-done:
			t.Fatal("Close returned while a backup worker was still storing a session")
		default:
		}
		return in.m.closed.Load() && in.m.running.Load() > 0
	})
	gate.open()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close() = %v, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not return within 2s after the worker was let go")
	}
	if got := in.m.running.Load(); got != 0 {
		t.Errorf("after Close returned: %d Manager loops still running, want 0", got)
	}
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
				if _, body := br.do(a, "POST", "/cart/add?item="+item); body != strings.Join(want, ",") {
					t.Fatalf("POST /cart/add?item=%s = %q, want %q", item, body, strings.Join(want, ","))
				}
			}
			a.srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := a.m.Shutdown(ctx); err != nil {
				t.Fatalf("Shutdown() = %v", err)
			}
			if _, body := br.do(b, "GET", "/cart"); body != strings.Join(want, ",") {
				t.Fatalf("GET /cart on b = %q, want all 100 items", body)
			}
		})
	}
}
