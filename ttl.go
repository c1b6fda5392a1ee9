package mcsession

import (
	"math"
	"time"
)

// maxRelativeTTL is the longest expiration memcached takes as relative
// seconds; longer ones are read as an absolute Unix time.
const maxRelativeTTL = 30 * 24 * 60 * 60

// ttlLocked returns the memcached expiration for e's copy, and the time it
// stands for: e's remaining life plus a grace, so a copy refreshed by touch
// outlives the local session. It is never 0 (no expiry) or negative, and
// is sent as an absolute Unix time when longer than 30 days. e.mu is held.
func (r *memcacheReplica) ttlLocked(e *entry, now time.Time) (int32, time.Time) {
	grace := touchGrace(r.cfg.IdleTimeout)
	// Saturate: an IdleTimeout near the largest Duration must not wrap
	// around to a negative remaining time, and so to a TTL of 1s.
	remaining := min(r.m.expiryLocked(e).Sub(now), math.MaxInt64-grace) + grace
	secs := int64(math.Ceil(remaining.Seconds()))
	secs = max(secs, 1)
	if secs > maxRelativeTTL {
		return int32(min(now.Unix()+secs, math.MaxInt32)), now.Add(remaining)
	}
	return int32(secs), now.Add(time.Duration(secs) * time.Second)
}

// touchGrace is how much longer than the local session a copy is kept. A
// session read without change is touched at most once per grace period.
func touchGrace(idle time.Duration) time.Duration {
	return min(max(idle/8, time.Second), 5*time.Minute)
}
