package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcsession/mcsession/internal/memcacheserver"
)

// cacheNode is one memcached node: a real memcached process, or the
// embedded server when the binary is not installed.
type cacheNode struct {
	id, addr string
	proc     *process               // real memcached
	embedded *memcacheserver.Server // embedded server
	down     atomic.Bool            // crash was called
}

// startCacheNode starts node id on addr, with the memcached binary at bin,
// or embedded if bin is "".
func startCacheNode(id, addr, bin string) (*cacheNode, error) {
	n := &cacheNode{id: id, addr: addr}
	if bin == "" {
		s, err := memcacheserver.Start(addr, memcacheserver.Options{})
		if err != nil {
			return nil, fmt.Errorf("embedded memcached %s: %w", id, err)
		}
		n.embedded = s
		return n, nil
	}
	host, port, _ := net.SplitHostPort(addr)
	args := []string{"-l", host, "-p", port, "-U", "0", "-m", "64", "-t", "2"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "root") // memcached refuses to run as root otherwise
	}
	p, err := startProcess("memcached "+id, bin, args, nil, "")
	if err != nil {
		return nil, err
	}
	n.proc = p
	if err := waitListening(addr, 5*time.Second); err != nil {
		p.kill()
		return nil, fmt.Errorf("memcached %s: %w", id, err)
	}
	return n, nil
}

// crash stops the node at once: SIGKILL, or closing the embedded server,
// which cuts every connection, refuses new ones and drops every item, as a
// killed memcached does. Idempotent.
func (n *cacheNode) crash() {
	n.down.Store(true)
	if n.embedded != nil {
		n.embedded.Close()
		return
	}
	n.proc.kill()
}

// instance is one cart process.
type instance struct {
	route, addr string
	proc        *process
}

// startInstance starts the cart binary as route on addr, with keys (hex)
// as its Config.Keys.
func startInstance(bin, route, addr, nodes, keys string, sync bool, logDir string) (*instance, error) {
	args := []string{"-listen", addr, "-route", route, "-nodes", nodes}
	if sync {
		args = append(args, "-sync")
	}
	env := append(os.Environ(), "MCSESSION_KEYS="+keys)
	p, err := startProcess("cart "+route, bin, args, env, filepath.Join(logDir, route+".log"))
	if err != nil {
		return nil, err
	}
	in := &instance{route: route, addr: addr, proc: p}
	if err := waitListening(addr, 10*time.Second); err != nil {
		p.kill()
		return nil, fmt.Errorf("cart %s: %w (log: %s)", route, err, p.logPath)
	}
	return in, nil
}

// process is a child process that the cluster owns and stops.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status, set before done is closed
}

// startProcess starts bin with args and env (nil: this process's), its
// output appended to logPath (or discarded if logPath is ""). The child
// dies with this process on Linux.
func startProcess(name, bin string, args, env []string, logPath string) (*process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.SysProcAttr = childAttr()
	if logPath != "" {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close() // the child has its own copy
		cmd.Stdout, cmd.Stderr = f, f
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// kill sends SIGKILL and waits for the process to exit. Idempotent.
func (p *process) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits up to timeout for a clean exit, then kills.
// It returns the exit error, nil for exit status 0.
func (p *process) stop(timeout time.Duration) error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.kill()
		return fmt.Errorf("%s did not stop within %v; killed", p.name, timeout)
	}
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// waitListening waits until addr accepts TCP connections.
func waitListening(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening after %v: %w", addr, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// buildCart compiles examples/cart into dir and returns the binary's path.
func buildCart(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "cart")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/mcsession/mcsession/examples/cart")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build examples/cart (run the demo from inside the mcsession module): %w", err)
	}
	return bin, nil
}

// freeAddr returns a loopback address with a port that was free just now.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// addrAt returns 127.0.0.1:port, or a free port when port is 0.
func addrAt(port int) (string, error) {
	if port == 0 {
		return freeAddr()
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("port %d is taken (choose another with -port): %w", port, err)
	}
	ln.Close()
	return addr, nil
}

var errDamaged = errors.New("carts were damaged")
