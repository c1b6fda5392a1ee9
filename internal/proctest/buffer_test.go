package proctest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBufferZeroValue(t *testing.T) {
	var b Buffer
	assert.Empty(t, b.String(), "Buffer{}.String() = %q, want \"\": the zero value is an empty buffer", b.String())
	var w io.Writer = &b // a Buffer is what exec.Cmd.Stdout takes
	n, err := io.WriteString(w, "hello, ")
	require.NoError(t, err, "Write(hello, ) failed, want nil: Write never fails")
	assert.Equal(t, 7, n, "Write(hello, ) = %d, want 7: every byte is taken", n)
	fmt.Fprint(w, "world")
	assert.Equal(t, "hello, world", b.String(), "String() after two writes = %q, want them in order", b.String())
}

// TestBufferConcurrent writes from several goroutines while another reads;
// under the race detector it proves the locking, and every write must come
// out whole.
func TestBufferConcurrent(t *testing.T) {
	const writers, lines = 8, 200
	var b Buffer
	var wg sync.WaitGroup
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stop:
				return
			default:
				_ = b.String()
			}
		}
	}()
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				fmt.Fprintf(&b, "writer %d line %03d\n", w, i)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-readerDone

	got := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	require.Len(t, got, writers*lines, "String() holds %d lines, want %d: %d writers wrote %d lines each", len(got), writers*lines, writers, lines)
	next := make([]int, writers) // the line each writer must write next
	for _, line := range got {
		var w, i int
		_, err := fmt.Sscanf(line, "writer %d line %d", &w, &i)
		require.NoError(t, err, "line %q is not one written whole, want \"writer W line NNN\": writes must not interleave", line)
		require.True(t, w >= 0 && w < writers, "line %q names writer %d, want 0..%d", line, w, writers-1)
		assert.Equal(t, next[w], i, "writer %d: line %d follows line %d, want %d: one writer's lines stay in order", w, i, next[w]-1, next[w])
		next[w] = i + 1
	}
}

// envHelper makes TestHelperWrites act as the child of
// TestBufferCollectsChildOutput instead of skipping.
const envHelper = "PROCTEST_HELPER"

// TestBufferCollectsChildOutput runs this test binary as a child whose
// stdout and stderr both go to one Buffer.
func TestBufferCollectsChildOutput(t *testing.T) {
	var b Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWrites$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHelper+"=1")
	cmd.Stdout = &b
	cmd.Stderr = &b
	require.NoError(t, cmd.Run(), "helper process failed; output:\n%s", b.String())
	for _, want := range []string{"to stdout\n", "to stderr\n"} {
		assert.Contains(t, b.String(), want, "output = %q, want it to contain %q: stdout and stderr both land in the Buffer", b.String(), want)
	}
}

// TestHelperWrites is the child process of TestBufferCollectsChildOutput.
func TestHelperWrites(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper process for TestBufferCollectsChildOutput")
	}
	fmt.Fprintln(os.Stdout, "to stdout")
	fmt.Fprintln(os.Stderr, "to stderr")
}
