package memcachetest

// Starting, probing and killing one memcached process.

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/mcsession/mcsession/internal/childproc"
	"github.com/mcsession/mcsession/internal/proctest"
)

// lookBinary resolves name like exec.LookPath and explains a miss.
func lookBinary(name string) (string, error) {
	path, err := exec.LookPath(name)
	if err == nil {
		return path, nil
	}
	what := "memcached not found in PATH"
	if name != DefaultBinary {
		what = fmt.Sprintf("memcached binary %q not found (%v)", name, err)
	}
	return "", fmt.Errorf("memcachetest: %s; install it (apt-get install memcached) "+
		"or these tests are skipped; set %s=1 to make this a failure", what, EnvRequire)
}

// freePort asks the kernel for an unused loopback port. Another process may
// take it before memcached binds it; callers retry on errPortInUse.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("memcachetest: pick a free port: %w", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		return 0, fmt.Errorf("memcachetest: pick a free port: %w", err)
	}
	return port, nil
}

// memcachedArgs builds the command line: TCP only, loopback only, one
// worker thread (enough for tests, and it keeps counters deterministic).
// With o.TLS, port stays plain and tlsPort is the TLS listener.
func memcachedArgs(o Options, port, tlsPort int) []string {
	listen := []string{"-l", "127.0.0.1"}
	if o.TLS != nil {
		listen = []string{
			"-Z", "-o", "ssl_chain_cert=" + o.TLS.CertFile + ",ssl_key=" + o.TLS.KeyFile,
			"-l", "notls:127.0.0.1:" + strconv.Itoa(port),
			"-l", "127.0.0.1:" + strconv.Itoa(tlsPort),
		}
	}
	args := append(listen,
		"-p", strconv.Itoa(port),
		"-U", "0",
		"-m", strconv.Itoa(o.memoryMB()),
		"-t", "1",
		"-c", "1024",
	)
	if o.MaxItemSize != "" {
		args = append(args, "-I", o.MaxItemSize)
	}
	if os.Geteuid() == 0 {
		// memcached refuses to run as root unless told which user to be.
		args = append(args, "-u", "root")
	}
	return args
}

// launch starts one memcached process and waits until it answers on s.addr.
// On any error the process has been killed and reaped.
func (s *Server) launch() (*process, error) {
	out := &proctest.Buffer{}
	cmd := exec.Command(s.binary, s.args...)
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = childproc.Attr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("memcachetest: start %s: %w", s.binary, err)
	}
	p := &process{cmd: cmd, output: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()

	err := p.waitReady(s.addr)
	if err != nil {
		if kerr := p.kill(); kerr != nil {
			err = errors.Join(err, kerr)
		}
		if errors.Is(err, errPortInUse) || strings.Contains(out.String(), "Address already in use") {
			return nil, fmt.Errorf("%w: %s", errPortInUse, s.addr)
		}
		return nil, fmt.Errorf("%w\nmemcached %s output:\n%s", err, strings.Join(s.args, " "), out.String())
	}
	return p, nil
}

// waitReady polls addr with "version" until the server answers, the process
// exits, or readyTimeout passes. It then checks the pid reported by "stats"
// so that a foreign server that grabbed the port is never mistaken for ours.
func (p *process) waitReady(addr string) error {
	deadline := time.Now().Add(readyTimeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = probeVersion(addr, deadline); lastErr == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("memcachetest: %s not ready after %v: %w", addr, readyTimeout, lastErr)
		}
		select {
		case <-p.done:
			return fmt.Errorf("memcachetest: memcached exited during startup: %v", p.waitErr)
		case <-tick.C:
		}
	}
	stats, err := stats(addr, ioTimeout)
	if err != nil {
		return err
	}
	if got, want := stats.Raw["pid"], strconv.Itoa(p.cmd.Process.Pid); got != want {
		return fmt.Errorf("memcachetest: %s is answered by pid %s, want %s: %w", addr, got, want, errPortInUse)
	}
	return nil
}

// probeVersion sends "version" and expects "VERSION ...". Each attempt is
// bounded by a short timeout so that a slow dial cannot overrun deadline by
// much.
func probeVersion(addr string, deadline time.Time) error {
	attempt := time.Now().Add(250 * time.Millisecond)
	if attempt.After(deadline) {
		attempt = deadline
	}
	return roundTrip(addr, time.Until(attempt), func(c *conn) error {
		line, err := c.command("version")
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "VERSION ") {
			return fmt.Errorf("memcachetest: version: unexpected reply %q", line)
		}
		return nil
	})
}

// kill kills the process (SIGKILL on Unix) and continues it in case it is
// stopped (SIGKILL alone does terminate a stopped process on Linux, but
// continuing costs nothing to be sure), then waits until it is reaped.
func (p *process) kill() error {
	if p.exited() {
		return nil
	}
	// Errors are ignored: the only ones possible here are that the process
	// has already exited, which is what we want, and that the system cannot
	// continue a process, which then cannot have been stopped either.
	_ = p.cmd.Process.Kill()
	_ = continueProcess(p.cmd.Process)
	timer := time.NewTimer(exitTimeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		return fmt.Errorf("memcachetest: pid %d did not exit %v after it was killed", p.cmd.Process.Pid, exitTimeout)
	}
}
