package haproxy

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcsession/mcsession/internal/childproc"
	"github.com/mcsession/mcsession/internal/memcachetest"
	"github.com/mcsession/mcsession/internal/proctest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startTimeout bounds the start of one process, until it serves.
const startTimeout = 10 * time.Second

// The addresses in haproxy.cfg that the tests replace with free ports.
const (
	cfgFrontend = "127.0.0.1:8080"
	cfgStats    = "127.0.0.1:8404"
)

// cfgServers are the addresses of app1, app2, app3 in haproxy.cfg.
var cfgServers = []string{"127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"}

// proc is a child process whose output is kept. It is killed when the test
// ends.
type proc struct {
	name      string
	addr      string // where it serves
	statsAddr string // HAProxy only: its stats page
	cmd       *exec.Cmd
	out       *proctest.Buffer
	done      chan struct{} // closed once the process has been reaped
}

// startProc starts bin and registers a t.Cleanup that kills it.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &proctest.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.SysProcAttr = childproc.Attr()
	require.NoError(t, p.cmd.Start(), "start %s (%s) failed, want it running", name, bin)
	go func() {
		p.cmd.Wait() // the exit status of a killed process says nothing new
		close(p.done)
	}()
	t.Cleanup(func() { p.kill(t) })
	return p
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits until the process is reaped. It may run on
// any goroutine, so it reports a failure with assert, never require.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	if p.exited() {
		return
	}
	p.cmd.Process.Kill() // fails only if it has just exited
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		assert.Fail(t, "process still running", "%s (pid %d) did not exit 10s after SIGKILL, want it reaped", p.name, p.cmd.Process.Pid)
	}
}

// waitFor polls ready until it returns nil, the process exits, or the
// start timeout passes.
func (p *proc) waitFor(ready func() error) error {
	deadline := time.Now().Add(startTimeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.exited() {
			return errExited
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %w", p.name, startTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errExited = errors.New("exited")

// startCart starts one cart instance on a free port and waits until it
// serves. A port taken by another process between choosing and binding it
// makes the instance exit; another port is tried.
func startCart(t *testing.T, bin, route, nodes string) *proc {
	t.Helper()
	for try := 1; ; try++ {
		addr := freeAddr(t)
		p := startProc(t, route, bin, "-listen", addr, "-route", route, "-nodes", nodes, "-sync")
		p.addr = addr
		err := p.waitFor(func() error { return getOK("http://" + addr + "/healthz") })
		if err == nil {
			return p
		}
		portTaken := errors.Is(err, errExited) && strings.Contains(p.out.String(), "address already in use")
		require.True(t, portTaken && try < 5, "cart %s on %s: %v, want it serving; output:\n%s", route, addr, err, p.out)
	}
}

// startHAProxy runs HAProxy with the shipped haproxy.cfg, its addresses
// replaced by free ports and cartAddrs, and waits until its health checks
// have found every instance up.
func startHAProxy(t *testing.T, bin string, cartAddrs []string) *proc {
	t.Helper()
	shipped, err := os.ReadFile("haproxy.cfg")
	require.NoError(t, err, "read the shipped haproxy.cfg")
	for _, addr := range append([]string{cfgFrontend, cfgStats}, cfgServers...) {
		require.True(t, bytes.Contains(shipped, []byte(addr)),
			"haproxy.cfg does not contain %s, want it there to be replaced; update the test with the file", addr)
	}
	for try := 1; ; try++ {
		frontend, stats := freeAddr(t), freeAddr(t)
		pairs := []string{cfgFrontend, frontend, cfgStats, stats}
		for i, addr := range cfgServers {
			pairs = append(pairs, addr, cartAddrs[i])
		}
		cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
		err := os.WriteFile(cfg, []byte(strings.NewReplacer(pairs...).Replace(string(shipped))), 0o644)
		require.NoError(t, err, "write the test's haproxy.cfg")
		p := startProc(t, "haproxy", bin, "-db", "-f", cfg)
		p.addr, p.statsAddr = frontend, stats
		err = p.waitFor(func() error { return serversUp(stats) })
		if err == nil {
			return p
		}
		portTaken := errors.Is(err, errExited) && strings.Contains(p.out.String(), "annot bind")
		require.True(t, portTaken && try < 5, "haproxy: %v, want it serving with every instance up; output:\n%s", err, p.out)
	}
}

// serversUp returns nil once the stats page shows every server UP after a
// passed check.
func serversUp(statsAddr string) error {
	rows, err := readStats(statsAddr)
	if err != nil {
		return err
	}
	up := 0
	for _, r := range rows {
		if r["pxname"] == "carts" && slices.Contains(routes, r["svname"]) {
			if r["status"] != "UP" || r["check_status"] != "L7OK" {
				return fmt.Errorf("server %s is %s, last check %s", r["svname"], r["status"], r["check_status"])
			}
			up++
		}
	}
	if up != len(routes) {
		return fmt.Errorf("%d servers in the stats, want %d", up, len(routes))
	}
	return nil
}

// readStats reads HAProxy's stats page as CSV, one map per row.
func readStats(statsAddr string) ([]map[string]string, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + statsAddr + "/;csv")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("stats page: status %d", resp.StatusCode)
	}
	r := csv.NewReader(resp.Body)
	r.FieldsPerRecord = -1
	records, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("stats page: %w", err)
	}
	if len(records) == 0 || len(records[0]) == 0 {
		return nil, errors.New("stats page: empty")
	}
	header := records[0]
	header[0] = strings.TrimPrefix(header[0], "# ")
	var rows []map[string]string
	for _, rec := range records[1:] {
		row := make(map[string]string)
		for i, v := range rec {
			if i < len(header) {
				row[header[i]] = v
			}
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// getOK returns nil if GET url answers 200.
func getOK(url string) error {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// haproxyBinary finds HAProxy: in PATH, or in the sbin directories that a
// non-root PATH often lacks. Without it the test is skipped, unless
// MCSESSION_REQUIRE_MEMCACHED=1 (CI), which makes it a failure.
func haproxyBinary(t *testing.T) string {
	t.Helper()
	if path, err := exec.LookPath("haproxy"); err == nil {
		return path
	}
	for _, path := range []string{"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"} {
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path
		}
	}
	msg := "haproxy not found in PATH, /usr/sbin or /usr/local/sbin; install it (apt-get install haproxy)"
	require.NotEqual(t, "1", os.Getenv(memcachetest.EnvRequire), "%s; %s=1 makes this a failure", msg, memcachetest.EnvRequire)
	t.Skipf("%s or this test is skipped; set %s=1 to make this a failure", msg, memcachetest.EnvRequire)
	return ""
}

// buildCart builds examples/cart into a temporary directory.
func buildCart(t *testing.T) string {
	return proctest.Build(t, "github.com/mcsession/mcsession/examples/cart")
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t *testing.T) string { return proctest.FreeAddr(t) }

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
