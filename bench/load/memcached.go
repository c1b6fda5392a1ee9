package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/mcsession/mcsession/internal/childproc"
)

// memcached is one memcached process on a loopback port.
type memcached struct {
	cmd    *exec.Cmd
	addr   string
	exited chan struct{}
}

// startMemcached starts memcached on a free loopback port and waits until
// it answers "version". A port taken between picking and binding is
// retried with another.
func startMemcached(ctx context.Context, path string) (*memcached, error) {
	var last error
	for range 3 {
		m, err := tryMemcached(ctx, path)
		if err == nil {
			return m, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, last
}

func tryMemcached(ctx context.Context, path string) (*memcached, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "256", "-t", "1"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root")
	}
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = childproc.Attr()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &memcached{cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(m.exited)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := m.command("version", "VERSION "); err == nil {
			return m, nil
		}
		select {
		case <-m.exited:
			return nil, fmt.Errorf("%s %s exited: %s", path, strings.Join(args, " "), strings.TrimSpace(stderr.String()))
		case <-ctx.Done():
			m.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("memcached on %s did not answer within 5s", m.addr)
		}
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// stop kills the process and waits for it.
func (m *memcached) stop() {
	select {
	case <-m.exited:
		return
	default:
	}
	m.cmd.Process.Kill()
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
	}
}

// command sends one command and reads lines until one starts with end
// (a prefix of the last line), returning all lines.
func (m *memcached) command(cmd, end string) ([]string, error) {
	c, err := net.DialTimeout("tcp", m.addr, time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
		return nil, err
	}
	var lines []string
	r := bufio.NewReader(c)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			return nil, fmt.Errorf("memcached %s: %s: %w", m.addr, cmd, err)
		}
		l = strings.TrimRight(l, "\r\n")
		if strings.HasPrefix(l, "ERROR") || strings.HasPrefix(l, "SERVER_ERROR") || strings.HasPrefix(l, "CLIENT_ERROR") {
			return nil, fmt.Errorf("memcached %s: %s: %s", m.addr, cmd, l)
		}
		lines = append(lines, l)
		if strings.HasPrefix(l, end) {
			return lines, nil
		}
	}
}

// flush empties the node.
func (m *memcached) flush() error {
	_, err := m.command("flush_all", "OK")
	return err
}

// version is the node's version string.
func (m *memcached) version() string {
	l, err := m.command("version", "VERSION ")
	if err != nil || len(l) == 0 {
		return "?"
	}
	return strings.TrimPrefix(l[len(l)-1], "VERSION ")
}

// mcStats are the counters a run compares before and after its window.
type mcStats struct {
	ops uint64        // cmd_get + cmd_set + cmd_touch + delete_hits + delete_misses
	cpu time.Duration // rusage_user + rusage_system
}

var opCounters = []string{"cmd_get", "cmd_set", "cmd_touch", "delete_hits", "delete_misses"}

func (m *memcached) stats() (mcStats, error) {
	lines, err := m.command("stats", "END")
	if err != nil {
		return mcStats{}, err
	}
	var s mcStats
	seen := 0
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 || f[0] != "STAT" {
			continue
		}
		switch f[1] {
		case "rusage_user", "rusage_system":
			sec, err := strconv.ParseFloat(f[2], 64)
			if err != nil {
				return s, fmt.Errorf("memcached %s: stat %s %q: %w", m.addr, f[1], f[2], err)
			}
			s.cpu += time.Duration(sec * float64(time.Second))
		default:
			for _, name := range opCounters {
				if f[1] == name {
					n, err := strconv.ParseUint(f[2], 10, 64)
					if err != nil {
						return s, fmt.Errorf("memcached %s: stat %s %q: %w", m.addr, f[1], f[2], err)
					}
					s.ops += n
					seen++
				}
			}
		}
	}
	if seen != len(opCounters) {
		return s, errors.New("memcached " + m.addr + ": stats lack some of " + strings.Join(opCounters, ", "))
	}
	return s, nil
}
