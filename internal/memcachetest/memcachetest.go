package memcachetest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mcsession/mcsession/internal/proctest"
)

// EnvRequire is the environment variable that turns a missing memcached
// binary into a test failure instead of a skip. CI sets it to "1".
const EnvRequire = "MCSESSION_REQUIRE_MEMCACHED"

// Defaults used when an [Options] field is zero.
const (
	// DefaultMemoryMB is the cache size passed to memcached's -m.
	DefaultMemoryMB = 64
	// DefaultBinary is the memcached executable, looked up in PATH.
	DefaultBinary = "memcached"
)

// Timeouts of the harness. They are generous because a loaded CI machine
// running the race detector can be slow to schedule a fresh process.
const (
	// readyTimeout bounds one launch: exec until the server answers.
	readyTimeout = 5 * time.Second
	// rebindTimeout bounds how long Restart retries a port that is still
	// (or again) in use.
	rebindTimeout = 10 * time.Second
	// exitTimeout bounds how long Kill waits for the process to be reaped.
	exitTimeout = 10 * time.Second
	// stopTimeout bounds how long Pause and Resume wait for the kernel to
	// stop or continue every thread.
	stopTimeout = 2 * time.Second
	// ioTimeout is the deadline of every raw protocol exchange.
	ioTimeout = 2 * time.Second
	// pollInterval is how often readiness is probed.
	pollInterval = 10 * time.Millisecond
	// portTries is how many fresh ports Start tries when another process
	// takes the chosen port between choosing and binding it.
	portTries = 5
)

// Options configures the memcached processes started by [Start] and
// [StartN]. The zero value is usable.
type Options struct {
	// MemoryMB is the cache size in megabytes (memcached -m). Default
	// DefaultMemoryMB.
	MemoryMB int
	// MaxItemSize is the largest item memcached accepts (memcached -I), in
	// memcached's syntax, e.g. "1m" or "512k". Default: memcached's own
	// (1m).
	MaxItemSize string
	// Binary is the memcached executable, a path or a name looked up in
	// PATH. Default DefaultBinary.
	Binary string
	// TLS, if not nil, adds a TLS listener (memcached -Z) with this
	// certificate, at [Server.TLSAddr]; Addr stays plain, for the
	// helpers of this package.
	TLS *TLSFiles
}

// TLSFiles are the PEM files of a server's certificate chain and key.
type TLSFiles struct {
	CertFile, KeyFile string
}

func (o Options) memoryMB() int {
	if o.MemoryMB <= 0 {
		return DefaultMemoryMB
	}
	return o.MemoryMB
}

func (o Options) binary() string {
	if o.Binary == "" {
		return DefaultBinary
	}
	return o.Binary
}

// Server is one memcached process started by [Start]; the zero value is not
// usable. Its address stays the same across [Server.Restart]. All methods
// are safe for concurrent use. Methods that cannot return an error report
// failures with Errorf on the testing.TB given to Start, which is safe from
// any goroutine; only Restart calls Fatalf, so call it from the goroutine of
// the test that called Start, or use [Server.TryRestart].
type Server struct {
	tb      testing.TB
	binary  string // resolved path of the executable
	args    []string
	addr    string // 127.0.0.1:port, fixed for the life of the Server
	tlsAddr string // 127.0.0.1:port of the TLS listener, or ""

	// mu guards proc and paused. It is held for the whole of Kill and
	// Restart so that they never interleave with Pause or each other.
	mu     sync.Mutex
	proc   *process // nil once killed
	paused bool
}

// process is one run of memcached. Its reaper goroutine is the only caller
// of cmd.Wait; it stores the result and closes done, so any number of
// goroutines can wait for the exit.
type process struct {
	cmd     *exec.Cmd
	output  *proctest.Buffer // stdout and stderr
	done    chan struct{}
	waitErr error // written before done is closed
}

// exited reports whether the process has been reaped.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// errPortInUse is returned by launch when memcached could not bind its port.
var errPortInUse = errors.New("memcachetest: address already in use")

// Start starts one memcached on 127.0.0.1 and a free port, waits until it
// answers, and registers a t.Cleanup that kills it. At most one Options may
// be given. If the binary is missing the test is skipped, or fails when the
// environment variable [EnvRequire] is "1"; any other startup failure fails
// the test with memcached's output.
func Start(t testing.TB, opts ...Options) *Server {
	t.Helper()
	return start(t, os.Getenv(EnvRequire) == "1", opts)
}

// StartN starts n memcached servers with the same options, as [Start] does.
func StartN(t testing.TB, n int, opts ...Options) []*Server {
	t.Helper()
	servers := make([]*Server, 0, n)
	for range n {
		s := Start(t, opts...)
		if s == nil { // only a fake testing.TB returns from Skip
			return nil
		}
		servers = append(servers, s)
	}
	return servers
}

// start is Start with the environment lookup done by the caller, so that
// tests can exercise both the skip and the failure path.
func start(t testing.TB, require bool, opts []Options) *Server {
	t.Helper()
	if len(opts) > 1 {
		t.Fatalf("memcachetest: Start takes at most one Options, got %d", len(opts))
		return nil
	}
	var o Options
	if len(opts) == 1 {
		o = opts[0]
	}
	binary, err := lookBinary(o.binary())
	if err != nil {
		if require {
			t.Fatal(err)
		} else {
			t.Skip(err)
		}
		return nil
	}

	var lastErr error
	for range portTries {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
			return nil
		}
		tlsPort := 0
		if o.TLS != nil {
			if tlsPort, err = freePort(); err != nil {
				t.Fatal(err)
				return nil
			}
		}
		s := &Server{
			tb:     t,
			binary: binary,
			args:   memcachedArgs(o, port, tlsPort),
			addr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		}
		if o.TLS != nil {
			s.tlsAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
		}
		p, err := s.launch()
		if errors.Is(err, errPortInUse) {
			lastErr = err
			continue
		}
		if err != nil {
			t.Fatal(err)
			return nil
		}
		s.proc = p
		t.Cleanup(s.Kill)
		return s
	}
	t.Fatalf("memcachetest: no free port after %d tries: %v", portTries, lastErr)
	return nil
}

// TLSAddr returns the address of the server's TLS listener, or "" if it
// was started without Options.TLS.
func (s *Server) TLSAddr() string { return s.tlsAddr }

// Addr returns the server's address, "127.0.0.1:PORT". It does not change
// across Kill and Restart.
func (s *Server) Addr() string { return s.addr }

// Kill kills memcached (SIGKILL on Unix), even a paused one, and waits until
// it has exited. Clients then get connection refused. Kill is idempotent and is
// registered as a t.Cleanup by Start. A process that does not exit is
// reported with t.Errorf.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.killLocked(); err != nil {
		s.tb.Errorf("%v", err)
	}
}

func (s *Server) killLocked() error {
	if s.proc == nil {
		return nil
	}
	err := s.proc.kill()
	s.proc = nil
	s.paused = false
	return err
}

// Pause sends SIGSTOP and waits until the kernel has stopped the process.
// The server then behaves like a black-holed node: the kernel still accepts
// TCP connections into the listen backlog and buffers what clients send,
// but nothing is ever answered until Resume. Pausing a paused server does
// nothing; pausing a killed one is reported with t.Errorf. Pausing needs a
// Unix system: elsewhere Pause reports that with t.Errorf and the server
// keeps running.
func (s *Server) Pause() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.paused {
		return
	}
	if err := s.signalLocked(true); err != nil {
		s.tb.Errorf("memcachetest: pause %s: %v", s.addr, err)
		return
	}
	s.paused = true
}

// Resume sends SIGCONT to a paused server, which then answers the requests
// queued while it was stopped. Resuming a server that is not paused does
// nothing.
func (s *Server) Resume() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.paused {
		return
	}
	if err := s.signalLocked(false); err != nil {
		s.tb.Errorf("memcachetest: resume %s: %v", s.addr, err)
		return
	}
	s.paused = false
}

// signalLocked stops (stop == true) or continues the process and waits
// until the kernel has done it.
func (s *Server) signalLocked(stop bool) error {
	if s.proc == nil || s.proc.exited() {
		return errors.New("memcached is not running")
	}
	send, what := continueProcess, "SIGCONT"
	if stop {
		send, what = stopProcess, "SIGSTOP"
	}
	pid := s.proc.cmd.Process.Pid
	if err := send(s.proc.cmd.Process); err != nil {
		return err
	}
	if !waitStopState(pid, stop, time.Now().Add(stopTimeout)) {
		return fmt.Errorf("pid %d did not change state within %v after %s", pid, stopTimeout, what)
	}
	return nil
}

// Restart kills memcached if it is running (paused or not) and starts a new,
// empty one on the same address, retrying for a while if the port is
// briefly unavailable, and returns once it answers. A failure is reported
// with Fatalf on the testing.TB given to Start, so call Restart from that
// test's goroutine; elsewhere use TryRestart.
func (s *Server) Restart() {
	s.tb.Helper()
	if err := s.TryRestart(); err != nil {
		s.tb.Fatalf("%v", err)
	}
}

// TryRestart is Restart returning its error instead of failing the test,
// for use from goroutines other than the test's.
func (s *Server) TryRestart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.killLocked(); err != nil {
		return err
	}
	deadline := time.Now().Add(rebindTimeout)
	for {
		p, err := s.launch()
		if err == nil {
			s.proc = p
			return nil
		}
		if !errors.Is(err, errPortInUse) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // poll the port until the deadline
	}
}

// Running reports whether the memcached process is alive. A paused server
// is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc != nil && !s.proc.exited()
}

// Paused reports whether the server has been paused and not resumed since.
func (s *Server) Paused() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.paused
}

// Pid returns the process id of the current memcached, or 0 after Kill.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Output returns what the current memcached process has written to stdout
// and stderr, or "" after Kill; handy in failure messages.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return ""
	}
	return s.proc.output.String()
}
