package memcacheserver

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
	"testing"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ioTimeout bounds every network wait in these tests.
const ioTimeout = 5 * time.Second

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1_700_000_000, 0)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startServer starts a server that the test closes when it ends.
func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	s, err := Start("127.0.0.1:0", opts)
	require.NoError(t, err, "Start(127.0.0.1:0, %+v) failed, want a server", opts)
	t.Cleanup(func() { s.Close() })
	return s
}

// newClient returns a gomemcache client of s with a generous timeout, since
// the race detector slows everything down.
func newClient(s *Server) *memcache.Client {
	c := memcache.New(s.Addr())
	c.Timeout = ioTimeout
	return c
}

// dial opens a raw connection to s with a deadline for the whole test step.
func dial(t *testing.T, s *Server) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr(), ioTimeout)
	require.NoError(t, err, "dial %s failed, want a connection to the running server", s.Addr())
	t.Cleanup(func() { c.Close() })
	require.NoError(t, c.SetDeadline(time.Now().Add(ioTimeout)), "SetDeadline on a fresh connection")
	return c
}

// exchange sends in followed by "version" on a fresh connection and returns
// everything the server answered before the VERSION line, which marks the
// end of the replies to in.
func exchange(t *testing.T, s *Server, in string) string {
	t.Helper()
	c := dial(t, s)
	_, err := io.WriteString(c, in+"version\r\n")
	require.NoError(t, err, "write %q failed, want the server to take it", in)
	end := "VERSION " + Version + "\r\n"
	var out []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(out, []byte(end)) {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		require.NoError(t, err, "read after %q failed, want replies up to %q", out, end)
	}
	return string(out[:len(out)-len(end)])
}

// readAll sends in and reads until the server closes the connection. A
// server that closes before reading all of in causes a reset, so write and
// read errors other than timeouts count as the end of the connection.
func readAll(t *testing.T, s *Server, in string) string {
	t.Helper()
	c := dial(t, s)
	io.WriteString(c, in)
	out, err := io.ReadAll(c)
	require.False(t, isTimeout(err), "read after %q = %v, want the server to close the connection", out, err)
	return string(out)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestGomemcache(t *testing.T) {
	s := startServer(t, Options{})
	mc := newClient(s)

	t.Run("SetGetBinary", func(t *testing.T) {
		value := []byte("a\r\nb\x00c\r\n\r\nEND\r\n")
		require.NoError(t, mc.Set(&memcache.Item{Key: "bin", Value: value, Flags: 42}), "Set(bin) failed, want stored")
		it, err := mc.Get("bin")
		require.NoError(t, err, "Get(bin) failed, want the value just set")
		assert.Equal(t, value, it.Value, "Get(bin) = %q, want %q", it.Value, value)
		assert.Equal(t, uint32(42), it.Flags, "Get(bin) flags = %d, want 42", it.Flags)
		require.NoError(t, mc.Set(&memcache.Item{Key: "empty"}), "Set(empty) failed, want stored")
		it, err = mc.Get("empty")
		require.NoError(t, err, "Get(empty) failed, want a hit with an empty value")
		assert.Empty(t, it.Value, "Get(empty) = %q, want an empty value", it.Value)
		_, err = mc.Get("never-set")
		assert.Equal(t, memcache.ErrCacheMiss, err, "Get(never-set) error = %v, want ErrCacheMiss", err)
	})

	t.Run("AddReplaceAppendPrepend", func(t *testing.T) {
		require.NoError(t, mc.Add(&memcache.Item{Key: "add", Value: []byte("1")}), "Add(new) failed, want stored")
		err := mc.Add(&memcache.Item{Key: "add", Value: []byte("2")})
		assert.Equal(t, memcache.ErrNotStored, err, "Add(existing) error = %v, want ErrNotStored", err)
		err = mc.Replace(&memcache.Item{Key: "nope", Value: []byte("x")})
		assert.Equal(t, memcache.ErrNotStored, err, "Replace(missing) error = %v, want ErrNotStored", err)
		assert.NoError(t, mc.Append(&memcache.Item{Key: "add", Value: []byte(">")}), "Append(add) failed, want appended")
		assert.NoError(t, mc.Prepend(&memcache.Item{Key: "add", Value: []byte("<")}), "Prepend(add) failed, want prepended")
		it, err := mc.Get("add")
		require.NoError(t, err, "Get(add) failed, want <1>")
		assert.Equal(t, "<1>", string(it.Value), "Get(add) = %q, want <1>", it.Value)
	})

	t.Run("CompareAndSwap", func(t *testing.T) {
		require.NoError(t, mc.Set(&memcache.Item{Key: "cas", Value: []byte("v1")}), "Set(cas) failed, want stored")
		mine, err := mc.Get("cas")
		require.NoError(t, err, "Get(cas) failed, want v1")
		other, err := mc.Get("cas")
		require.NoError(t, err, "Get(cas) failed, want v1")
		other.Value = []byte("theirs")
		require.NoError(t, mc.CompareAndSwap(other), "CompareAndSwap(fresh) failed, want nil: nothing changed the item since Get")
		mine.Value = []byte("mine")
		err = mc.CompareAndSwap(mine)
		assert.Equal(t, memcache.ErrCASConflict, err, "CompareAndSwap(stale) error = %v, want ErrCASConflict", err)
		it, err := mc.Get("cas")
		require.NoError(t, err, "Get(cas) failed, want theirs")
		assert.Equal(t, "theirs", string(it.Value), "Get(cas) = %q, want theirs: the stale swap must not land", it.Value)
		require.NoError(t, mc.Delete("cas"), "Delete(cas) failed, want deleted")
		err = mc.CompareAndSwap(other)
		assert.Equal(t, memcache.ErrCacheMiss, err, "CompareAndSwap(deleted) error = %v, want ErrCacheMiss", err)
	})

	t.Run("Touch", func(t *testing.T) {
		require.NoError(t, mc.Set(&memcache.Item{Key: "touch", Value: []byte("x")}), "Set(touch) failed, want stored")
		assert.NoError(t, mc.Touch("touch", 100), "Touch(hit) failed, want nil")
		err := mc.Touch("touch-missing", 100)
		assert.Equal(t, memcache.ErrCacheMiss, err, "Touch(miss) error = %v, want ErrCacheMiss", err)
		it, err := mc.GetAndTouch("touch", 100)
		require.NoError(t, err, "GetAndTouch(hit) failed, want x")
		assert.Equal(t, "x", string(it.Value), "GetAndTouch(hit) = %q, want x", it.Value)
	})

	t.Run("Delete", func(t *testing.T) {
		require.NoError(t, mc.Set(&memcache.Item{Key: "del", Value: []byte("x")}), "Set(del) failed, want stored")
		assert.NoError(t, mc.Delete("del"), "Delete(hit) failed, want nil")
		err := mc.Delete("del")
		assert.Equal(t, memcache.ErrCacheMiss, err, "Delete(miss) error = %v, want ErrCacheMiss", err)
	})

	t.Run("GetMulti", func(t *testing.T) {
		want := map[string]string{"m1": "one", "m2": "two", "m3": ""}
		var keys []string
		for k, v := range want {
			require.NoError(t, mc.Set(&memcache.Item{Key: k, Value: []byte(v)}), "Set(%s) failed, want stored", k)
			keys = append(keys, k)
		}
		got, err := mc.GetMulti(append(keys, "m-missing"))
		require.NoError(t, err, "GetMulti(%q) failed, want the stored items", keys)
		assert.Len(t, got, len(want), "GetMulti returned %d items, want %d: the missing key is left out", len(got), len(want))
		for k, v := range want {
			if assert.Contains(t, got, k, "GetMulti() lacks %s, want %q", k, v) {
				assert.Equal(t, v, string(got[k].Value), "GetMulti()[%s] = %q, want %q", k, got[k].Value, v)
			}
		}
	})

	t.Run("IncrementDecrement", func(t *testing.T) {
		require.NoError(t, mc.Set(&memcache.Item{Key: "n", Value: []byte("10")}), "Set(n) failed, want stored")
		n, err := mc.Increment("n", 5)
		assert.NoError(t, err, "Increment(n, 5) failed, want 15")
		assert.Equal(t, uint64(15), n, "Increment(n, 5) = %d, want 15", n)
		n, err = mc.Decrement("n", 100)
		assert.NoError(t, err, "Decrement(n, 100) failed, want 0")
		assert.Equal(t, uint64(0), n, "Decrement(n, 100) = %d, want 0: decrement stops at zero", n)
		_, err = mc.Increment("n-missing", 1)
		assert.Equal(t, memcache.ErrCacheMiss, err, "Increment(missing) error = %v, want ErrCacheMiss", err)
		require.NoError(t, mc.Set(&memcache.Item{Key: "text", Value: []byte("abc")}), "Set(text) failed, want stored")
		_, err = mc.Increment("text", 1)
		assert.Error(t, err, "Increment(text) error = nil, want a client error: the value is not a number")
	})

	t.Run("PingAndFlush", func(t *testing.T) {
		assert.NoError(t, mc.Ping(), "Ping() failed, want nil")
		assert.NoError(t, mc.DeleteAll(), "DeleteAll() failed, want nil")
		_, err := mc.Get("bin")
		assert.Equal(t, memcache.ErrCacheMiss, err, "Get(bin) after DeleteAll error = %v, want ErrCacheMiss", err)
	})
}

func TestStatsCounters(t *testing.T) {
	s := startServer(t, Options{})
	mc := newClient(s)
	require.NoError(t, mc.Set(&memcache.Item{Key: "a", Value: []byte("1")}), "Set(a) failed, want stored")
	_, err := mc.GetMulti([]string{"a", "b"})
	require.NoError(t, err, "GetMulti(a, b) failed, want a hit and a miss")
	require.NoError(t, mc.Touch("a", 0), "Touch(a) failed, want a hit")
	require.Equal(t, memcache.ErrCacheMiss, mc.Touch("b", 0), "Touch(b) of a missing key, want ErrCacheMiss")
	require.Equal(t, memcache.ErrCacheMiss, mc.Delete("b"), "Delete(b) of a missing key, want ErrCacheMiss")
	_, err = mc.Increment("a", 1)
	require.NoError(t, err, "Increment(a, 1) failed, want 2")
	it, err := mc.Get("a")
	require.NoError(t, err, "Get(a) failed, want a hit")
	it.Value = []byte("x")
	require.NoError(t, mc.CompareAndSwap(it), "CompareAndSwap(a) failed, want swapped")

	got := s.Stats()
	want := Stats{CmdGet: 3, CmdSet: 2, CmdTouch: 2, GetHits: 2, GetMisses: 1,
		TouchHits: 1, TouchMisses: 1, DeleteMisses: 1, IncrHits: 1, CASHits: 1,
		CurrItems: 1, TotalItems: 3, Bytes: 1 + 1 + itemOverhead,
		CurrConnections: 1, TotalConnections: 1}
	assert.Equal(t, want, got, "Stats() = %+v, want %+v", got, want)

	out := exchange(t, s, "stats\r\n")
	for _, line := range []string{"STAT version " + Version + "\r\n", "STAT curr_items 1\r\n",
		"STAT cmd_get 3\r\n", "STAT curr_connections 2\r\n"} {
		assert.Contains(t, out, line, "stats output lacks %q:\n%s", line, out)
	}
	assert.True(t, strings.HasPrefix(out, "STAT pid ") && strings.HasSuffix(out, "\r\nEND\r\n"),
		"stats output = %q, want STAT lines from pid on, then END", out)
	runtime.KeepAlive(mc) // its pooled connection is counted above
}

func TestExpiry(t *testing.T) {
	clock := newFakeClock()
	s := startServer(t, Options{Now: clock.Now})
	mc := newClient(s)
	now := clock.Now().Unix()
	tests := []struct {
		name    string
		exptime int64
		alive   time.Duration // still there after this much time
		dead    time.Duration // gone after this much time; 0: never
	}{
		{"zero never expires", 0, 365 * 24 * time.Hour, 0},
		{"relative", 10, 9 * time.Second, 10 * time.Second},
		{"relative 30 days", 2592000, 2591999 * time.Second, 2592000 * time.Second},
		{"absolute", now + 100, 99 * time.Second, 100 * time.Second},
		{"absolute past", 2592001, -1, 0},
		{"negative", -1, -1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			s := startServer(t, Options{Now: clock.Now})
			c := dial(t, s)
			r := bufio.NewReader(c)
			_, err := fmt.Fprintf(c, "set k 0 %d 1\r\nx\r\n", tt.exptime)
			require.NoError(t, err, "write set with exptime %d", tt.exptime)
			line, err := r.ReadString('\n')
			require.NoError(t, err, "read the reply to set with exptime %d", tt.exptime)
			require.Equal(t, "STORED\r\n", line, "set with exptime %d = %q, want STORED", tt.exptime, line)
			// present reports whether get k finds the item; the reply is
			// END alone, or VALUE, the data and END.
			present := func() bool {
				_, err := io.WriteString(c, "get k\r\n")
				require.NoError(t, err, "write get k")
				line, err := r.ReadString('\n')
				require.NoError(t, err, "read the reply to get k")
				if line == "END\r\n" {
					return false
				}
				require.Equal(t, "VALUE k 0 1\r\n", line, "get k = %q, want VALUE or END", line)
				for _, want := range []string{"x\r\n", "END\r\n"} {
					line, err := r.ReadString('\n')
					require.NoError(t, err, "read the rest of the reply to get k")
					require.Equal(t, want, line, "get k: line %q after VALUE, want %q", line, want)
				}
				return true
			}
			if tt.alive < 0 {
				assert.False(t, present(), "exptime %d: item present at once, want expired", tt.exptime)
				return
			}
			clock.Advance(tt.alive)
			assert.True(t, present(), "exptime %d: gone after %v, want present", tt.exptime, tt.alive)
			if tt.dead > 0 {
				clock.Advance(tt.dead - tt.alive)
				assert.False(t, present(), "exptime %d: present after %v, want expired", tt.exptime, tt.dead)
			}
		})
	}

	t.Run("touch and gat extend", func(t *testing.T) {
		require.NoError(t, mc.Set(&memcache.Item{Key: "t", Value: []byte("x"), Expiration: 10}), "Set(t) failed, want stored")
		require.NoError(t, mc.Set(&memcache.Item{Key: "g", Value: []byte("x"), Expiration: 10}), "Set(g) failed, want stored")
		clock.Advance(5 * time.Second)
		require.NoError(t, mc.Touch("t", 20), "Touch(t, 20) failed, want a hit")
		_, err := mc.GetAndTouch("g", 20)
		require.NoError(t, err, "GetAndTouch(g, 20) failed, want a hit")
		clock.Advance(19 * time.Second)
		for _, k := range []string{"t", "g"} {
			_, err := mc.Get(k)
			assert.NoError(t, err, "Get(%s) 19s after touch failed, want a hit", k)
		}
		clock.Advance(time.Second)
		for _, k := range []string{"t", "g"} {
			_, err := mc.Get(k)
			assert.Equal(t, memcache.ErrCacheMiss, err, "Get(%s) 20s after touch error = %v, want ErrCacheMiss", k, err)
		}
		require.NoError(t, mc.Set(&memcache.Item{Key: "t", Value: []byte("x")}), "Set(t) failed, want stored")
		require.NoError(t, mc.Touch("t", -1), "Touch(t, -1) failed, want a hit")
		_, err = mc.Get("t")
		assert.Equal(t, memcache.ErrCacheMiss, err, "Get(t) after Touch(-1) error = %v, want ErrCacheMiss", err)
	})

	t.Run("delayed flush_all", func(t *testing.T) {
		require.NoError(t, mc.Set(&memcache.Item{Key: "f", Value: []byte("x")}), "Set(f) failed, want stored")
		got := exchange(t, s, "flush_all 10\r\n")
		require.Equal(t, "OK\r\n", got, "flush_all 10 = %q, want OK", got)
		clock.Advance(9 * time.Second)
		require.NoError(t, mc.Set(&memcache.Item{Key: "f2", Value: []byte("x")}), "Set(f2) failed, want stored")
		_, err := mc.Get("f")
		assert.NoError(t, err, "Get(f) before the flush is due failed, want a hit")
		clock.Advance(time.Second)
		for _, k := range []string{"f", "f2"} {
			_, err := mc.Get(k)
			assert.Equal(t, memcache.ErrCacheMiss, err, "Get(%s) after the flush error = %v, want ErrCacheMiss", k, err)
		}
		require.NoError(t, mc.Set(&memcache.Item{Key: "f3", Value: []byte("x")}), "Set(f3) failed, want stored")
		_, err = mc.Get("f3")
		assert.NoError(t, err, "Get(f3) stored after the flush failed, want a hit")
	})
}

func TestProtocol(t *testing.T) {
	long := strings.Repeat("k", 250)
	tests := []struct {
		name, in, want string
		opts           Options
	}{
		{name: "pipelined",
			in: "set a 0 0 1\r\nA\r\nset b 5 0 2\r\nBB\r\nget a b c\r\ngets a\r\n",
			want: "STORED\r\nSTORED\r\nVALUE a 0 1\r\nA\r\nVALUE b 5 2\r\nBB\r\nEND\r\n" +
				"VALUE a 0 1 1\r\nA\r\nEND\r\n"},
		{name: "binary data",
			in:   "set k 4294967295 0 6\r\n\r\n\x00\r\n\n\r\nget k\r\n",
			want: "STORED\r\nVALUE k 4294967295 6\r\n\r\n\x00\r\n\n\r\nEND\r\n"},
		{name: "empty value",
			in:   "set k 0 0 0\r\n\r\nget k\r\n",
			want: "STORED\r\nVALUE k 0 0\r\n\r\nEND\r\n"},
		{name: "bare newlines",
			in:   "set k 0 0 1\nx\r\nget  k \n",
			want: "STORED\r\nVALUE k 0 1\r\nx\r\nEND\r\n"},
		{name: "noreply",
			in: "set k 0 0 1 noreply\r\nx\r\nappend k 0 0 1 noreply\r\ny\r\nadd k 0 0 1 noreply\r\nz\r\n" +
				"touch k 10 noreply\r\nincr k 1 noreply\r\nget k\r\ndelete k noreply\r\nget k\r\n" +
				"set n 0 0 1 noreply\r\n1\r\nincr n 1 noreply\r\nflush_all noreply\r\nverbosity 1 noreply\r\nget n\r\n",
			want: "VALUE k 0 2\r\nxy\r\nEND\r\nEND\r\nEND\r\n"},
		{name: "noreply silences errors",
			in:   "set k 0 0 -1 noreply\r\nset k 0 0 1 noreply\r\nxyz\r\n",
			want: "ERROR\r\n"},
		{name: "add replace append prepend",
			in: "add k 1 0 1\r\na\r\nadd k 2 0 1\r\nb\r\nreplace k 3 0 1\r\nc\r\nreplace x 0 0 1\r\nd\r\n" +
				"append k 9 0 1\r\n>\r\nprepend k 9 0 1\r\n<\r\nappend x 0 0 1\r\ne\r\nget k x\r\n",
			want: "STORED\r\nNOT_STORED\r\nSTORED\r\nNOT_STORED\r\nSTORED\r\nSTORED\r\nNOT_STORED\r\n" +
				"VALUE k 3 3\r\n<c>\r\nEND\r\n"},
		{name: "cas",
			in: "cas k 0 0 1 1\r\na\r\nset k 0 0 1\r\nb\r\ncas k 0 0 1 7\r\nc\r\ncas k 0 0 1 1\r\nd\r\n" +
				"gets k\r\ncas k 0 0 1\r\n",
			want: "NOT_FOUND\r\nSTORED\r\nEXISTS\r\nSTORED\r\nVALUE k 0 1 2\r\nd\r\nEND\r\nERROR\r\n"},
		{name: "touch and delete",
			in: "touch k 0\r\nset k 0 0 1\r\nx\r\ntouch k 0\r\ndelete k\r\ndelete k\r\ndelete k 0\r\ndelete k 1\r\n",
			want: "NOT_FOUND\r\nSTORED\r\nTOUCHED\r\nDELETED\r\nNOT_FOUND\r\nNOT_FOUND\r\n" +
				"CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n"},
		{name: "gat and gats",
			in:   "set k 3 0 1\r\nx\r\ngat 100 k z\r\ngats 100 k\r\ngat k\r\ngat x k\r\n",
			want: "STORED\r\nVALUE k 3 1\r\nx\r\nEND\r\nVALUE k 3 1 1\r\nx\r\nEND\r\nERROR\r\nCLIENT_ERROR invalid exptime argument\r\n"},
		{name: "incr decr",
			in: "incr n 1\r\nset n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 3\r\ndecr n 100\r\n" +
				"set n 0 0 20\r\n18446744073709551615\r\nincr n 2\r\nset t 0 0 2\r\nab\r\nincr t 1\r\n" +
				"incr n x\r\nincr n -1\r\nset s 0 0 4\r\n12 x\r\nincr s 1\r\n",
			want: "NOT_FOUND\r\nSTORED\r\n15\r\n12\r\n0\r\nSTORED\r\n1\r\nSTORED\r\n" +
				"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n" +
				"CLIENT_ERROR invalid numeric delta argument\r\nCLIENT_ERROR invalid numeric delta argument\r\n" +
				"STORED\r\n13\r\n"},
		{name: "flush_all and verbosity",
			in:   "set k 0 0 1\r\nx\r\nflush_all\r\nget k\r\nflush_all 0\r\nflush_all x\r\nverbosity 1\r\nverbosity\r\n",
			want: "STORED\r\nOK\r\nEND\r\nOK\r\nCLIENT_ERROR bad command line format\r\nOK\r\nERROR\r\n"},
		{name: "bad data chunk",
			in:   "set k 0 0 3\r\nabcd\r\nget k\r\nset k 0 0 1\r\nxy\r\n",
			want: "CLIENT_ERROR bad data chunk\r\nERROR\r\nEND\r\nCLIENT_ERROR bad data chunk\r\nERROR\r\n"},
		{name: "too large is swallowed and unlinks the old value", opts: Options{MaxItemSize: 10},
			in: "set k 0 0 1\r\nx\r\nset k 0 0 11\r\n01234567890\r\nget k\r\n" +
				"add j 0 0 100000\r\n" + strings.Repeat("\r\n", 50000) + "\r\nget j\r\n",
			want: "STORED\r\nSERVER_ERROR object too large for cache\r\nEND\r\n" +
				"SERVER_ERROR object too large for cache\r\nEND\r\n"},
		{name: "append beyond the item size", opts: Options{MaxItemSize: 3},
			in:   "set k 0 0 2\r\nab\r\nappend k 0 0 2\r\ncd\r\nget k\r\n",
			want: "STORED\r\nNOT_STORED\r\nVALUE k 0 2\r\nab\r\nEND\r\n"},
		{name: "unknown commands",
			in:   "foo\r\nGET k\r\n\r\n   \r\nget\r\nset k 0 0\r\nset k 0 0 1 noreply extra\r\nversion 1\r\nstats items\r\n",
			want: "ERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\nERROR\r\n"},
		{name: "malformed numbers",
			in: "set k x 0 1\r\nset k 0 x 1\r\nset k 0 0 x\r\nset k 0 0 -1\r\nset k -1 0 1\r\n" +
				"set k 4294967296 0 1\r\nset k 0 0 99999999999\r\ncas k 0 0 1 -1\r\ntouch k x\r\n",
			want: strings.Repeat("CLIENT_ERROR bad command line format\r\n", 8) +
				"CLIENT_ERROR invalid exptime argument\r\n"},
		{name: "keys",
			in: "get " + long + "\r\nget " + long + "k\r\nget a " + long + "k\r\nset " + long + "k 0 0 1\r\n" +
				"get a\x01b\r\nget a\tb\r\ndelete " + long + "k\r\ntouch " + long + "k 0\r\nincr " + long + "k 1\r\n" +
				"set \x7f 0 0 1\r\n",
			want: "END\r\n" + strings.Repeat("CLIENT_ERROR bad command line format\r\n", 9)},
		{name: "long get line",
			in:   "get" + strings.Repeat(" "+long, 20) + "\r\n",
			want: "END\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, tt.opts)
			got := exchange(t, s, tt.in)
			assert.Equal(t, tt.want, got, "replies to %q = %q, want %q", tt.in, got, tt.want)
		})
	}
}

func TestProtocolCloses(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"quit", "get a\r\nquit\r\n", "END\r\n"},
		{"overlong line", "set " + strings.Repeat("x", 3000), ""},
		{"overlong get line", "get" + strings.Repeat(" k", maxRetrievalLine/2+1) + "\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startServer(t, Options{})
			got := readAll(t, s, tt.in)
			assert.Equal(t, tt.want, got, "replies to %.40q... = %q, want %q then the end", tt.in, got, tt.want)
		})
	}
}

func TestEviction(t *testing.T) {
	const n = 10
	item := int64(len("k0") + 100 + itemOverhead)
	s := startServer(t, Options{MaxItemSize: 100, MaxBytes: n * item})
	mc := newClient(s)
	value := bytes.Repeat([]byte("v"), 100)
	for i := range n {
		require.NoError(t, mc.Set(&memcache.Item{Key: fmt.Sprintf("k%d", i), Value: value}), "Set(k%d) failed, want stored: the cache has room for %d", i, n)
	}
	_, err := mc.Get("k0") // k0 is now the most recently used; k1 the least
	require.NoError(t, err, "Get(k0) failed, want a hit")
	require.NoError(t, mc.Set(&memcache.Item{Key: "k10", Value: value[:99]}), "Set(k10) failed, want stored by evicting")
	_, err = mc.Get("k1")
	assert.Equal(t, memcache.ErrCacheMiss, err, "Get(k1) error = %v, want ErrCacheMiss: the least recently used item is evicted", err)
	for _, k := range []string{"k0", "k2", "k10"} {
		_, err := mc.Get(k)
		assert.NoError(t, err, "Get(%s) failed, want a hit: only k1 is evicted", k)
	}
	st := s.Stats()
	assert.Equal(t, uint64(1), st.Evictions, "Stats().Evictions = %d, want 1", st.Evictions)
	assert.Equal(t, uint64(n), st.CurrItems, "Stats().CurrItems = %d, want %d", st.CurrItems, n)
	assert.LessOrEqual(t, st.Bytes, uint64(n*item), "Stats().Bytes = %d, want at most %d", st.Bytes, n*item)
}

func TestStartOptions(t *testing.T) {
	for _, opts := range []Options{{MaxItemSize: -1}, {MaxBytes: -1}, {MaxItemSize: 100, MaxBytes: 99}} {
		s, err := Start("127.0.0.1:0", opts)
		if !assert.Error(t, err, "Start(%+v) error = nil, want an error: the options are invalid", opts) {
			s.Close()
		}
	}
	_, err := Start("256.0.0.1:0", Options{})
	assert.Error(t, err, "Start(256.0.0.1:0) error = nil, want an error: no such address")
}

// waitFor polls cond until it holds or the deadline passes. It calls cond
// on the test's goroutine, unlike require.Eventually, so that polling adds
// no goroutine to a count of them.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(ioTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			require.True(t, cond(), "waiting for %s: not after %v", what, ioTimeout)
			return
		case <-tick.C:
		}
	}
}

func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start("127.0.0.1:0", Options{MaxItemSize: 100})
	require.NoError(t, err, "Start(127.0.0.1:0) failed, want a server")
	mc := newClient(s)
	require.NoError(t, mc.Set(&memcache.Item{Key: "k", Value: []byte("v")}), "Set(k) failed, want stored")
	idle := dial(t, s)
	// A hostile client announcing 2 GB: the server must swallow it without
	// buffering it, and Close must still end that connection.
	hostile := dial(t, s)
	_, err = io.WriteString(hostile, "set big 0 0 2000000000\r\n"+strings.Repeat("x", 100000))
	require.NoError(t, err, "write the hostile set: the server must read it, not stall")
	waitFor(t, "3 connections", func() bool { return s.Stats().CurrConnections == 3 })

	assert.NoError(t, s.Close(), "Close() failed, want nil")
	assert.NoError(t, s.Close(), "second Close() failed, want nil: Close is idempotent")
	// mc must stay reachable until here: were it collected, a finalizer
	// would close its idle connection and the count of 3 would not hold.
	_, err = mc.Get("k")
	assert.Error(t, err, "Get on a pooled connection after Close succeeded, want an error")
	// The hostile client may have got its SERVER_ERROR before the end.
	for _, c := range []net.Conn{idle, hostile} {
		out, err := io.ReadAll(c)
		assert.False(t, isTimeout(err), "read after Close = %q, %v, want the end of the connection", out, err)
		if len(out) > 0 {
			assert.Equal(t, "SERVER_ERROR object too large for cache\r\n", string(out), "read after Close = %q, want nothing or the hostile set's error", out)
		}
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), ioTimeout); !assert.Error(t, err, "dial after Close succeeded, want refused") {
		c.Close()
	}
	st := s.Stats()
	assert.Zero(t, st.CurrItems, "Stats().CurrItems after Close = %d, want 0", st.CurrItems)
	assert.Zero(t, st.CurrConnections, "Stats().CurrConnections after Close = %d, want 0", st.CurrConnections)
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= before })
}

func TestConcurrentClients(t *testing.T) {
	s := startServer(t, Options{})
	const workers, ops = 16, 100
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mc := newClient(s)
			mc.MaxIdleConns = 2
			errs <- func() error {
				for i := range ops {
					key := fmt.Sprintf("w%d-%d", w, i%10)
					value := []byte(fmt.Sprintf("%d", i))
					if err := mc.Set(&memcache.Item{Key: key, Value: value}); err != nil {
						return fmt.Errorf("Set(%s): %w", key, err)
					}
					it, err := mc.Get(key)
					if err != nil || !bytes.Equal(it.Value, value) {
						return fmt.Errorf("Get(%s) = %v, %v, want %s", key, it, err, value)
					}
					if _, err := mc.Increment(key, 1); err != nil {
						return fmt.Errorf("Increment(%s): %w", key, err)
					}
					if i%7 == 0 {
						mc.Delete(key)
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err, "a client's operations failed, want every one to succeed")
	}
}

// FuzzServerInput feeds arbitrary bytes to a connection handler, which must
// neither panic nor hang, and must leave the store consistent.
func FuzzServerInput(f *testing.F) {
	for _, seed := range []string{
		"set a 0 0 1\r\nA\r\nget a b\r\ngets a\r\n",
		"cas a 0 0 1 1 noreply\r\nx\r\nappend a 0 0 2\r\nyz\r\nprepend a 0 0 1\r\n<\r\n",
		"set n 0 5 2\r\n10\r\nincr n 5\r\ndecr n 100\r\ntouch n 1\r\ngat 1 n\r\ndelete n 0 noreply\r\n",
		"flush_all 3\r\nset a 0 -1 0\r\n\r\nadd a 0 2592001 1\r\nx\r\nstats\r\nversion\r\nverbosity 1\r\n",
		"set k 0 0 100000000\r\nxxxx",
		"set k 0 0 3\r\nabcd\r\n\r\n\nget " + strings.Repeat("k", 300) + "\r\nquit\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var tick sync.Mutex // guards now
		now := time.Unix(1_700_000_000, 0)
		s, err := newServer(Options{MaxItemSize: 64, MaxBytes: 1024, Now: func() time.Time {
			tick.Lock()
			defer tick.Unlock()
			now = now.Add(time.Second) // every command sees time pass
			return now
		}})
		require.NoError(t, err, "newServer failed, want a server for valid options")
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serve(bytes.NewReader(in), io.Discard)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			require.FailNow(t, "serve did not return", "serve(%q) still running after 10s, want it to return at the end of its input", in)
		}
		st := s.store
		st.mu.Lock()
		defer st.mu.Unlock()
		var sum int64
		for e := st.lru.Front(); e != nil; e = e.Next() {
			sum += e.Value.(*item).size()
		}
		assert.Equal(t, sum, st.bytes, "store after %q: bytes %d, want %d, the sum of its items' sizes", in, st.bytes, sum)
		assert.Equal(t, len(st.items), st.lru.Len(), "store after %q: lru holds %d items, want %d, as the map does", in, st.lru.Len(), len(st.items))
		assert.LessOrEqual(t, st.bytes, st.maxBytes, "store after %q: bytes %d, want at most the limit %d", in, st.bytes, st.maxBytes)
	})
}
