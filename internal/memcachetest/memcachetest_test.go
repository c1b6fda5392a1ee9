package memcachetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestStart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if !s.Running() {
		t.Fatalf("Running() = false right after Start")
	}
	if s.Pid() <= 0 {
		t.Errorf("Pid() = %d, want > 0", s.Pid())
	}
	host, _, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" {
		t.Errorf("Addr() = %q, want 127.0.0.1:PORT", s.Addr())
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := st.Raw["pid"], fmt.Sprint(s.Pid()); got != want {
		t.Errorf("Stats().Raw[pid] = %q, want %q", got, want)
	}
	if got := st.Raw["limit_maxbytes"]; got != fmt.Sprint(DefaultMemoryMB<<20) {
		t.Errorf("Stats().Raw[limit_maxbytes] = %q, want %d", got, DefaultMemoryMB<<20)
	}
}

func TestStartN(t *testing.T) {
	t.Parallel()
	servers := StartN(t, 3)
	if len(servers) != 3 {
		t.Fatalf("StartN(3) returned %d servers", len(servers))
	}
	seen := make(map[string]bool)
	for _, s := range servers {
		if seen[s.Addr()] {
			t.Errorf("StartN(3): duplicate address %s", s.Addr())
		}
		seen[s.Addr()] = true
		if err := s.Set("k", []byte(s.Addr()), 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers {
		mustGet(t, s, "k", s.Addr())
	}
}

func TestSetGet(t *testing.T) {
	t.Parallel()
	s := Start(t)
	tests := []struct {
		key   string
		value []byte
	}{
		{"plain", []byte("hello")},
		{"empty", []byte{}},
		{"binary", []byte("a\r\nEND\r\n\x00\xff")},
		{"unicode-ключ", []byte("v")},
		{strings.Repeat("k", 250), bytes.Repeat([]byte{'x'}, 100<<10)},
	}
	for _, tt := range tests {
		if err := s.Set(tt.key, tt.value, 0); err != nil {
			t.Fatalf("Set(%q) = %v", tt.key, err)
		}
		got, found, err := s.Get(tt.key)
		if err != nil || !found || !bytes.Equal(got, tt.value) {
			t.Errorf("Get(%q) = %q, %v, %v, want %q, true, nil", tt.key, got, found, err, tt.value)
		}
	}

	got, found, err := s.Get("missing")
	if err != nil || found || got != nil {
		t.Errorf("Get(missing) = %q, %v, %v, want nil, false, nil", got, found, err)
	}

	for _, key := range []string{"", "with space", "ctl\x01", strings.Repeat("k", 251)} {
		if err := s.Set(key, []byte("v"), 0); err == nil {
			t.Errorf("Set(%q) = nil, want invalid key error", key)
		}
		if _, _, err := s.Get(key); err == nil {
			t.Errorf("Get(%q) = nil error, want invalid key error", key)
		}
	}
}

func TestStatsCountOps(t *testing.T) {
	t.Parallel()
	s := Start(t)
	before, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if before.Ops() != 0 {
		t.Errorf("Ops() on a fresh server = %d, want 0", before.Ops())
	}

	for _, key := range []string{"a", "b"} {
		if err := s.Set(key, []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	mustGet(t, s, "a", "v")
	if _, found, err := s.Get("nope"); err != nil || found {
		t.Fatalf("Get(nope) = %v, %v, want miss", found, err)
	}
	// Neither Keys nor Stats is a data operation.
	if _, err := s.Keys(); err != nil {
		t.Fatal(err)
	}

	after, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	deltas := []struct {
		name          string
		before, after uint64
		want          uint64
	}{
		{"CmdSet", before.CmdSet, after.CmdSet, 2},
		{"CmdGet", before.CmdGet, after.CmdGet, 2},
		{"GetHits", before.GetHits, after.GetHits, 1},
		{"GetMisses", before.GetMisses, after.GetMisses, 1},
		{"CmdTouch", before.CmdTouch, after.CmdTouch, 0},
		{"CurrItems", before.CurrItems, after.CurrItems, 2},
		{"Ops()", before.Ops(), after.Ops(), 4},
	}
	for _, d := range deltas {
		if got := d.after - d.before; got != d.want {
			t.Errorf("%s went up by %d, want %d", d.name, got, d.want)
		}
	}
	if got := s.Ops(t); got != after.Ops() {
		t.Errorf("Ops(t) = %d, want %d", got, after.Ops())
	}
}

func TestStatsOps(t *testing.T) {
	st := Stats{
		CmdGet: 1, CmdSet: 2, CmdTouch: 4, CmdFlush: 1000, DeleteHits: 8, DeleteMisses: 16,
		GetHits: 1000, GetMisses: 1000, IncrHits: 32, IncrMisses: 64, DecrHits: 128, DecrMisses: 256,
	}
	if got := st.Ops(); got != 511 {
		t.Errorf("Ops() = %d, want 511", got)
	}
}

func TestReadStats(t *testing.T) {
	good := "STAT pid 42\r\nSTAT version 1.6.18\r\n"
	for _, name := range []string{"cmd_get", "cmd_set", "cmd_touch", "cmd_flush", "delete_hits",
		"delete_misses", "get_hits", "get_misses", "touch_hits", "touch_misses", "incr_hits",
		"incr_misses", "decr_hits", "decr_misses", "curr_items", "curr_connections"} {
		good += "STAT " + name + " 7\r\n"
	}
	st, err := readStats(bufio.NewReader(strings.NewReader(good + "END\r\n")))
	if err != nil {
		t.Fatalf("readStats(good) = %v", err)
	}
	if st.CmdGet != 7 || st.CurrConnections != 7 || st.Raw["version"] != "1.6.18" {
		t.Errorf("readStats(good) = %+v", st)
	}

	for name, in := range map[string]string{
		"missing counter": "STAT pid 1\r\nEND\r\n",
		"bad number":      strings.Replace(good, "cmd_get 7", "cmd_get x", 1) + "END\r\n",
		"no END":          good,
		"junk line":       good + "ERROR\r\nEND\r\n",
	} {
		if _, err := readStats(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("readStats(%s) = nil error, want error", name)
		}
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	s := Start(t)
	keys, err := s.Keys()
	if err != nil || len(keys) != 0 {
		t.Fatalf("Keys() on a fresh server = %q, %v, want none", keys, err)
	}
	// memcached URL-escapes key names in the dump ("a%b/c" comes out as
	// "a%25b%2Fc"); Keys must undo it.
	want := []string{"a%b/c", "plain", "plus+sign", "ü"}
	for _, key := range want {
		if err := s.Set(key, []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Set("expired", []byte("v"), -1); err != nil {
		t.Fatal(err)
	}
	keys, err = s.Keys()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, want) {
		t.Errorf("Keys() = %q, want %q", keys, want)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if keys, err = s.Keys(); err != nil || len(keys) != 0 {
		t.Errorf("Keys() after Flush = %q, %v, want none", keys, err)
	}
}

func TestReadMetadump(t *testing.T) {
	in := "key=a%2520b%2Fc exp=-1 la=1 cas=1 fetch=yes cls=1 size=73\r\n" +
		"key=sp%C3%A9 exp=-1 la=1 cas=3 fetch=no cls=1 size=64\r\nEND\r\n"
	keys, busy, err := readMetadump(bufio.NewReader(strings.NewReader(in)))
	if want := []string{"a%20b/c", "spé"}; err != nil || busy || !slices.Equal(keys, want) {
		t.Errorf("readMetadump = %q, %v, %v, want %q, false, nil", keys, busy, err, want)
	}
	_, busy, err = readMetadump(bufio.NewReader(strings.NewReader("BUSY currently processing crawler request\r\n")))
	if err != nil || !busy {
		t.Errorf("readMetadump(BUSY) = busy %v, %v, want true, nil", busy, err)
	}
	for _, in := range []string{"ERROR locked\r\n", "key=%zz exp=-1\r\nEND\r\n", "key=a exp=-1\r\n"} {
		if _, _, err := readMetadump(bufio.NewReader(strings.NewReader(in))); err == nil {
			t.Errorf("readMetadump(%q) = nil error, want error", in)
		}
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	skipUnlessCanPause(t)
	s := Start(t)
	if err := s.Set("k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	s.Pause()
	s.Pause() // idempotent
	if !s.Running() || !s.Paused() {
		t.Fatalf("after Pause: Running() = %v, Paused() = %v, want true, true", s.Running(), s.Paused())
	}

	_, _, err := get(s.Addr(), "k", 200*time.Millisecond)
	if !isTimeout(err) {
		t.Fatalf("get from a paused server = %v, want a timeout", err)
	}

	// The kernel still completes the handshake: a paused node is a black
	// hole, not a refused connection. A request sent now is answered once
	// the server resumes.
	c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
	if err != nil {
		t.Fatalf("dial a paused server: %v, want success", err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "get k\r\n"); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); !isTimeout(err) {
		t.Fatalf("read from a paused server = %q, %v, want a timeout", line, err)
	}

	s.Resume()
	s.Resume() // idempotent
	if s.Paused() {
		t.Errorf("Paused() = true after Resume")
	}
	if err := c.SetReadDeadline(time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	if line, err := r.ReadString('\n'); err != nil || line != "VALUE k 0 1\r\n" {
		t.Errorf("read after Resume = %q, %v, want the queued reply", line, err)
	}
	mustGet(t, s, "k", "v")
}

func TestKill(t *testing.T) {
	t.Parallel()
	s := Start(t)
	pid := s.Pid()
	s.Kill()
	if s.Running() || s.Pid() != 0 {
		t.Errorf("after Kill: Running() = %v, Pid() = %d, want false, 0", s.Running(), s.Pid())
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		c.Close()
		t.Errorf("dial %s after Kill succeeded, want connection refused", s.Addr())
	} else if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial %s after Kill = %v, want connection refused", s.Addr(), err)
	}
	if _, err := s.Stats(); err == nil {
		t.Errorf("Stats() after Kill = nil error, want error")
	}
	s.Kill() // idempotent
	waitGone(t, pid)
}

func TestKillPaused(t *testing.T) {
	t.Parallel()
	skipUnlessCanPause(t)
	s := Start(t)
	pid := s.Pid()
	s.Pause()
	s.Kill()
	if s.Running() || s.Paused() {
		t.Errorf("after Kill of a paused server: Running() = %v, Paused() = %v, want false, false", s.Running(), s.Paused())
	}
	waitGone(t, pid)
}

func TestRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	addr := s.Addr()
	if err := s.Set("k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		disrupt func()
	}{
		{"running", func() {}},
		{"killed", s.Kill},
	}
	if canPause {
		cases = append(cases, struct {
			name    string
			disrupt func()
		}{"paused", s.Pause})
	}
	for _, tt := range cases {
		oldPid := s.Pid()
		tt.disrupt()
		s.Restart()
		if s.Addr() != addr {
			t.Errorf("%s: Addr() after Restart = %s, want %s", tt.name, s.Addr(), addr)
		}
		if !s.Running() || s.Paused() || s.Pid() == oldPid || s.Pid() == 0 {
			t.Errorf("%s: after Restart Running() = %v, Paused() = %v, Pid() = %d (was %d)",
				tt.name, s.Running(), s.Paused(), s.Pid(), oldPid)
		}
		if _, found, err := s.Get("k"); err != nil || found {
			t.Errorf("%s: Get(k) after Restart = %v, %v, want an empty cache", tt.name, found, err)
		}
		if keys, err := s.Keys(); err != nil || len(keys) != 0 {
			t.Errorf("%s: Keys() after Restart = %q, %v, want none", tt.name, keys, err)
		}
		if oldPid != 0 {
			waitGone(t, oldPid)
		}
		// Plant a key for the next case to lose.
		if err := s.Set("k", []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	s := Start(t)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 5 {
				switch (i + j) % 4 {
				case 0:
					if canPause {
						s.Pause()
						s.Resume()
					}
				case 1:
					if err := s.TryRestart(); err != nil {
						errs <- err
					}
				default:
					_ = s.Running()
					_ = s.Pid()
					_, _ = s.Stats()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s.Resume()
	if err := s.Set("k", []byte("v"), 0); err != nil {
		t.Errorf("Set after concurrent chaos: %v", err)
	}
}

func TestOptions(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{MemoryMB: 8, MaxItemSize: "512k"})
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Raw["limit_maxbytes"]; got != fmt.Sprint(8<<20) {
		t.Errorf("limit_maxbytes = %s, want %d", got, 8<<20)
	}
	if got := st.Raw["item_size_max"]; got != "" && got != fmt.Sprint(512<<10) {
		t.Errorf("item_size_max = %s, want %d", got, 512<<10)
	}
	if err := s.Set("small", make([]byte, 100<<10), 0); err != nil {
		t.Errorf("Set(100KiB) with -I 512k = %v, want nil", err)
	}
	if err := s.Set("big", make([]byte, 600<<10), 0); err == nil {
		t.Errorf("Set(600KiB) with -I 512k = nil, want an error")
	}
}

// fakeTB records Skip, Fatal and Errorf instead of stopping the goroutine or
// failing the test, so the missing-binary paths can be checked whatever
// EnvRequire is set to.
type fakeTB struct {
	testing.TB
	mu                    sync.Mutex // guards skips, fatals and errors
	skips, fatals, errors []string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Skip(args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.skips = append(f.skips, fmt.Sprint(args...))
}

func (f *fakeTB) Fatal(args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fatals = append(f.fatals, fmt.Sprint(args...))
}

func (f *fakeTB) Fatalf(format string, args ...any) { f.Fatal(fmt.Sprintf(format, args...)) }

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

// TestMissingBinary is not parallel because one case empties PATH.
func TestMissingBinary(t *testing.T) {
	for _, tt := range []struct {
		name        string
		binary      string
		require     bool
		wantSkip    bool
		wantMessage string
	}{
		{"skip", "/nonexistent/memcached", false, true, `memcached binary "/nonexistent/memcached" not found`},
		{"require", "/nonexistent/memcached", true, false, `memcached binary "/nonexistent/memcached" not found`},
		{"default name", "", false, true, "memcached not found in PATH"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.binary == "" {
				t.Setenv("PATH", t.TempDir())
			}
			f := &fakeTB{TB: t}
			s := start(f, tt.require, []Options{{Binary: tt.binary}})
			if s != nil {
				t.Fatalf("start returned a server for a missing binary")
			}
			got := f.fatals
			if tt.wantSkip {
				got = f.skips
				if len(f.fatals) != 0 {
					t.Errorf("unexpected Fatal: %q", f.fatals)
				}
			} else if len(f.skips) != 0 {
				t.Errorf("unexpected Skip: %q", f.skips)
			}
			if len(got) != 1 {
				t.Fatalf("got %d messages (%q), want 1", len(got), got)
			}
			for _, want := range []string{"memcachetest: ", tt.wantMessage, "apt-get install memcached", EnvRequire + "=1"} {
				if !strings.Contains(got[0], want) {
					t.Errorf("message %q does not contain %q", got[0], want)
				}
			}
		})
	}
}

func TestStartFailureShowsOutput(t *testing.T) {
	t.Parallel()
	if _, err := lookBinary(DefaultBinary); err != nil {
		t.Skip(err)
	}
	f := &fakeTB{TB: t}
	if s := start(f, true, []Options{{MaxItemSize: "bogus"}}); s != nil {
		t.Fatalf("start with -I bogus returned a server")
	}
	if len(f.fatals) != 1 || !strings.Contains(f.fatals[0], "memcached exited during startup") ||
		!strings.Contains(f.fatals[0], "-I bogus") {
		t.Errorf("start with -I bogus: fatals = %q, want one naming the exit and the arguments", f.fatals)
	}
}

// TestNoLeakedGoroutines is not parallel, so no other test's goroutines
// come and go while it counts. Kill returns once the process is reaped, a
// moment before its reaper goroutine has returned, so the count is polled.
func TestNoLeakedGoroutines(t *testing.T) {
	skipUnlessCanPause(t)
	before := runtime.NumGoroutine()
	s := Start(t)
	s.Pause()
	s.Restart()
	s.Kill()
	if !eventually(5*time.Second, func() bool { return runtime.NumGoroutine() <= before }) {
		t.Fatalf("runtime.NumGoroutine() = %d 5s after Kill, want at most %d (before Start): a goroutine of the harness outlived its process",
			runtime.NumGoroutine(), before)
	}
}

// eventually polls cond until it holds, and reports whether it did before
// timeout. It runs cond on the caller's goroutine, so that polling adds no
// goroutine to a count of them.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			return cond()
		case <-tick.C:
		}
	}
	return true
}

// mustGet fails the test unless key holds want.
func mustGet(t *testing.T, s *Server, key, want string) {
	t.Helper()
	got, found, err := s.Get(key)
	if err != nil || !found || string(got) != want {
		t.Fatalf("Get(%q) on %s = %q, %v, %v, want %q, true, nil", key, s.Addr(), got, found, err, want)
	}
}

// waitGone waits until pid has exited (a zombie counts: PID 1 in some
// containers never reaps orphans).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	if !eventually(5*time.Second, func() bool { return !processAlive(pid) }) {
		t.Fatalf("pid %d still alive after 5s", pid)
	}
}

// skipUnlessCanPause skips a test that pauses memcached where that is not
// possible.
func skipUnlessCanPause(t *testing.T) {
	t.Helper()
	if !canPause {
		t.Skipf("pausing memcached needs a Unix system (SIGSTOP and SIGCONT), not %s", runtime.GOOS)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
