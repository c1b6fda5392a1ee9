package mcsession

import (
	"bufio"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

func TestTouchGrace(t *testing.T) {
	tests := []struct{ idle, want time.Duration }{
		{time.Second, time.Second},
		{8 * time.Second, time.Second},
		{16 * time.Second, 2 * time.Second},
		{30 * time.Minute, 225 * time.Second},
		{40 * time.Minute, 5 * time.Minute},
		{24 * time.Hour, 5 * time.Minute},
		{math.MaxInt64, 5 * time.Minute},
	}
	for _, tt := range tests {
		got := touchGrace(tt.idle)
		assert.Equal(t, tt.want, got, "touchGrace(%v) = %v, want %v: IdleTimeout/8, within 1s..5m", tt.idle, got, tt.want)
	}
}

func TestTTL(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const day = 24 * time.Hour
	const month = 30 * day // memcached's longest relative TTL
	tests := []struct {
		name       string
		idle, life time.Duration
		created    time.Time // default now
		lastAccess time.Time // default now
		want       int32     // relative seconds, or an absolute Unix time
		absolute   bool
	}{
		{name: "fresh", idle: 30 * time.Minute, want: 1800 + 225},
		{name: "idle for a while", idle: 30 * time.Minute, lastAccess: now.Add(-10 * time.Minute), want: 1200 + 225},
		{name: "minimum IdleTimeout", idle: time.Second, want: 2},
		{name: "fraction rounds up", idle: 8 * time.Second, lastAccess: now.Add(-6500 * time.Millisecond), want: 3},
		{name: "nothing left but the grace", idle: 8 * time.Second, lastAccess: now.Add(-8 * time.Second), want: 1},
		{name: "grace used up", idle: 8 * time.Second, lastAccess: now.Add(-9 * time.Second), want: 1},
		{name: "long past expiry", idle: 30 * time.Minute, lastAccess: now.Add(-48 * time.Hour), want: 1},
		{name: "lifetime ends first", idle: 30 * time.Minute, life: time.Hour, created: now.Add(-59 * time.Minute), want: 60 + 225},
		{name: "lifetime over", idle: 30 * time.Minute, life: time.Hour, created: now.Add(-2 * time.Hour), want: 1},
		{name: "idle ends first", idle: 30 * time.Minute, life: 24 * time.Hour, created: now.Add(-time.Hour), want: 1800 + 225},
		{name: "30 days is relative", idle: month - 5*time.Minute, want: int32(month / time.Second)},
		{name: "30 days and 1s is absolute", idle: month - 5*time.Minute + time.Second, want: int32(now.Unix()) + int32(month/time.Second) + 1, absolute: true},
		{name: "a year", idle: 365 * day, want: int32(now.Unix() + int64(365*day/time.Second) + 300), absolute: true},
		{name: "beyond 2038", idle: 100 * 365 * day, want: math.MaxInt32, absolute: true},
		{name: "longest Duration", idle: math.MaxInt64, want: math.MaxInt32, absolute: true},
		{name: "longest Duration, idle for a while", idle: math.MaxInt64, lastAccess: now.Add(-time.Hour), want: math.MaxInt32, absolute: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := &Manager{cfg: settings{Config: Config{IdleTimeout: tt.idle, Lifetime: tt.life}}}
			b := &memcacheReplica{m: m, cfg: &m.cfg}
			e := &entry{created: tt.created, lastAccess: tt.lastAccess}
			if e.created.IsZero() {
				e.created = now
			}
			if e.lastAccess.IsZero() {
				e.lastAccess = now
			}
			got, until := b.ttlLocked(e, now)
			// Every check below holds for any TTL: assert, so that a wrong
			// TTL also shows which of them it breaks.
			assert.Equal(t, tt.want, got, "ttlLocked(idle %v, life %v, created %v, last access %v) = %d, want %d",
				tt.idle, tt.life, now.Sub(e.created), now.Sub(e.lastAccess), got, tt.want)
			assert.GreaterOrEqual(t, got, int32(1), "ttlLocked = %d, want at least 1: memcached never expires a TTL of 0", got)
			assert.Equal(t, tt.absolute, got > maxRelativeTTL,
				"ttlLocked = %d: is it an absolute time? memcached reads a TTL over %d as one", got, maxRelativeTTL)
			if tt.absolute {
				assert.Greater(t, int64(got), now.Unix(), "ttlLocked = %d, want an absolute time after now", got)
			}
			// until is when memcached drops the copy; except past 2038,
			// where memcached cannot follow and until stays after the
			// session's own expiry, so reads do not all touch.
			wantUntil := now.Add(time.Duration(got) * time.Second)
			if tt.absolute {
				wantUntil = time.Unix(int64(got), 0)
			}
			if got == math.MaxInt32 {
				expiry := m.expiryLocked(e)
				assert.False(t, until.Before(expiry), "ttlLocked until = %v, want not before the session's expiry %v", until, expiry)
			} else {
				assert.True(t, until.Equal(wantUntil), "ttlLocked until = %v, want %v: when memcached drops the copy", until, wantUntil)
			}
		})
	}
}

// TestSweep ends exactly the sessions expired at the sweep's time.
func TestSweep(t *testing.T) {
	const idle, life = 10 * time.Second, time.Minute
	tests := []struct {
		name    string
		at      time.Duration // sweep time, after the last access
		created time.Duration // before the last access
		expired bool
	}{
		{"fresh", 0, 0, false},
		{"just before idle timeout", idle - time.Millisecond, 0, false},
		{"just after idle timeout", idle + time.Millisecond, 0, true},
		{"busy but just before lifetime", time.Second, life - 2*time.Second, false},
		{"busy but past lifetime", time.Second, life, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestManager(t, Config{IdleTimeout: idle, Lifetime: life, SweepInterval: time.Hour})
			e := m.create()
			e.mu.Lock()
			e.created = e.lastAccess.Add(-tt.created)
			last := e.lastAccess
			e.mu.Unlock()
			m.sweep(last.Add(tt.at))
			_, local := m.sessions.Get(e.random)
			wantExpired := uint64(0)
			if tt.expired {
				wantExpired = 1
			}
			assert.Equal(t, !tt.expired, local, "session held after sweep(last access + %v), created %v before", tt.at, tt.created)
			got := m.Stats().SessionsExpired
			assert.Equal(t, wantExpired, got, "Stats().SessionsExpired after sweep(last access + %v) = %d, want %d", tt.at, got, wantExpired)
		})
	}
}

// TestIdleTimeout leaves a session alone: the sweeper ends it once, and not
// before, IdleTimeout has passed.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, Config{IdleTimeout: time.Second})
	rec := serveSession(m, "", func(s *Session) { s.Set("a", "1") })
	start := time.Now()
	cookie := DefaultCookieName + "=" + setCookieValue(t, rec.Result().Header)
	require.NotEqual(t, DefaultCookieName+"=", cookie, "the first response must set the session cookie")
	eventually(t, 3*time.Second, "idle session not swept", func() bool { return m.Stats().SessionsExpired == 1 })
	d := time.Since(start)
	assert.GreaterOrEqual(t, d, time.Second, "session expired after %v, want at least IdleTimeout 1s", d)
	assert.Zero(t, m.Stats().LocalSessions, "Stats().LocalSessions after the sweep: the expired session must be dropped")
	served := false
	serveSession(m, cookie, func(s *Session) {
		served = true
		assert.Nil(t, s.Get("a"), "Get(a) with the expired session's cookie: want no session")
		assert.True(t, s.IsNew(), "IsNew() with the expired session's cookie: want a new session")
		assert.Empty(t, s.ID(), "ID() with the expired session's cookie: want no session yet")
	})
	require.True(t, served, "the handler must run")
}

// TestLifetime uses a session continuously: it lives past IdleTimeout, and
// ends at Lifetime, not before.
func TestLifetime(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, Config{IdleTimeout: time.Second, Lifetime: 2 * time.Second})
	rec := serveSession(m, "", func(s *Session) { s.Set("a", "1") })
	start := time.Now()
	cookie := DefaultCookieName + "=" + setCookieValue(t, rec.Result().Header)
	require.NotEqual(t, DefaultCookieName+"=", cookie, "the first response must set the session cookie")
	eventually(t, 4*time.Second, "busy session outlived Lifetime", func() bool {
		var alive bool
		serveSession(m, cookie, func(s *Session) { alive = s.Get("a") == "1" })
		return !alive
	})
	d := time.Since(start)
	assert.GreaterOrEqual(t, d, 2*time.Second, "busy session ended after %v, want Lifetime 2s", d)
	st := m.Stats()
	assert.Equal(t, uint64(1), st.SessionsExpired, "Stats().SessionsExpired after Lifetime = %d, want 1", st.SessionsExpired)
	assert.Zero(t, st.LocalSessions, "Stats().LocalSessions after Lifetime: the session must be dropped")
}

// TestExpiredAtLookup checks that an expired session is not served even
// before the sweeper gets to it.
func TestExpiredAtLookup(t *testing.T) {
	m := newTestManager(t, Config{IdleTimeout: time.Second, SweepInterval: time.Hour})
	rec := serveSession(m, "", func(s *Session) { s.Set("a", "1") })
	id := setCookieValue(t, rec.Result().Header)
	e, ok := m.sessions.Get(id)
	require.True(t, ok, "m.sessions.Get(%q) = _, false: the new session must be held", id)
	e.mu.Lock()
	e.lastAccess = e.lastAccess.Add(-1100 * time.Millisecond)
	e.mu.Unlock()
	served := false
	serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
		served = true
		assert.Nil(t, s.Get("a"), "Get(a) with a cookie idle past IdleTimeout: want no session")
		assert.True(t, s.IsNew(), "IsNew() with a cookie idle past IdleTimeout: want a new session")
	})
	require.True(t, served, "the handler must run")
	st := m.Stats()
	assert.Equal(t, uint64(1), st.SessionsExpired, "Stats().SessionsExpired = %d, want 1: the lookup must end the expired session", st.SessionsExpired)
	assert.Zero(t, st.LocalSessions, "Stats().LocalSessions: the expired session must be dropped at lookup")
}

// itemTTL returns the seconds memcached gives key left to live (-1 for
// none), with the meta get command; found is false on a miss.
func itemTTL(t *testing.T, srv *memcachetest.Server, key string) (ttl int, found bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr(), 2*time.Second)
	require.NoError(t, err, "dial %s", srv.Addr())
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "mg %s t\r\n", key)
	line, err := bufio.NewReader(conn).ReadString('\n')
	require.NoError(t, err, "mg %s t: reading the reply", key)
	fields := strings.Fields(line)
	switch {
	case len(fields) == 1 && fields[0] == "EN":
		return 0, false
	case len(fields) == 2 && fields[0] == "HD" && strings.HasPrefix(fields[1], "t"):
		n, err := strconv.Atoi(fields[1][1:])
		require.NoError(t, err, "mg %s t = %q, want HD t<seconds>", key, line)
		return n, true
	}
	require.FailNow(t, fmt.Sprintf("mg %s t = %q, want EN or HD t<seconds>", key, line))
	return 0, false
}

// deleteHits returns memcached's count of deletes that found their key.
func deleteHits(t *testing.T, srv *memcachetest.Server) uint64 {
	t.Helper()
	st, err := srv.Stats()
	require.NoError(t, err, "Stats() of %s", srv.Addr())
	return st.DeleteHits
}

// TestExpiredSessionDeletedFromMemcached lets the sweeper expire a backed-up
// session and checks that its copy is deleted, not left to its TTL.
func TestExpiredSessionDeletedFromMemcached(t *testing.T) {
	t.Parallel()
	srv := memcachetest.Start(t)
	in := newInstance(t, Config{Nodes: nodesOf(srv), IdleTimeout: 8 * time.Second, SweepInterval: 20 * time.Millisecond})
	br := newBrowser(t)
	mustDo(t, br, in, "POST", "/set?key=a&value=1")
	waitIdle(t, in.m)
	id := br.sessionID(in)
	key := memcacheKey(DefaultKeyPrefix, id)
	ttl, found := itemTTL(t, srv, key)
	require.True(t, found, "mg of the key of %s: want the backup", id)
	require.True(t, ttl >= 7 && ttl <= 9, "memcached TTL of the backup = %d, want IdleTimeout 8s + grace 1s", ttl)
	// Make the session idle for longer than IdleTimeout; its backup, with
	// its TTL of 9s, is still there.
	e, ok := in.m.sessions.Get(strings.SplitN(id, ".", 2)[0])
	require.True(t, ok, "session %s must be held by the instance that created it", id)
	e.mu.Lock()
	e.lastAccess = e.lastAccess.Add(-8100 * time.Millisecond)
	e.mu.Unlock()
	eventually(t, 2*time.Second, "session not expired by the sweeper", func() bool { return in.m.Stats().SessionsExpired == 1 })
	waitIdle(t, in.m)
	_, found, err := srv.Get(key)
	require.NoError(t, err, "memcached Get(key of %s)", id)
	assert.False(t, found, "memcached Get(key of %s) after expiry: the copy must be deleted, not left to its TTL", id)
	deletes := in.m.Stats().Deletes
	assert.Equal(t, uint64(1), deletes, "Stats().Deletes = %d, want 1 after the sweep expired one backed-up session", deletes)
	hits := deleteHits(t, srv)
	assert.Equal(t, uint64(1), hits, "memcached delete_hits = %d, want 1: the sweep's delete must find the copy", hits)
	_, body := br.do(in, "GET", "/get?key=a")
	assert.Empty(t, body, "GET /get?key=a after expiry: want no session")
}

// TestInvalidateDeletesFromMemcached logs out: the backup is deleted (with
// SyncBackup before the response), the cookie removed, and no instance
// finds the session again.
func TestInvalidateDeletesFromMemcached(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("SyncBackup=%v", sync), func(t *testing.T) {
			t.Parallel()
			srv := memcachetest.Start(t)
			cfg := Config{Nodes: nodesOf(srv), Route: "a", SyncBackup: sync}
			a := newInstance(t, cfg)
			cfg.Route = "b"
			b := newInstance(t, cfg)
			br := newBrowser(t)
			mustDo(t, br, a, "POST", "/set?key=a&value=1")
			waitIdle(t, a.m)
			id := br.sessionID(a)
			key := memcacheKey(DefaultKeyPrefix, id)
			_, found, err := srv.Get(key)
			require.NoError(t, err, "memcached Get(key of %s)", id)
			require.True(t, found, "memcached Get(key of %s) before POST /invalidate: want the backup", id)

			req, err := http.NewRequest("POST", a.srv.URL+"/invalidate", nil)
			require.NoError(t, err)
			resp, err := br.client.Do(req) // the jar adds the cookie
			require.NoError(t, err, "POST /invalidate")
			resp.Body.Close()
			if sync {
				// No waitIdle: the delete was done before the response.
				_, found, err := srv.Get(key)
				require.NoError(t, err, "memcached Get(key of %s)", id)
				assert.False(t, found, "memcached Get(key of %s) right after POST /invalidate: with SyncBackup the delete precedes the response", id)
			}
			cs := setCookies(t, resp.Header, DefaultCookieName)
			require.Len(t, cs, 1, "POST /invalidate Set-Cookie = %q, want one session cookie, removing it", resp.Header.Values("Set-Cookie"))
			require.Negative(t, cs[0].MaxAge, "POST /invalidate Set-Cookie = %q, want the session cookie removed (Max-Age<0)", resp.Header.Values("Set-Cookie"))
			assert.Empty(t, br.sessionID(a), "session cookie in the browser after POST /invalidate: it must be removed")
			waitIdle(t, a.m)
			_, found, err = srv.Get(key)
			require.NoError(t, err, "memcached Get(key of %s)", id)
			assert.False(t, found, "memcached Get(key of %s) after POST /invalidate: the backup must be deleted", id)
			st := a.m.Stats()
			assert.Equal(t, uint64(1), st.Deletes, "Stats().Deletes = %d, want 1 after one Invalidate", st.Deletes)
			assert.Equal(t, uint64(1), st.SessionsInvalidated, "Stats().SessionsInvalidated = %d, want 1 after one Invalidate", st.SessionsInvalidated)
			assert.Zero(t, st.LocalSessions, "Stats().LocalSessions after Invalidate and its delete: nothing left")
			hits := deleteHits(t, srv)
			assert.Equal(t, uint64(1), hits, "memcached delete_hits = %d, want 1: the delete must find the backup", hits)
			_, body := br.do(a, "GET", "/id")
			assert.Empty(t, body, "GET /id after invalidate: want no session")
			// The old cookie, replayed, finds nothing on either instance.
			thief := newBrowser(t)
			for _, in := range []*instance{a, b} {
				thief.setSessionID(in, id)
				_, body := thief.do(in, "GET", "/get?key=a")
				assert.Empty(t, body, "GET /get?key=a on %s with the invalidated cookie: want no session", in.srv.URL)
			}
		})
	}
}

// TestRenewIDDeletesOldBackup renews the ID: same data and node, new random
// part, the old key deleted, and the old cookie worthless everywhere.
func TestRenewIDDeletesOldBackup(t *testing.T) {
	t.Parallel()
	srv := memcachetest.Start(t)
	cfg := Config{Nodes: nodesOf(srv), Route: "a"}
	a := newInstance(t, cfg)
	cfg.Route = "b"
	b := newInstance(t, cfg)
	br := newBrowser(t)
	mustDo(t, br, a, "POST", "/set?key=a&value=1")
	waitIdle(t, a.m)
	oldID := br.sessionID(a)
	mustDo(t, br, a, "POST", "/renew")
	newID := br.sessionID(a)
	oldP, ok := parseID(oldID, true)
	require.True(t, ok, "parseID(%q) = _, false, want the ID before RenewID", oldID)
	newP, ok := parseID(newID, true)
	require.True(t, ok, "parseID(%q) = _, false, want the ID after RenewID", newID)
	require.NotEqual(t, oldP.random, newP.random, "RenewID: %q -> %q, want a new random part", oldID, newID)
	require.Equal(t, oldP.node, newP.node, "RenewID: %q -> %q, want the same node", oldID, newID)
	require.Equal(t, "a", newP.route, "RenewID: %q -> %q, want the same route", oldID, newID)
	_, body := br.do(a, "GET", "/get?key=a")
	assert.Equal(t, "1", body, "GET /get?key=a after RenewID: the values stay")
	waitIdle(t, a.m)
	_, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, oldID))
	require.NoError(t, err, "memcached Get(old key)")
	assert.False(t, found, "memcached Get(old key) after RenewID: the old backup must be deleted")
	_, found, err = srv.Get(memcacheKey(DefaultKeyPrefix, newID))
	require.NoError(t, err, "memcached Get(new key)")
	assert.True(t, found, "memcached Get(new key) after RenewID: want the backup under the new ID")
	deletes := a.m.Stats().Deletes
	assert.Equal(t, uint64(1), deletes, "Stats().Deletes = %d, want 1 after one RenewID", deletes)
	hits := deleteHits(t, srv)
	assert.Equal(t, uint64(1), hits, "memcached delete_hits = %d, want 1: the delete must find the old backup", hits)
	thief := newBrowser(t)
	for _, in := range []*instance{a, b} {
		thief.setSessionID(in, oldID)
		_, body := thief.do(in, "GET", "/get?key=a")
		assert.Empty(t, body, "GET /get?key=a on %s with the old ID: want no session", in.srv.URL)
	}
	// The new ID is backed up: another instance takes it over.
	_, body = br.do(b, "GET", "/get?key=a")
	assert.Equal(t, "1", body, "GET /get?key=a on b with the new ID: b must take the session over")
}

// TestTouchKeepsReadSessionAlive reads a session without changing it: no
// memcached operation while the backup outlives the local session, one
// touch once the grace (1s for IdleTimeout 8s) has been used up.
func TestTouchKeepsReadSessionAlive(t *testing.T) {
	t.Parallel()
	srv := memcachetest.Start(t)
	in := newInstance(t, Config{Nodes: nodesOf(srv), IdleTimeout: 8 * time.Second})
	br := newBrowser(t)
	mustDo(t, br, in, "POST", "/set?key=a&value=1")
	waitIdle(t, in.m)
	stored := time.Now() // the backup was written before this
	key := memcacheKey(DefaultKeyPrefix, br.sessionID(in))
	touches := func() (cmd, hits uint64) {
		st, err := srv.Stats()
		require.NoError(t, err, "Stats() of %s", srv.Addr())
		return st.CmdTouch, st.TouchHits
	}
	base := srv.Ops(t)
	for range 5 {
		_, body := br.do(in, "GET", "/get?key=a")
		require.Equal(t, "1", body, "GET /get?key=a within the grace")
	}
	waitIdle(t, in.m)
	ops := opsDelta(t, srv, base)
	require.Zero(t, ops, "memcached operations for 5 reads within the grace = %d, want 0: the backup outlives the session", ops)
	require.Zero(t, in.m.Stats().Touches, "Stats().Touches after 5 reads within the grace")

	// Not a wait for anything: wall time must pass, more than the 1s grace
	// since the backup was written, before a read brings the session's
	// expiry past the backup's TTL and so needs a touch.
	time.Sleep(time.Until(stored.Add(1100 * time.Millisecond)))
	baseCmd, baseHits := touches()
	for range 5 {
		_, body := br.do(in, "GET", "/get?key=a")
		require.Equal(t, "1", body, "GET /get?key=a past the grace")
		waitIdle(t, in.m)
	}
	cmd, hits := touches()
	assert.Equal(t, uint64(1), cmd-baseCmd, "memcached cmd_touch after 5 reads past the grace = +%d, want +1: one touch renews the TTL for another grace", cmd-baseCmd)
	assert.Equal(t, uint64(1), hits-baseHits, "memcached touch_hits after 5 reads past the grace = +%d, want +1: the touch must find the backup", hits-baseHits)
	touched := in.m.Stats().Touches
	assert.Equal(t, uint64(1), touched, "Stats().Touches after 5 reads past the grace = %d, want 1", touched)
	ttl, found := itemTTL(t, srv, key)
	assert.True(t, found, "mg of the backup's key after the touch: want the backup")
	assert.True(t, ttl >= 8 && ttl <= 9, "memcached TTL after the touch = %d, want about 9s (IdleTimeout 8s + grace 1s)", ttl)
}
