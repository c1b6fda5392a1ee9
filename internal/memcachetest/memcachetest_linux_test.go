//go:build linux

package memcachetest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// envOrphanHelper makes TestOrphanHelper act as the child of
// TestDiesWithTestBinary instead of skipping.
const envOrphanHelper = "MEMCACHETEST_ORPHAN_HELPER"

// TestDiesWithTestBinary checks Pdeathsig: it runs this test binary as a
// child that starts memcached, SIGKILLs the child (so no Cleanup runs) and
// expects memcached to die with it.
func TestDiesWithTestBinary(t *testing.T) {
	t.Parallel()
	if _, err := lookBinary(DefaultBinary); err != nil {
		t.Skip(err)
	}
	// Adopt orphans while the test runs, so that the killed memcached
	// becomes our child and can be reaped below instead of staying a zombie
	// under a PID 1 that does not reap (as in some containers).
	require.NoError(t, setChildSubreaper(true), "become a subreaper, to reap the orphaned memcached")
	defer func() { _ = setChildSubreaper(false) }()

	child := exec.Command(os.Args[0], "-test.run=^TestOrphanHelper$", "-test.count=1")
	child.Env = append(os.Environ(), envOrphanHelper+"=1")
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe() // held open so the helper blocks
	require.NoError(t, err, "StdinPipe of the helper")
	defer stdin.Close()
	stdout, err := child.StdoutPipe()
	require.NoError(t, err, "StdoutPipe of the helper")
	require.NoError(t, child.Start(), "start the helper %s", os.Args[0])
	// Reading the pid line synchronises with the helper; if it dies
	// instead, the read ends with EOF.
	line, err := bufio.NewReader(stdout).ReadString('\n')
	pidText, ok := strings.CutPrefix(strings.TrimSpace(line), "memcached pid ")
	pid, perr := strconv.Atoi(pidText)
	if err != nil || !ok || perr != nil {
		_ = child.Process.Kill()
		_ = child.Wait()
		require.FailNow(t, "no pid from the helper", "helper printed %q, %v; want \"memcached pid N\"", line, err)
	}
	require.True(t, processAlive(pid), "memcached pid %d not alive while the helper runs, want it running", pid)
	require.NoError(t, child.Process.Kill(), "SIGKILL the helper")
	_ = child.Wait() // "signal: killed" is the expected outcome
	waitGone(t, pid) // fails the test unless memcached died with the helper
	// Reap it; ECHILD means someone else already did.
	_, _ = syscall.Wait4(pid, nil, 0, nil)
}

// setChildSubreaper sets or clears PR_SET_CHILD_SUBREAPER for this process.
func setChildSubreaper(on bool) error {
	const prSetChildSubreaper = 36
	arg := uintptr(0)
	if on {
		arg = 1
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, arg, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER, %d): %w", arg, errno)
	}
	return nil
}

// TestOrphanHelper is the child process of TestDiesWithTestBinary.
func TestOrphanHelper(t *testing.T) {
	if os.Getenv(envOrphanHelper) != "1" {
		t.Skip("helper process for TestDiesWithTestBinary")
	}
	s := Start(t)
	fmt.Printf("memcached pid %d\n", s.Pid())
	// Block until the parent kills us; a closed stdin (parent gone) ends
	// the wait too, and then Cleanup kills memcached normally.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}
