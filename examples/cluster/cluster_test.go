package main

import (
	"context"
	"testing"
	"time"
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
	if err != nil {
		t.Fatalf("run(scenario) = %v, want every cart intact", err)
	}
}
