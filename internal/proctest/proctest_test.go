package proctest

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFreeAddr(t *testing.T) {
	addr := FreeAddr(t)
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err, "FreeAddr() = %q, want host:port", addr)
	assert.Equal(t, "127.0.0.1", host, "FreeAddr() = %q, want a loopback address", addr)
	assert.NotEqual(t, "0", port, "FreeAddr() = %q, want a real port, not 0", addr)
	l, err := net.Listen("tcp", addr)
	require.NoError(t, err, "Listen(FreeAddr()) failed, want the port to be free: FreeAddr closes its own listener")
	assert.NoError(t, l.Close(), "closing the listener on %s", addr)
}

func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build; skipped with -short")
	}
	bin := Build(t, "github.com/mcsession/mcsession/examples/basic")
	fi, err := os.Stat(bin)
	require.NoError(t, err, "Build returned %q, want the path of the binary it built", bin)
	assert.True(t, fi.Mode().IsRegular(), "Build's output %q is %v, want a regular file", bin, fi.Mode())
	if runtime.GOOS != "windows" { // which has no executable bit
		assert.NotZero(t, fi.Mode()&0o111, "Build's output %q has mode %v, want it executable", bin, fi.Mode())
	}
}

// fatalTB records Fatalf instead of stopping the test, so Build's failure
// can be checked.
type fatalTB struct {
	testing.TB
	mu     sync.Mutex // guards fatals
	fatals []string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fatals = append(f.fatals, fmt.Sprintf(format, args...))
}

func TestBuildFailureShowsOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go build; skipped with -short")
	}
	const pkg = "github.com/mcsession/mcsession/internal/nosuchpackage"
	f := &fatalTB{TB: t}
	Build(f, pkg)
	require.Len(t, f.fatals, 1, "Build(%s) failed the test %d times (%q), want once", pkg, len(f.fatals), f.fatals)
	assert.True(t, strings.HasPrefix(f.fatals[0], "go build "+pkg+": "),
		"Build(%s) failed with %q, want it to name the command that failed", pkg, f.fatals[0])
	assert.Contains(t, f.fatals[0], "nosuchpackage", "Build(%s) failed with %q, want go build's own output", pkg, f.fatals[0])
}
