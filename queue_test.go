package mcsession

import (
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBackgroundWorkLeavesHalfTheQueue pins the pacing of repairs, rescues
// and retries: they fill the queue at most halfway and wait in the pending
// set for the rest, uncounted as dropped, so that the stores requests start
// still find room.
func TestBackgroundWorkLeavesHalfTheQueue(t *testing.T) {
	var stats counters
	q := newQueue(8, &stats, newRateLogger(slog.New(slog.DiscardHandler)))
	background := make([]*entry, 10)
	for i := range background {
		background[i] = &entry{}
		q.scheduleBackground(background[i])
	}
	assert.Len(t, q.ch, 4, "queued background stores: half the queue")
	assert.Equal(t, 6, q.pendingLen(), "background stores past half: pending")
	assert.Zero(t, stats.backupsDropped.Load(), "background stores past half are not dropped")
	assert.EqualValues(t, 4, q.backlog.Load(), "backlog: the queued stores only")

	for range 4 {
		q.schedule(&entry{})
	}
	assert.Len(t, q.ch, 8, "stores of requests fill the other half")
	assert.Zero(t, stats.backupsDropped.Load(), "no store of a request dropped")

	one := &entry{}
	q1 := newQueue(1, &stats, newRateLogger(slog.New(slog.DiscardHandler)))
	q1.scheduleBackground(one)
	require.Len(t, q1.ch, 1, "a queue of one takes one background store")
}
