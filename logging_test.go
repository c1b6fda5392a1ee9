package mcsession

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The rate limit is one record per kind per logInterval (10s), measured with
// time.Now in logging.go, which has no clock to inject. Rather than wait
// out the interval, the tests below that need time to pass move a kind's
// last record back in time (backdate), under the logger's mutex, as the
// passing of time would. Everything else (the first record, suppression
// within the interval, kinds being independent) needs no clock at all.

// newRecordedLogger returns a rateLogger writing to a logRecorder that
// enables level and above.
func newRecordedLogger(level slog.Leveler) (*rateLogger, *logRecorder) {
	h := &logRecorder{level: level}
	return newRateLogger(slog.New(h)), h
}

// backdate moves kind's last record back by d, as if d had passed.
func backdate(r *rateLogger, kind string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last[kind] = r.last[kind].Add(-d)
}

func TestRateLoggerFirstRecordOfAKind(t *testing.T) {
	for _, tt := range []struct {
		name  string
		log   func(r *rateLogger, kind, msg string, args ...any)
		level slog.Level
	}{
		{"warn", (*rateLogger).warn, slog.LevelWarn},
		{"error", (*rateLogger).error, slog.LevelError},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, h := newRecordedLogger(slog.LevelDebug)
			tt.log(r, "node-down", "node down", "node", "n1")
			recs := h.take()
			require.Len(t, recs, 1, "%s(node-down) on a fresh logger wrote %d records, want 1", tt.name, len(recs))
			got := recs[0]
			assert.Equal(t, tt.level, got.level, "%s(node-down) level = %v, want %v", tt.name, got.level, tt.level)
			assert.Equal(t, "node down", got.msg, "%s(node-down) message = %q, want %q", tt.name, got.msg, "node down")
			assert.Equal(t, map[string]any{"node": "n1"}, got.attrs, "%s(node-down) attrs = %v, want node=n1 and no suppressed count", tt.name, got.attrs)
		})
	}
}

func TestRateLoggerSuppressesWithinInterval(t *testing.T) {
	r, h := newRecordedLogger(slog.LevelDebug)
	r.warn("node-down", "node down", "node", "n1")
	require.Len(t, h.take(), 1, "first warn(node-down) wrote no record, want 1")
	for i := range 5 {
		r.warn("node-down", "node down", "node", "n1")
		r.error("node-down", "node down", "node", "n1") // the limit is per kind, whatever the level
		recs := h.take()
		assert.Empty(t, recs, "warn and error(node-down) #%d within logInterval wrote %d records, want 0", i+1, len(recs))
	}
	// Half the interval later, still within it.
	backdate(r, "node-down", logInterval/2)
	r.warn("node-down", "node down")
	recs := h.take()
	assert.Empty(t, recs, "warn(node-down) logInterval/2 after the first wrote %d records, want 0", len(recs))
	r.mu.Lock()
	n := r.suppressed["node-down"]
	r.mu.Unlock()
	assert.Equal(t, 11, n, "suppressed[node-down] = %d, want 11: every record within the interval is counted", n)
}

// TestRateLoggerSuppressedCount checks the record after a quiet spell: it
// says how many were suppressed, and the count starts again from zero.
func TestRateLoggerSuppressedCount(t *testing.T) {
	r, h := newRecordedLogger(slog.LevelDebug)
	r.warn("bad-cookie", "bad cookie")
	h.take()
	for range 7 {
		r.warn("bad-cookie", "bad cookie")
	}
	backdate(r, "bad-cookie", logInterval)
	r.warn("bad-cookie", "bad cookie", "cookie", "x")
	recs := h.take()
	require.Len(t, recs, 1, "warn(bad-cookie) logInterval after the last record wrote %d records, want 1", len(recs))
	assert.Equal(t, map[string]any{"cookie": "x", "suppressed": int64(7)}, recs[0].attrs,
		"attrs after 7 suppressed = %v, want the caller's then suppressed=7", recs[0].attrs)

	// Nothing suppressed since: the next record after the interval has no count.
	backdate(r, "bad-cookie", logInterval)
	r.warn("bad-cookie", "bad cookie")
	recs = h.take()
	require.Len(t, recs, 1, "warn(bad-cookie) another logInterval later wrote %d records, want 1", len(recs))
	assert.NotContains(t, recs[0].attrs, "suppressed", "attrs with nothing suppressed since the last record = %v, want no suppressed count", recs[0].attrs)
}

func TestRateLoggerKindsAreIndependent(t *testing.T) {
	r, h := newRecordedLogger(slog.LevelDebug)
	r.warn("a", "a happened")
	r.warn("b", "b happened")
	r.error("c", "c happened")
	recs := h.take()
	require.Len(t, recs, 3, "first warn(a), warn(b), error(c) wrote %d records, want 3: each kind has its own limit", len(recs))

	r.warn("a", "a happened") // suppressed
	backdate(r, "b", logInterval)
	r.warn("b", "b happened")
	recs = h.take()
	require.Len(t, recs, 1, "warn(a) within the interval and warn(b) after it wrote %d records, want 1", len(recs))
	assert.Equal(t, "b happened", recs[0].msg, "the one record = %q, want b's", recs[0].msg)
	assert.NotContains(t, recs[0].attrs, "suppressed", "b's record attrs = %v, want no suppressed count: only a's record was suppressed", recs[0].attrs)

	backdate(r, "a", logInterval)
	r.warn("a", "a happened")
	recs = h.take()
	require.Len(t, recs, 1, "warn(a) after the interval wrote %d records, want 1", len(recs))
	assert.Equal(t, int64(1), recs[0].attrs["suppressed"], "a's record attrs = %v, want suppressed=1", recs[0].attrs)
}

// TestRateLoggerInfoIsNotLimited: info is for rare events and is never
// suppressed, nor does it count against a kind.
func TestRateLoggerInfoIsNotLimited(t *testing.T) {
	r, h := newRecordedLogger(slog.LevelDebug)
	for range 3 {
		r.info("node back", "node", "n1")
	}
	recs := h.take()
	require.Len(t, recs, 3, "3 info calls wrote %d records, want 3: info is not rate limited", len(recs))
	for _, rec := range recs {
		assert.Equal(t, slog.LevelInfo, rec.level, "info level = %v, want INFO", rec.level)
	}
	r.mu.Lock()
	kinds := len(r.last)
	r.mu.Unlock()
	assert.Zero(t, kinds, "kinds recorded after info = %d, want 0", kinds)
}

// TestRateLoggerConcurrentFirstRecords: of many goroutines logging one kind
// at once, exactly one writes a record and the others are counted.
func TestRateLoggerConcurrentFirstRecords(t *testing.T) {
	r, h := newRecordedLogger(slog.LevelDebug)
	const n = 50
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r.warn("flood", "flood")
		}()
	}
	close(start)
	wg.Wait()
	recs := h.take()
	assert.Len(t, recs, 1, "%d concurrent warn(flood) wrote %d records, want 1", n, len(recs))
	backdate(r, "flood", logInterval)
	r.warn("flood", "flood")
	recs = h.take()
	require.Len(t, recs, 1, "warn(flood) after the interval wrote %d records, want 1", len(recs))
	assert.Equal(t, int64(n-1), recs[0].attrs["suppressed"], "attrs = %v, want suppressed=%d", recs[0].attrs, n-1)
}

// TestRateLoggerDisabledLevel: a record below the logger's level writes
// nothing, leaves no trace in the limiter (no suppressed count, no last
// time that would hold back the first record once enabled) and allocates
// nothing.
func TestRateLoggerDisabledLevel(t *testing.T) {
	level := new(slog.LevelVar)
	level.Set(slog.LevelError + 1)
	r, h := newRecordedLogger(level)
	for range 3 {
		r.warn("k", "warning")
		r.error("k", "error", "node", "n1")
	}
	recs := h.take()
	assert.Empty(t, recs, "warn and error below the level wrote %d records, want 0", len(recs))
	r.mu.Lock()
	last, suppressed := len(r.last), len(r.suppressed)
	r.mu.Unlock()
	assert.Zero(t, last, "kinds with a last record after disabled calls = %d, want 0", last)
	assert.Zero(t, suppressed, "kinds with a suppressed count after disabled calls = %d, want 0", suppressed)

	if raceEnabled {
		t.Log("allocation check skipped: testing.AllocsPerRun is unreliable under the race detector")
	} else {
		allocs := testing.AllocsPerRun(100, func() { r.warn("k", "warning") })
		assert.Zero(t, allocs, "AllocsPerRun(warn below the level) = %v, want 0: a disabled level costs nothing", allocs)
	}

	level.Set(slog.LevelWarn)
	r.warn("k", "warning")
	recs = h.take()
	require.Len(t, recs, 1, "first warn(k) once enabled wrote %d records, want 1: disabled calls must not count", len(recs))
	assert.NotContains(t, recs[0].attrs, "suppressed", "attrs = %v, want no suppressed count: disabled calls are not suppressed ones", recs[0].attrs)
}

// TestRateLoggerManyKinds checks that a record of one kind never holds back
// another, over many kinds.
func TestRateLoggerManyKinds(t *testing.T) {
	r, h := newRecordedLogger(slog.LevelDebug)
	const kinds = 20
	for i := range kinds {
		r.warn(fmt.Sprintf("kind%d", i), "first")
		r.warn(fmt.Sprintf("kind%d", i), "second")
	}
	recs := h.take()
	require.Len(t, recs, kinds, "two warns of each of %d kinds wrote %d records, want %d: one per kind", kinds, len(recs), kinds)
	for i, rec := range recs {
		assert.Equal(t, "first", rec.msg, "record %d = %q, want the kind's first", i, rec.msg)
	}
}
