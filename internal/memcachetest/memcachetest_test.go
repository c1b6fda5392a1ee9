package memcachetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	require.True(t, s.Running(), "Running() = false right after Start, want true")
	assert.Positive(t, s.Pid(), "Pid() = %d, want > 0", s.Pid())
	host, _, err := net.SplitHostPort(s.Addr())
	assert.NoError(t, err, "Addr() = %q, want host:port", s.Addr())
	assert.Equal(t, "127.0.0.1", host, "Addr() = %q, want 127.0.0.1:PORT", s.Addr())
	st, err := s.Stats()
	require.NoError(t, err, "Stats() failed, want the running server's counters")
	assert.Equal(t, fmt.Sprint(s.Pid()), st.Raw["pid"], "Stats().Raw[pid] = %q, want %d: the server on Addr is ours", st.Raw["pid"], s.Pid())
	assert.Equal(t, fmt.Sprint(DefaultMemoryMB<<20), st.Raw["limit_maxbytes"],
		"Stats().Raw[limit_maxbytes] = %q, want %d (DefaultMemoryMB)", st.Raw["limit_maxbytes"], DefaultMemoryMB<<20)
}

func TestStartN(t *testing.T) {
	t.Parallel()
	servers := StartN(t, 3)
	require.Len(t, servers, 3, "StartN(3) returned %d servers, want 3", len(servers))
	seen := make(map[string]bool)
	for _, s := range servers {
		assert.False(t, seen[s.Addr()], "StartN(3): address %s twice, want three different ones", s.Addr())
		seen[s.Addr()] = true
		require.NoError(t, s.Set("k", []byte(s.Addr()), 0), "Set(k) on %s failed, want stored", s.Addr())
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
		require.NoError(t, s.Set(tt.key, tt.value, 0), "Set(%q) failed, want stored", tt.key)
		got, found, err := s.Get(tt.key)
		assert.NoError(t, err, "Get(%q) failed, want the value just set", tt.key)
		assert.True(t, found, "Get(%q) missed, want the value just set", tt.key)
		assert.Equal(t, tt.value, got, "Get(%q) = %q, want %q", tt.key, got, tt.value)
	}

	got, found, err := s.Get("missing")
	assert.NoError(t, err, "Get(missing) failed, want a plain miss")
	assert.False(t, found, "Get(missing) found %q, want a miss", got)
	assert.Nil(t, got, "Get(missing) = %q, want nil", got)

	for _, key := range []string{"", "with space", "ctl\x01", strings.Repeat("k", 251)} {
		assert.Error(t, s.Set(key, []byte("v"), 0), "Set(%q) = nil, want an invalid key error", key)
		_, _, err := s.Get(key)
		assert.Error(t, err, "Get(%q) = nil error, want an invalid key error", key)
	}
}

func TestStatsCountOps(t *testing.T) {
	t.Parallel()
	s := Start(t)
	before, err := s.Stats()
	require.NoError(t, err, "Stats() failed, want the fresh server's counters")
	assert.Zero(t, before.Ops(), "Ops() on a fresh server = %d, want 0", before.Ops())

	for _, key := range []string{"a", "b"} {
		require.NoError(t, s.Set(key, []byte("v"), 0), "Set(%s) failed, want stored", key)
	}
	mustGet(t, s, "a", "v")
	_, found, err := s.Get("nope")
	require.NoError(t, err, "Get(nope) failed, want a plain miss")
	require.False(t, found, "Get(nope) found a value, want a miss")
	// Neither Keys nor Stats is a data operation.
	_, err = s.Keys()
	require.NoError(t, err, "Keys() failed, want the stored keys")

	after, err := s.Stats()
	require.NoError(t, err, "Stats() failed, want the counters after the operations")
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
		got := d.after - d.before
		assert.Equal(t, d.want, got, "%s went up by %d, want %d", d.name, got, d.want)
	}
	assert.Equal(t, after.Ops(), s.Ops(t), "Ops(t) = %d, want %d, as Stats().Ops()", s.Ops(t), after.Ops())
}

func TestStatsOps(t *testing.T) {
	st := Stats{
		CmdGet: 1, CmdSet: 2, CmdTouch: 4, CmdFlush: 1000, DeleteHits: 8, DeleteMisses: 16,
		GetHits: 1000, GetMisses: 1000, IncrHits: 32, IncrMisses: 64, DecrHits: 128, DecrMisses: 256,
	}
	assert.Equal(t, uint64(511), st.Ops(), "Ops() = %d, want 511: gets, sets, touches, deletes, incrs and decrs, not flushes or hits", st.Ops())
}

func TestReadStats(t *testing.T) {
	good := "STAT pid 42\r\nSTAT version 1.6.18\r\n"
	for _, name := range []string{"cmd_get", "cmd_set", "cmd_touch", "cmd_flush", "delete_hits",
		"delete_misses", "get_hits", "get_misses", "touch_hits", "touch_misses", "incr_hits",
		"incr_misses", "decr_hits", "decr_misses", "curr_items", "curr_connections"} {
		good += "STAT " + name + " 7\r\n"
	}
	st, err := readStats(bufio.NewReader(strings.NewReader(good + "END\r\n")))
	require.NoError(t, err, "readStats(good) failed, want the counters")
	assert.Equal(t, uint64(7), st.CmdGet, "readStats(good).CmdGet = %d, want 7", st.CmdGet)
	assert.Equal(t, uint64(7), st.CurrConnections, "readStats(good).CurrConnections = %d, want 7", st.CurrConnections)
	assert.Equal(t, "1.6.18", st.Raw["version"], "readStats(good).Raw[version] = %q, want 1.6.18", st.Raw["version"])

	for name, in := range map[string]string{
		"missing counter": "STAT pid 1\r\nEND\r\n",
		"bad number":      strings.Replace(good, "cmd_get 7", "cmd_get x", 1) + "END\r\n",
		"no END":          good,
		"junk line":       good + "ERROR\r\nEND\r\n",
	} {
		_, err := readStats(bufio.NewReader(strings.NewReader(in)))
		assert.Error(t, err, "readStats(%s) = nil error, want an error", name)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	s := Start(t)
	keys, err := s.Keys()
	require.NoError(t, err, "Keys() on a fresh server failed, want none")
	require.Empty(t, keys, "Keys() on a fresh server = %q, want none", keys)
	// memcached URL-escapes key names in the dump ("a%b/c" comes out as
	// "a%25b%2Fc"); Keys must undo it.
	want := []string{"a%b/c", "plain", "plus+sign", "ü"}
	for _, key := range want {
		require.NoError(t, s.Set(key, []byte("v"), 0), "Set(%q) failed, want stored", key)
	}
	require.NoError(t, s.Set("expired", []byte("v"), -1), "Set(expired, ttl -1) failed, want stored and expired at once")
	keys, err = s.Keys()
	require.NoError(t, err, "Keys() failed, want the stored keys")
	assert.Equal(t, want, keys, "Keys() = %q, want %q, sorted, without the expired key", keys, want)
	require.NoError(t, s.Flush(), "Flush() failed, want an empty cache")
	keys, err = s.Keys()
	assert.NoError(t, err, "Keys() after Flush failed, want none")
	assert.Empty(t, keys, "Keys() after Flush = %q, want none", keys)
}

func TestReadMetadump(t *testing.T) {
	in := "key=a%2520b%2Fc exp=-1 la=1 cas=1 fetch=yes cls=1 size=73\r\n" +
		"key=sp%C3%A9 exp=-1 la=1 cas=3 fetch=no cls=1 size=64\r\nEND\r\n"
	keys, busy, err := readMetadump(bufio.NewReader(strings.NewReader(in)))
	assert.NoError(t, err, "readMetadump(two keys) failed, want the keys")
	assert.False(t, busy, "readMetadump(two keys) busy = true, want false")
	assert.Equal(t, []string{"a%20b/c", "spé"}, keys, "readMetadump(two keys) = %q, want the unescaped keys", keys)
	_, busy, err = readMetadump(bufio.NewReader(strings.NewReader("BUSY currently processing crawler request\r\n")))
	assert.NoError(t, err, "readMetadump(BUSY) failed, want busy and no error: the caller retries")
	assert.True(t, busy, "readMetadump(BUSY) busy = false, want true")
	for _, in := range []string{"ERROR locked\r\n", "key=%zz exp=-1\r\nEND\r\n", "key=a exp=-1\r\n"} {
		_, _, err := readMetadump(bufio.NewReader(strings.NewReader(in)))
		assert.Error(t, err, "readMetadump(%q) = nil error, want an error", in)
	}
}

func TestPauseResume(t *testing.T) {
	t.Parallel()
	skipUnlessCanPause(t)
	s := Start(t)
	require.NoError(t, s.Set("k", []byte("v"), 0), "Set(k) failed, want stored")
	s.Pause()
	s.Pause() // idempotent
	require.True(t, s.Running(), "Running() after Pause = false, want true: a paused server is running")
	require.True(t, s.Paused(), "Paused() after Pause = false, want true")

	_, _, err := get(s.Addr(), "k", 200*time.Millisecond)
	require.True(t, isTimeout(err), "get from a paused server = %v, want a timeout", err)

	// The kernel still completes the handshake: a paused node is a black
	// hole, not a refused connection. A request sent now is answered once
	// the server resumes.
	c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
	require.NoError(t, err, "dial a paused server failed, want success: the kernel still accepts")
	defer c.Close()
	_, err = io.WriteString(c, "get k\r\n")
	require.NoError(t, err, "write to a paused server failed, want it buffered by the kernel")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(200*time.Millisecond)), "SetReadDeadline")
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	require.True(t, isTimeout(err), "read from a paused server = %q, %v, want a timeout", line, err)

	s.Resume()
	s.Resume() // idempotent
	assert.False(t, s.Paused(), "Paused() after Resume = true, want false")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(ioTimeout)), "SetReadDeadline")
	line, err = r.ReadString('\n')
	assert.NoError(t, err, "read after Resume failed, want the queued reply")
	assert.Equal(t, "VALUE k 0 1\r\n", line, "read after Resume = %q, want the queued reply", line)
	mustGet(t, s, "k", "v")
}

func TestKill(t *testing.T) {
	t.Parallel()
	s := Start(t)
	pid := s.Pid()
	s.Kill()
	assert.False(t, s.Running(), "Running() after Kill = true, want false")
	assert.Zero(t, s.Pid(), "Pid() after Kill = %d, want 0", s.Pid())
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if assert.Error(t, err, "dial %s after Kill succeeded, want connection refused", s.Addr()) {
		assert.ErrorIs(t, err, syscall.ECONNREFUSED, "dial %s after Kill = %v, want connection refused", s.Addr(), err)
	} else {
		c.Close()
	}
	_, err = s.Stats()
	assert.Error(t, err, "Stats() after Kill = nil error, want an error")
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
	assert.False(t, s.Running(), "Running() after Kill of a paused server = true, want false")
	assert.False(t, s.Paused(), "Paused() after Kill of a paused server = true, want false")
	waitGone(t, pid)
}

func TestRestart(t *testing.T) {
	t.Parallel()
	s := Start(t)
	addr := s.Addr()
	require.NoError(t, s.Set("k", []byte("v"), 0), "Set(k) failed, want stored")
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
		assert.Equal(t, addr, s.Addr(), "%s: Addr() after Restart = %s, want %s", tt.name, s.Addr(), addr)
		assert.True(t, s.Running(), "%s: Running() after Restart = false, want true", tt.name)
		assert.False(t, s.Paused(), "%s: Paused() after Restart = true, want false", tt.name)
		assert.NotZero(t, s.Pid(), "%s: Pid() after Restart = 0, want a process", tt.name)
		assert.NotEqual(t, oldPid, s.Pid(), "%s: Pid() after Restart = %d, want a new process", tt.name, s.Pid())
		_, found, err := s.Get("k")
		assert.NoError(t, err, "%s: Get(k) after Restart failed, want a miss", tt.name)
		assert.False(t, found, "%s: Get(k) after Restart found it, want an empty cache", tt.name)
		keys, err := s.Keys()
		assert.NoError(t, err, "%s: Keys() after Restart failed, want none", tt.name)
		assert.Empty(t, keys, "%s: Keys() after Restart = %q, want none", tt.name, keys)
		if oldPid != 0 {
			waitGone(t, oldPid)
		}
		// Plant a key for the next case to lose.
		require.NoError(t, s.Set("k", []byte("v"), 0), "%s: Set(k) after Restart failed, want stored", tt.name)
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
		assert.NoError(t, err, "TryRestart failed amid concurrent use, want every restart to succeed")
	}
	s.Resume()
	assert.NoError(t, s.Set("k", []byte("v"), 0), "Set after concurrent chaos failed, want a working server")
}

func TestOptions(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{MemoryMB: 8, MaxItemSize: "512k"})
	st, err := s.Stats()
	require.NoError(t, err, "Stats() failed, want the server's settings")
	assert.Equal(t, fmt.Sprint(8<<20), st.Raw["limit_maxbytes"], "limit_maxbytes = %s, want %d (MemoryMB 8)", st.Raw["limit_maxbytes"], 8<<20)
	if got := st.Raw["item_size_max"]; got != "" {
		assert.Equal(t, fmt.Sprint(512<<10), got, "item_size_max = %s, want %d (MaxItemSize 512k)", got, 512<<10)
	}
	assert.NoError(t, s.Set("small", make([]byte, 100<<10), 0), "Set(100KiB) with -I 512k failed, want stored")
	assert.Error(t, s.Set("big", make([]byte, 600<<10), 0), "Set(600KiB) with -I 512k = nil, want an error: too large")
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
			require.Nil(t, s, "start returned a server for a missing binary, want none")
			got, other, otherName := f.fatals, f.skips, "Skip"
			if tt.wantSkip {
				got, other, otherName = f.skips, f.fatals, "Fatal"
			}
			assert.Empty(t, other, "start called %s with %q, want no %s (require %v)", otherName, other, otherName, tt.require)
			require.Len(t, got, 1, "start reported %d messages (%q), want 1", len(got), got)
			for _, want := range []string{"memcachetest: ", tt.wantMessage, "apt-get install memcached", EnvRequire + "=1"} {
				assert.Contains(t, got[0], want, "message %q does not contain %q, want it to explain the miss and the fix", got[0], want)
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
	s := start(f, true, []Options{{MaxItemSize: "bogus"}})
	require.Nil(t, s, "start with -I bogus returned a server, want none")
	require.Len(t, f.fatals, 1, "start with -I bogus: fatals = %q, want one", f.fatals)
	assert.Contains(t, f.fatals[0], "memcached exited during startup", "start with -I bogus: fatal %q, want it to name the exit", f.fatals[0])
	assert.Contains(t, f.fatals[0], "-I bogus", "start with -I bogus: fatal %q, want it to name the arguments", f.fatals[0])
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
	assert.True(t, eventually(5*time.Second, func() bool { return runtime.NumGoroutine() <= before }),
		"runtime.NumGoroutine() = %d 5s after Kill, want at most %d (before Start): a goroutine of the harness outlived its process",
		runtime.NumGoroutine(), before)
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
	require.NoError(t, err, "Get(%q) on %s failed, want %q", key, s.Addr(), want)
	require.True(t, found, "Get(%q) on %s missed, want %q", key, s.Addr(), want)
	require.Equal(t, want, string(got), "Get(%q) on %s = %q, want %q", key, s.Addr(), got, want)
}

// waitGone waits until pid has exited (a zombie counts: PID 1 in some
// containers never reaps orphans).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	require.True(t, eventually(5*time.Second, func() bool { return !processAlive(pid) }),
		"pid %d still alive 5s after it was killed, want it gone", pid)
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
