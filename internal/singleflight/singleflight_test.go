package singleflight

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestConcurrentCallersShareOneCall holds the first call until every other
// caller has joined it, then checks that fn ran once and all got its result.
func TestConcurrentCallersShareOneCall(t *testing.T) {
	var g Group[int]
	var runs atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{})
	const callers = 10
	results := make([]int, callers)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		results[0] = g.Do("k", func() int {
			runs.Add(1)
			close(started)
			<-release
			return 42
		})
	}()
	<-started
	for i := 1; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = g.Do("k", func() int { runs.Add(1); return -1 })
		}()
	}
	// The joiners wait on the running call; none can finish before release.
	waitJoined(t, &g, "k", callers-1)
	close(release)
	wg.Wait()
	assert.Equal(t, int32(1), runs.Load(), "fn runs while a call for the key is in flight: want one call shared")
	for i, r := range results {
		assert.Equal(t, 42, r, "caller %d's result: the shared call's", i)
	}
}

// waitJoined waits until n callers share the running call for key.
func waitJoined(t *testing.T, g *Group[int], key string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		c := g.calls[key]
		joined := c != nil && c.waiters == n
		g.mu.Unlock()
		if joined {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5s: fewer than %d callers share the call for %q", n, key)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestKeysAreIndependentAndCallsEnd(t *testing.T) {
	var g Group[string]
	assert.Equal(t, "a", g.Do("a", func() string { return "a" }), "Do(a)")
	assert.Equal(t, "b", g.Do("b", func() string { return "b" }), "Do(b)")
	assert.Equal(t, "again", g.Do("a", func() string { return "again" }), "Do(a) after the first call ended: runs afresh")
	assert.Empty(t, g.calls, "finished calls are forgotten")
}
