package mcsession

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// realUsers creates n sessions whose client comes back with its cookie,
// each holding its index, and returns their cookies.
func realUsers(t testing.TB, m *Manager, n int) []string {
	t.Helper()
	cookies := make([]string, n)
	for i := range cookies {
		rec := serveSession(m, "", func(s *Session) { s.Set("user", fmt.Sprint("u", i)) })
		cookies[i] = DefaultCookieName + "=" + setCookieValue(t, rec.Result().Header)
		serveSession(m, cookies[i], func(s *Session) { s.Get("user") }) // the client comes back
	}
	return cookies
}

// botFlood creates n sessions whose client never sends the cookie back.
func botFlood(m *Manager, n int) {
	for range n {
		serveSession(m, "", func(s *Session) { s.Set("bot", "1") })
	}
}

// TestMaxSessionsInProcess pins issue 12's fourth point without memcached:
// a flood of sessions whose client never comes back is held to
// MaxSessions, the bots' sessions are ended first, and real users created
// before the flood keep theirs.
func TestMaxSessionsInProcess(t *testing.T) {
	const maxSessions, users, bots = 1000, 100, 10_000
	m := newTestManager(t, Config{MaxSessions: maxSessions})
	cookies := realUsers(t, m, users)
	botFlood(m, bots)
	st := m.Stats()
	assert.LessOrEqual(t, st.LocalSessions, maxSessions, "Stats().LocalSessions after %d bot sessions", bots)
	assert.GreaterOrEqual(t, st.SessionsEvicted, uint64(bots-maxSessions+users), "Stats().SessionsEvicted")
	lost := 0
	for i, c := range cookies {
		var got any
		serveSession(m, c, func(s *Session) { got = s.Get("user") })
		if got != fmt.Sprint("u", i) {
			lost++
		}
	}
	assert.Zero(t, lost, "real users' sessions lost to a flood of %d bot sessions (MaxSessions %d)", bots, maxSessions)
}

// TestMaxSessionsDropsStoredFirst pins the order with memcached: sessions
// safe in memcached are dropped from memory (not ended) and loaded again
// at their next request, intact.
func TestMaxSessionsDropsStoredFirst(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	const maxSessions, users, bots = 150, 100, 2000
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a", MaxSessions: maxSessions, UnconfirmedBudget: 10})
	cookies := realUsers(t, m, users)
	waitIdle(t, m)
	botFlood(m, bots)
	waitIdle(t, m)
	st := m.Stats()
	assert.LessOrEqual(t, st.LocalSessions, maxSessions, "Stats().LocalSessions after %d bot sessions", bots)
	assert.Positive(t, st.SessionsDropped, "Stats().SessionsDropped: stored sessions dropped from memory first")
	lost := 0
	for i, c := range cookies {
		var got any
		serveSession(m, c, func(s *Session) { got = s.Get("user") })
		if got != fmt.Sprint("u", i) {
			lost++
		}
	}
	assert.Zero(t, lost, "real users' sessions lost to the flood")
	assert.Positive(t, m.Stats().LoadsHit, "dropped sessions are loaded again")
}

// TestMaxSessionsSparesSessionsInUse pins that a session held by a request
// is never taken out, however full the map.
func TestMaxSessionsSparesSessionsInUse(t *testing.T) {
	m := newTestManager(t, Config{MaxSessions: 10})
	held := make(chan struct{})
	release := make(chan struct{})
	done := make(chan struct{})
	var id string
	go func() {
		defer close(done)
		serveSession(m, "", func(s *Session) {
			s.Set("user", "ada")
			id = s.ID()
			close(held)
			<-release
			s.Set("still", "here")
		})
	}()
	<-held
	botFlood(m, 500)
	close(release)
	<-done
	e, ok := m.sessions.Get(id[:randomLen])
	require.True(t, ok, "the session held by a request during the flood is still in memory")
	e.mu.Lock()
	defer e.mu.Unlock()
	assert.False(t, e.removed, "the held session was not ended")
	assert.Equal(t, 2, len(e.values), "its values")
}

// floodEnv sets how many sessions BenchmarkBotFlood creates, e.g.
// MCSESSION_FLOOD_SESSIONS=1000000; MaxSessions is a tenth of it.
const floodEnv = "MCSESSION_FLOOD_SESSIONS"

// BenchmarkBotFlood measures what a flood of sessions whose client never
// returns the cookie leaves in memory, in process: N creations (default
// 20,000; floodEnv) with MaxSessions N/10, after 100 real users. It
// reports the live heap after the flood (after a GC), the same per
// MaxSessions session, and the real users who lost their session. Run it
// with -benchtime 1x: the scenario runs once.
func BenchmarkBotFlood(b *testing.B) {
	n := 20_000
	if v := os.Getenv(floodEnv); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err, "%s=%q", floodEnv, v)
	}
	maxSessions := n / 10
	for b.Loop() {
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		m := newTestManager(b, Config{MaxSessions: maxSessions})
		cookies := realUsers(b, m, 100)
		botFlood(m, n)
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		lost := 0
		for i, c := range cookies {
			var got any
			serveSession(m, c, func(s *Session) { got = s.Get("user") })
			if got != fmt.Sprint("u", i) {
				lost++
			}
		}
		live := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(live, "live-heap-B")
		b.ReportMetric(live/float64(maxSessions), "B/max-session")
		b.ReportMetric(float64(m.Stats().LocalSessions), "local-sessions")
		b.ReportMetric(float64(lost), "users-lost")
		m.Close()
	}
}

// TestMaxSessionsDropsBuriedStandIns pins that ended sessions waiting for
// a down node to delete their copy (stand-ins in the session map) are
// bounded by MaxSessions too once a tombstone in memcached covers them,
// and that their IDs stay dead.
func TestMaxSessionsDropsBuriedStandIns(t *testing.T) {
	servers := memcachetest.StartN(t, 2)
	const maxSessions = 20
	m := newTestManager(t, Config{Nodes: nodesOf(servers...), Route: "a", MaxSessions: maxSessions, SyncBackup: true, ProbeInterval: time.Hour})
	cookies := realUsers(t, m, 10)
	r := replicaOf(m)
	r.cluster.failed(r.cluster.load().byID["n1"], errTimeoutForTest{}) // n1 down: deletes there wait
	for _, c := range cookies {
		serveSession(m, c, func(s *Session) { s.Invalidate() })
	}
	require.Positive(t, m.Stats().Tombstones, "tombstones written for copies on the down node")
	botFlood(m, 3*maxSessions)
	st := m.Stats()
	assert.LessOrEqual(t, st.LocalSessions, maxSessions, "Stats().LocalSessions: stand-ins of ended sessions count")
	assert.Positive(t, st.SessionsDropped, "Stats().SessionsDropped: buried stand-ins dropped first")
	for i, c := range cookies {
		var got any
		serveSession(m, c, func(s *Session) { got = s.Get("user") })
		assert.Nil(t, got, "user %d's ended session after its stand-in went: still dead", i)
	}
}
