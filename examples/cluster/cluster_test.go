package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestScenario runs the demo's whole scenario, small, with the embedded
// memcached and SyncBackup: every cart must come through every crash, the
// double fault (an instance and a memcached node dying at once) included.
func TestScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/cart and runs a cluster for about 10s; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const shoppers = 30
	results, err := run(ctx, options{shoppers: shoppers, duration: 6 * time.Second, think: 50 * time.Millisecond, embedded: true})
	require.NoError(t, err, "run(scenario) = %v, want every cart intact", err)
	require.Len(t, results, len(scenarioSteps()), "run(scenario) checked %d steps, want every step checked", len(results))

	i := slices.IndexFunc(results, func(r stepResult) bool { return r.name == doubleFaultStep })
	require.NotEqual(t, -1, i, "no step %q in the scenario's results", doubleFaultStep)
	r := results[i]
	assert.Equal(t, shoppers, r.intact, "after the double fault: %d of %d carts intact, want all (damaged %d, items lost %d)", r.intact, shoppers, r.damaged, r.lost)
	assert.Zero(t, r.lost, "after the double fault: %d items lost, want none", r.lost)
	assert.NotContains(t, r.instances, doubleFaultInstance, "after the double fault instances %v run, want %s dead", r.instances, doubleFaultInstance)
	assert.Equal(t, []string{"n3"}, r.nodes, "after the double fault memcached %v run, want only n3 (n1 crashed before, %s with the instance)", r.nodes, doubleFaultNode)
	assert.Positive(t, r.delta.Takeovers, "the double fault took over no cart, want %s's carts taken over: it must have held some when it died", doubleFaultInstance)
}

// TestCrashNode checks that the demo crashes an embedded memcached node as
// a killed memcached dies: connections are refused, the node is listed down,
// and crashing it again is an error that names it.
func TestCrashNode(t *testing.T) {
	addr, err := freeAddr()
	require.NoError(t, err, "freeAddr() failed, want a loopback address")
	n, err := startCacheNode("n1", addr, "")
	require.NoError(t, err, "startCacheNode(n1, %s, embedded) failed, want a running node", addr)
	defer n.crash()
	c := &cluster{nodes: []*cacheNode{n}, instances: make(map[string]*instance)}
	assert.Equal(t, "instances none; memcached n1", describeUp(c.running()), "before the crash")

	require.NoError(t, c.crashNode("n1"), "crashNode(n1) failed, want the node stopped")
	if conn, err := net.DialTimeout("tcp", addr, time.Second); !assert.Error(t, err, "dial %s after crashNode(n1) succeeded, want refused", addr) {
		conn.Close()
	}
	assert.Equal(t, "instances none; memcached none", describeUp(c.running()), "after the crash")
	err = c.crashNode("n1")
	assert.ErrorContains(t, err, "memcached n1", "second crashNode(n1) = %v, want an error naming the node", err)
}

// TestChooseMemcached checks which memcached the demo runs and what its
// header says: "not found" only when the binary really is not there.
func TestChooseMemcached(t *testing.T) {
	found := func(string) (string, error) { return "/path/to/memcached", nil }
	missing := func(string) (string, error) { return "", exec.ErrNotFound }
	tests := []struct {
		name     string
		embedded bool
		lookPath func(string) (string, error)
		wantBin  string
		wantNote string // a part of the note
		notNote  string // not part of it
	}{
		{"installed", false, found, "/path/to/memcached", "the real one, /path/to/memcached", "embedded"},
		{"not installed", false, missing, "", "memcached not found in PATH", "-embedded"},
		{"installed, -embedded", true, found, "", "-embedded", "not found"},
		{"not installed, -embedded", true, missing, "", "-embedded", "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin, note := chooseMemcached(tt.embedded, tt.lookPath)
			assert.Equal(t, tt.wantBin, bin, "chooseMemcached(%v) = %q, want %q", tt.embedded, bin, tt.wantBin)
			assert.Contains(t, note, tt.wantNote, "chooseMemcached(%v) note = %q, want it to say %q", tt.embedded, note, tt.wantNote)
			assert.NotContains(t, note, tt.notNote, "chooseMemcached(%v) note = %q, want it not to say %q", tt.embedded, note, tt.notNote)
		})
	}
}

// TestServeNamesTheDemoPid checks that -serve tells how to stop the demo
// with a signal to its own pid: under go run, a signal to go run's pid
// stops nothing.
func TestServeNamesTheDemoPid(t *testing.T) {
	c := &cluster{lbURL: "http://127.0.0.1:8080", instances: make(map[string]*instance)}
	for i, route := range []string{"app1", "app2", "app3"} {
		c.instances[route] = &instance{route: route, addr: fmt.Sprintf("127.0.0.1:808%d", i+1),
			proc: &process{cmd: &exec.Cmd{Process: &os.Process{Pid: 1001 + i}}}}
	}
	c.nodes = []*cacheNode{{id: "n1", addr: "127.0.0.1:11211", proc: &process{cmd: &exec.Cmd{Process: &os.Process{Pid: 2001}}}}}
	var out strings.Builder
	c.printServe(&out)
	got := out.String()
	want := fmt.Sprintf("kill -INT %d", os.Getpid())
	assert.Contains(t, got, want, "printServe() = %q, want it to name the demo's pid: %q", got, want)
	for _, crash := range []string{"kill -9 1001", "kill -9 1002", "kill -9 1003", "kill -9 2001"} {
		assert.Contains(t, got, crash, "printServe() = %q, want %q for each process it started", got, crash)
	}
}
