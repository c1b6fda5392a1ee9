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
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
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
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(ioTimeout))
	return c
}

// exchange sends in followed by "version" on a fresh connection and returns
// everything the server answered before the VERSION line, which marks the
// end of the replies to in.
func exchange(t *testing.T, s *Server, in string) string {
	t.Helper()
	c := dial(t, s)
	if _, err := io.WriteString(c, in+"version\r\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	end := "VERSION " + Version + "\r\n"
	var out []byte
	buf := make([]byte, 4096)
	for !bytes.HasSuffix(out, []byte(end)) {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			t.Fatalf("after %q: read: %v", out, err)
		}
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
	if isTimeout(err) {
		t.Fatalf("after %q: the server did not close the connection: %v", out, err)
	}
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
		if err := mc.Set(&memcache.Item{Key: "bin", Value: value, Flags: 42}); err != nil {
			t.Fatalf("Set: %v", err)
		}
		it, err := mc.Get("bin")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if !bytes.Equal(it.Value, value) || it.Flags != 42 {
			t.Errorf("Get(bin) = %q flags %d, want %q flags 42", it.Value, it.Flags, value)
		}
		if err := mc.Set(&memcache.Item{Key: "empty"}); err != nil {
			t.Fatalf("Set(empty): %v", err)
		}
		if it, err := mc.Get("empty"); err != nil || len(it.Value) != 0 {
			t.Errorf("Get(empty) = %v, %v, want empty value", it, err)
		}
		if _, err := mc.Get("never-set"); err != memcache.ErrCacheMiss {
			t.Errorf("Get(never-set) error = %v, want ErrCacheMiss", err)
		}
	})

	t.Run("AddReplaceAppendPrepend", func(t *testing.T) {
		if err := mc.Add(&memcache.Item{Key: "add", Value: []byte("1")}); err != nil {
			t.Fatalf("Add(new): %v", err)
		}
		if err := mc.Add(&memcache.Item{Key: "add", Value: []byte("2")}); err != memcache.ErrNotStored {
			t.Errorf("Add(existing) error = %v, want ErrNotStored", err)
		}
		if err := mc.Replace(&memcache.Item{Key: "nope", Value: []byte("x")}); err != memcache.ErrNotStored {
			t.Errorf("Replace(missing) error = %v, want ErrNotStored", err)
		}
		if err := mc.Append(&memcache.Item{Key: "add", Value: []byte(">")}); err != nil {
			t.Errorf("Append: %v", err)
		}
		if err := mc.Prepend(&memcache.Item{Key: "add", Value: []byte("<")}); err != nil {
			t.Errorf("Prepend: %v", err)
		}
		if it, err := mc.Get("add"); err != nil || string(it.Value) != "<1>" {
			t.Errorf("Get(add) = %v, %v, want <1>", it, err)
		}
	})

	t.Run("CompareAndSwap", func(t *testing.T) {
		if err := mc.Set(&memcache.Item{Key: "cas", Value: []byte("v1")}); err != nil {
			t.Fatalf("Set: %v", err)
		}
		mine, err := mc.Get("cas")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		other, err := mc.Get("cas")
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		other.Value = []byte("theirs")
		if err := mc.CompareAndSwap(other); err != nil {
			t.Fatalf("CompareAndSwap(fresh) error = %v, want nil", err)
		}
		mine.Value = []byte("mine")
		if err := mc.CompareAndSwap(mine); err != memcache.ErrCASConflict {
			t.Errorf("CompareAndSwap(stale) error = %v, want ErrCASConflict", err)
		}
		if it, err := mc.Get("cas"); err != nil || string(it.Value) != "theirs" {
			t.Errorf("Get(cas) = %v, %v, want theirs", it, err)
		}
		mc.Delete("cas")
		if err := mc.CompareAndSwap(other); err != memcache.ErrCacheMiss {
			t.Errorf("CompareAndSwap(deleted) error = %v, want ErrCacheMiss", err)
		}
	})

	t.Run("Touch", func(t *testing.T) {
		mc.Set(&memcache.Item{Key: "touch", Value: []byte("x")})
		if err := mc.Touch("touch", 100); err != nil {
			t.Errorf("Touch(hit) error = %v, want nil", err)
		}
		if err := mc.Touch("touch-missing", 100); err != memcache.ErrCacheMiss {
			t.Errorf("Touch(miss) error = %v, want ErrCacheMiss", err)
		}
		if it, err := mc.GetAndTouch("touch", 100); err != nil || string(it.Value) != "x" {
			t.Errorf("GetAndTouch(hit) = %v, %v, want x", it, err)
		}
	})

	t.Run("Delete", func(t *testing.T) {
		mc.Set(&memcache.Item{Key: "del", Value: []byte("x")})
		if err := mc.Delete("del"); err != nil {
			t.Errorf("Delete(hit) error = %v, want nil", err)
		}
		if err := mc.Delete("del"); err != memcache.ErrCacheMiss {
			t.Errorf("Delete(miss) error = %v, want ErrCacheMiss", err)
		}
	})

	t.Run("GetMulti", func(t *testing.T) {
		want := map[string]string{"m1": "one", "m2": "two", "m3": ""}
		var keys []string
		for k, v := range want {
			mc.Set(&memcache.Item{Key: k, Value: []byte(v)})
			keys = append(keys, k)
		}
		got, err := mc.GetMulti(append(keys, "m-missing"))
		if err != nil {
			t.Fatalf("GetMulti: %v", err)
		}
		if len(got) != len(want) {
			t.Errorf("GetMulti returned %d items, want %d", len(got), len(want))
		}
		for k, v := range want {
			if it := got[k]; it == nil || string(it.Value) != v {
				t.Errorf("GetMulti()[%s] = %v, want %q", k, it, v)
			}
		}
	})

	t.Run("IncrementDecrement", func(t *testing.T) {
		mc.Set(&memcache.Item{Key: "n", Value: []byte("10")})
		if n, err := mc.Increment("n", 5); err != nil || n != 15 {
			t.Errorf("Increment(n, 5) = %d, %v, want 15", n, err)
		}
		if n, err := mc.Decrement("n", 100); err != nil || n != 0 {
			t.Errorf("Decrement(n, 100) = %d, %v, want 0", n, err)
		}
		if _, err := mc.Increment("n-missing", 1); err != memcache.ErrCacheMiss {
			t.Errorf("Increment(missing) error = %v, want ErrCacheMiss", err)
		}
		mc.Set(&memcache.Item{Key: "text", Value: []byte("abc")})
		if _, err := mc.Increment("text", 1); err == nil {
			t.Errorf("Increment(text) error = nil, want a client error")
		}
	})

	t.Run("PingAndFlush", func(t *testing.T) {
		if err := mc.Ping(); err != nil {
			t.Errorf("Ping: %v", err)
		}
		if err := mc.DeleteAll(); err != nil {
			t.Errorf("DeleteAll: %v", err)
		}
		if _, err := mc.Get("bin"); err != memcache.ErrCacheMiss {
			t.Errorf("Get after DeleteAll error = %v, want ErrCacheMiss", err)
		}
	})
}

func TestStatsCounters(t *testing.T) {
	s := startServer(t, Options{})
	mc := newClient(s)
	mc.Set(&memcache.Item{Key: "a", Value: []byte("1")})
	mc.GetMulti([]string{"a", "b"})
	mc.Touch("a", 0)
	mc.Touch("b", 0)
	mc.Delete("b")
	mc.Increment("a", 1)
	it, _ := mc.Get("a")
	it.Value = []byte("x")
	mc.CompareAndSwap(it)

	got := s.Stats()
	want := Stats{CmdGet: 3, CmdSet: 2, CmdTouch: 2, GetHits: 2, GetMisses: 1,
		TouchHits: 1, TouchMisses: 1, DeleteMisses: 1, IncrHits: 1, CASHits: 1,
		CurrItems: 1, TotalItems: 3, Bytes: 1 + 1 + itemOverhead,
		CurrConnections: 1, TotalConnections: 1}
	if got != want {
		t.Errorf("Stats() = %+v\nwant %+v", got, want)
	}

	out := exchange(t, s, "stats\r\n")
	for _, line := range []string{"STAT version " + Version + "\r\n", "STAT curr_items 1\r\n",
		"STAT cmd_get 3\r\n", "STAT curr_connections 2\r\n"} {
		if !strings.Contains(out, line) {
			t.Errorf("stats output lacks %q:\n%s", line, out)
		}
	}
	if !strings.HasPrefix(out, "STAT pid ") || !strings.HasSuffix(out, "\r\nEND\r\n") {
		t.Errorf("stats output = %q, want STAT lines then END", out)
	}
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
			fmt.Fprintf(c, "set k 0 %d 1\r\nx\r\n", tt.exptime)
			if line, _ := r.ReadString('\n'); line != "STORED\r\n" {
				t.Fatalf("set with exptime %d = %q, want STORED", tt.exptime, line)
			}
			present := func() bool {
				io.WriteString(c, "get k\r\n")
				line, _ := r.ReadString('\n')
				if line == "END\r\n" {
					return false
				}
				r.ReadString('\n')
				r.ReadString('\n')
				return true
			}
			if tt.alive < 0 {
				if present() {
					t.Errorf("exptime %d: item present at once, want expired", tt.exptime)
				}
				return
			}
			clock.Advance(tt.alive)
			if !present() {
				t.Errorf("exptime %d: gone after %v, want present", tt.exptime, tt.alive)
			}
			if tt.dead > 0 {
				clock.Advance(tt.dead - tt.alive)
				if present() {
					t.Errorf("exptime %d: present after %v, want expired", tt.exptime, tt.dead)
				}
			}
		})
	}

	t.Run("touch and gat extend", func(t *testing.T) {
		mc.Set(&memcache.Item{Key: "t", Value: []byte("x"), Expiration: 10})
		mc.Set(&memcache.Item{Key: "g", Value: []byte("x"), Expiration: 10})
		clock.Advance(5 * time.Second)
		if err := mc.Touch("t", 20); err != nil {
			t.Fatalf("Touch: %v", err)
		}
		if _, err := mc.GetAndTouch("g", 20); err != nil {
			t.Fatalf("GetAndTouch: %v", err)
		}
		clock.Advance(19 * time.Second)
		for _, k := range []string{"t", "g"} {
			if _, err := mc.Get(k); err != nil {
				t.Errorf("Get(%s) 19s after touch: %v, want hit", k, err)
			}
		}
		clock.Advance(time.Second)
		for _, k := range []string{"t", "g"} {
			if _, err := mc.Get(k); err != memcache.ErrCacheMiss {
				t.Errorf("Get(%s) 20s after touch error = %v, want ErrCacheMiss", k, err)
			}
		}
		mc.Set(&memcache.Item{Key: "t", Value: []byte("x")})
		if err := mc.Touch("t", -1); err != nil {
			t.Fatalf("Touch(-1): %v", err)
		}
		if _, err := mc.Get("t"); err != memcache.ErrCacheMiss {
			t.Errorf("Get after Touch(-1) error = %v, want ErrCacheMiss", err)
		}
	})

	t.Run("delayed flush_all", func(t *testing.T) {
		mc.Set(&memcache.Item{Key: "f", Value: []byte("x")})
		if got := exchange(t, s, "flush_all 10\r\n"); got != "OK\r\n" {
			t.Fatalf("flush_all 10 = %q, want OK", got)
		}
		clock.Advance(9 * time.Second)
		mc.Set(&memcache.Item{Key: "f2", Value: []byte("x")})
		if _, err := mc.Get("f"); err != nil {
			t.Errorf("Get(f) before the flush is due: %v", err)
		}
		clock.Advance(time.Second)
		for _, k := range []string{"f", "f2"} {
			if _, err := mc.Get(k); err != memcache.ErrCacheMiss {
				t.Errorf("Get(%s) after the flush error = %v, want ErrCacheMiss", k, err)
			}
		}
		mc.Set(&memcache.Item{Key: "f3", Value: []byte("x")})
		if _, err := mc.Get("f3"); err != nil {
			t.Errorf("Get(f3) stored after the flush: %v", err)
		}
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
			if got := exchange(t, s, tt.in); got != tt.want {
				t.Errorf("replies to %q\n = %q\nwant %q", tt.in, got, tt.want)
			}
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
			if got := readAll(t, s, tt.in); got != tt.want {
				t.Errorf("replies to %.40q... = %q, want %q then the end", tt.in, got, tt.want)
			}
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
		if err := mc.Set(&memcache.Item{Key: fmt.Sprintf("k%d", i), Value: value}); err != nil {
			t.Fatalf("Set: %v", err)
		}
	}
	mc.Get("k0") // k0 is now the most recently used; k1 the least
	mc.Set(&memcache.Item{Key: "k10", Value: value[:99]})
	if _, err := mc.Get("k1"); err != memcache.ErrCacheMiss {
		t.Errorf("Get(k1) error = %v, want ErrCacheMiss (evicted)", err)
	}
	for _, k := range []string{"k0", "k2", "k10"} {
		if _, err := mc.Get(k); err != nil {
			t.Errorf("Get(%s): %v, want hit", k, err)
		}
	}
	if st := s.Stats(); st.Evictions != 1 || st.CurrItems != n || st.Bytes > uint64(n*item) {
		t.Errorf("Stats() = %+v, want 1 eviction, %d items, at most %d bytes", st, n, n*item)
	}
}

func TestStartOptions(t *testing.T) {
	for _, opts := range []Options{{MaxItemSize: -1}, {MaxBytes: -1}, {MaxItemSize: 100, MaxBytes: 99}} {
		if s, err := Start("127.0.0.1:0", opts); err == nil {
			s.Close()
			t.Errorf("Start(%+v) error = nil, want an error", opts)
		}
	}
	if _, err := Start("256.0.0.1:0", Options{}); err == nil {
		t.Errorf("Start(256.0.0.1:0) error = nil, want an error")
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestClose(t *testing.T) {
	before := runtime.NumGoroutine()
	s, err := Start("127.0.0.1:0", Options{MaxItemSize: 100})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	mc := newClient(s)
	if err := mc.Set(&memcache.Item{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	idle := dial(t, s)
	// A hostile client announcing 2 GB: the server must swallow it without
	// buffering it, and Close must still end that connection.
	hostile := dial(t, s)
	io.WriteString(hostile, "set big 0 0 2000000000\r\n"+strings.Repeat("x", 100000))
	waitFor(t, "3 connections", func() bool { return s.Stats().CurrConnections == 3 })

	if err := s.Close(); err != nil {
		t.Errorf("Close() = %v, want nil", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close() = %v, want nil", err)
	}
	// mc must stay reachable until here: were it collected, a finalizer
	// would close its idle connection and the count of 3 would not hold.
	if _, err := mc.Get("k"); err == nil {
		t.Errorf("Get on a pooled connection after Close succeeded, want an error")
	}
	// The hostile client may have got its SERVER_ERROR before the end.
	for _, c := range []net.Conn{idle, hostile} {
		out, err := io.ReadAll(c)
		if isTimeout(err) || (len(out) > 0 && string(out) != "SERVER_ERROR object too large for cache\r\n") {
			t.Errorf("read after Close = %q, %v, want the end of the connection", out, err)
		}
	}
	if c, err := net.DialTimeout("tcp", s.Addr(), ioTimeout); err == nil {
		c.Close()
		t.Errorf("dial after Close succeeded, want refused")
	}
	if st := s.Stats(); st.CurrItems != 0 || st.CurrConnections != 0 {
		t.Errorf("Stats() after Close = %+v, want no items and no connections", st)
	}
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
		if err != nil {
			t.Error(err)
		}
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
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serve(bytes.NewReader(in), io.Discard)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("serve(%q) did not return", in)
		}
		st := s.store
		st.mu.Lock()
		defer st.mu.Unlock()
		var sum int64
		for e := st.lru.Front(); e != nil; e = e.Next() {
			sum += e.Value.(*item).size()
		}
		if sum != st.bytes || st.lru.Len() != len(st.items) || st.bytes > st.maxBytes {
			t.Errorf("store after %q: bytes %d (sum %d, max %d), lru %d, map %d",
				in, st.bytes, sum, st.maxBytes, st.lru.Len(), len(st.items))
		}
	})
}
