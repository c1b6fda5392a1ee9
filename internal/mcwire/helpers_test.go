package mcwire_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/mcwire"
	"github.com/mcsession/mcsession/internal/memcachetest"
)

// waitFor bounds every poll of these tests: generous, since the race
// detector on a loaded machine is slow.
const waitFor = 5 * time.Second

// alwaysUp is the alive func of a Node whose owner never marks it down.
func alwaysUp() bool { return true }

// newNode returns a Node of addr that the test closes when it ends.
func newNode(t *testing.T, addr string, timeout time.Duration, maxIdle int, alive func() bool) *mcwire.Node {
	t.Helper()
	n := mcwire.New(addr, timeout, maxIdle, alive, nil)
	t.Cleanup(n.Close)
	return n
}

// newSets returns one set per size, keyed prefix-0, prefix-1, ..., each
// value a run of its own letter.
func newSets(prefix string, sizes ...int) []*mcwire.Set {
	sets := make([]*mcwire.Set, len(sizes))
	for i, size := range sizes {
		sets[i] = &mcwire.Set{Key: fmt.Sprintf("%s-%d", prefix, i), Value: bytes.Repeat([]byte{byte('a' + i%26)}, size), Exp: 600}
	}
	return sets
}

// fakeServer is a loopback listener that serves every connection with
// handle on its own goroutine and counts the connections it accepts. The
// test's cleanup closes the listener and every connection and waits for
// the goroutines.
type fakeServer struct {
	ln       net.Listener
	accepted atomic.Int64

	// mu guards conns.
	mu    sync.Mutex
	conns []net.Conn

	wg sync.WaitGroup
}

func startFake(t *testing.T, handle func(net.Conn)) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err, "listen on a free loopback port for a fake server")
	s := &fakeServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // the listener was closed
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *fakeServer) addr() string { return s.ln.Addr().String() }

// silent reads whatever the client sends and never answers: a node that
// accepts connections but does not serve them.
func silent(c net.Conn) { io.Copy(io.Discard, c) }

// replying answers every set with line, after reading its data, and every
// other command line with "ERROR": a node that refuses sets its own way.
func replying(line string) func(net.Conn) {
	return func(c net.Conn) {
		r := bufio.NewReader(c)
		for {
			cmd, err := r.ReadString('\n')
			if err != nil {
				return
			}
			f := strings.Fields(cmd)
			if len(f) < 5 || f[0] != "set" {
				io.WriteString(c, "ERROR\r\n")
				continue
			}
			size, err := strconv.Atoi(f[4])
			if err != nil {
				return
			}
			if _, err := io.CopyN(io.Discard, r, int64(size)+2); err != nil {
				return
			}
			if _, err := io.WriteString(c, line+"\r\n"); err != nil {
				return
			}
		}
	}
}

// proxy forwards every connection it accepts to upstream, so a test can
// count the connections a Node dials (fakeServer.accepted). When either
// side closes, it closes both, as a restart of upstream closes the
// connections to it.
func proxy(upstream string) func(net.Conn) {
	return func(down net.Conn) {
		defer down.Close()
		up, err := net.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer up.Close()
		done := make(chan struct{}, 2)
		go func() { io.Copy(up, down); done <- struct{}{} }()
		go func() { io.Copy(down, up); done <- struct{}{} }()
		<-done // one side is gone: close both, which ends the other copy
		down.Close()
		up.Close()
		<-done
	}
}

// closedPort returns a loopback address nothing listens on: dials to it
// are refused.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err, "listen on a free loopback port")
	addr := ln.Addr().String()
	require.NoError(t, ln.Close(), "close the listener, so that dials to %s are refused", addr)
	return addr
}

// className names c for failure messages.
func className(c mcwire.Class) string {
	switch c {
	case mcwire.OK:
		return "OK"
	case mcwire.Miss:
		return "Miss"
	case mcwire.Refused:
		return "Refused"
	case mcwire.Unreachable:
		return "Unreachable"
	case mcwire.Closed:
		return "Closed"
	}
	return fmt.Sprintf("Class(%d)", int(c))
}

// assertClass checks that Classify(err) is want, for the reason why.
func assertClass(t *testing.T, err error, want mcwire.Class, why string, args ...any) bool {
	t.Helper()
	got := mcwire.Classify(err)
	return assert.Equal(t, want, got, "Classify(%v) = %s, want %s: %s", err, className(got), className(want), fmt.Sprintf(why, args...))
}

// holder is a fake node that reads one command on its first connection,
// tells the test, and answers it only once the test calls answer; then it
// reports when the client closes that connection.
type holder struct {
	commands chan string   // the verb of the command read
	release  chan struct{} // closed by answer
	answered sync.Once
	closed   chan struct{} // closed when the client closed its side
	first    atomic.Bool   // the first connection is taken
}

// startHolder starts a holder; the test's cleanup answers it if the test
// did not, so that no handler is left waiting.
func startHolder(t *testing.T) (*holder, *fakeServer) {
	t.Helper()
	h := &holder{commands: make(chan string, 1), release: make(chan struct{}), closed: make(chan struct{})}
	srv := startFake(t, h.serve)
	t.Cleanup(h.answer) // runs before the fake server's cleanup waits for h.serve
	return h, srv
}

// answer lets the held command have its reply.
func (h *holder) answer() { h.answered.Do(func() { close(h.release) }) }

func (h *holder) serve(c net.Conn) {
	if !h.first.CompareAndSwap(false, true) {
		silent(c) // only the first connection is held and watched
		return
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	reply := "END\r\n" // gets: a miss
	if f[0] == "set" && len(f) >= 5 {
		size, _ := strconv.Atoi(f[4])
		if _, err := io.CopyN(io.Discard, r, int64(size)+2); err != nil {
			return
		}
		reply = "STORED\r\n"
	}
	h.commands <- f[0]
	<-h.release
	if _, err := io.WriteString(c, reply); err != nil {
		return
	}
	io.Copy(io.Discard, r) // until the client closes
	close(h.closed)
}

// awaitCommand waits until the holder has read a command, verb.
func (h *holder) awaitCommand(t *testing.T, verb string) {
	t.Helper()
	select {
	case got := <-h.commands:
		require.Equal(t, verb, got, "the command the fake node received")
	case <-time.After(waitFor):
		require.FailNow(t, "no command reached the fake node", "want %s within %v", verb, waitFor)
	}
}

// awaitClosed asserts that the client closes the held connection.
func (h *holder) awaitClosed(t *testing.T, what string) {
	t.Helper()
	select {
	case <-h.closed:
	case <-time.After(waitFor):
		assert.Fail(t, "connection left open", "want the Node to close %s, still open after %v", what, waitFor)
	}
}

// currConnections returns memcached's curr_connections, which counts the
// connection that asks, or 0 if the stats cannot be read. It is polled
// from require.Eventually's goroutine, so it cannot fail the test.
func currConnections(srv *memcachetest.Server) uint64 {
	st, err := srv.Stats()
	if err != nil {
		return 0
	}
	return st.CurrConnections
}
