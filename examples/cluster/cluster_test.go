package main

import (
	"context"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestScenario runs the demo's whole scenario, small, with the embedded
// memcached and SyncBackup: every cart must come through every crash.
func TestScenario(t *testing.T) {
	if testing.Short() {
		t.Skip("builds examples/cart and runs a cluster for about 10s; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := run(ctx, options{shoppers: 30, duration: 5 * time.Second, think: 50 * time.Millisecond, embedded: true})
	require.NoError(t, err, "run(scenario) = %v, want every cart intact", err)
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
