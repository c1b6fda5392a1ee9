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
		if got := touchGrace(tt.idle); got != tt.want {
			t.Errorf("touchGrace(%v) = %v, want %v", tt.idle, got, tt.want)
		}
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
			b := &memcacheReplica{m: m}
			e := &entry{created: tt.created, lastAccess: tt.lastAccess}
			if e.created.IsZero() {
				e.created = now
			}
			if e.lastAccess.IsZero() {
				e.lastAccess = now
			}
			got, until := b.ttlLocked(e, now)
			if got != tt.want {
				t.Fatalf("ttlLocked(idle %v, life %v, created %v, last access %v) = %d, want %d",
					tt.idle, tt.life, now.Sub(e.created), now.Sub(e.lastAccess), got, tt.want)
			}
			if got < 1 {
				t.Fatalf("ttlLocked = %d, want at least 1 (0 never expires)", got)
			}
			if got > maxRelativeTTL != tt.absolute || tt.absolute && int64(got) <= now.Unix() {
				t.Fatalf("ttlLocked = %d, want absolute %v (now is %d)", got, tt.absolute, now.Unix())
			}
			// until is when memcached drops the copy; except past 2038,
			// where memcached cannot follow and until stays after the
			// session's own expiry, so reads do not all touch.
			wantUntil := now.Add(time.Duration(got) * time.Second)
			if tt.absolute {
				wantUntil = time.Unix(int64(got), 0)
			}
			if got == math.MaxInt32 {
				if expiry := m.expiryLocked(e); until.Before(expiry) {
					t.Errorf("ttlLocked until = %v, want not before the session's expiry %v", until, expiry)
				}
			} else if !until.Equal(wantUntil) {
				t.Errorf("ttlLocked until = %v, want %v", until, wantUntil)
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
			if st := m.Stats(); local == tt.expired || st.SessionsExpired != wantExpired {
				t.Errorf("after sweep: session held %v, SessionsExpired %d, want expired %v", local, st.SessionsExpired, tt.expired)
			}
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
	eventually(t, 3*time.Second, "idle session not swept", func() bool { return m.Stats().SessionsExpired == 1 })
	if d := time.Since(start); d < time.Second {
		t.Errorf("session expired after %v, want at least IdleTimeout 1s", d)
	}
	if n := m.Stats().LocalSessions; n != 0 {
		t.Errorf("Stats().LocalSessions = %d, want 0", n)
	}
	serveSession(m, cookie, func(s *Session) {
		if v := s.Get("a"); v != nil || !s.IsNew() || s.ID() != "" {
			t.Errorf("after expiry: Get(a) = %v, IsNew %v, ID %q, want no session", v, s.IsNew(), s.ID())
		}
	})
}

// TestLifetime uses a session continuously: it lives past IdleTimeout, and
// ends at Lifetime, not before.
func TestLifetime(t *testing.T) {
	t.Parallel()
	m := newTestManager(t, Config{IdleTimeout: time.Second, Lifetime: 2 * time.Second})
	rec := serveSession(m, "", func(s *Session) { s.Set("a", "1") })
	start := time.Now()
	cookie := DefaultCookieName + "=" + setCookieValue(t, rec.Result().Header)
	eventually(t, 4*time.Second, "busy session outlived Lifetime", func() bool {
		var alive bool
		serveSession(m, cookie, func(s *Session) { alive = s.Get("a") == "1" })
		return !alive
	})
	if d := time.Since(start); d < 2*time.Second {
		t.Errorf("busy session ended after %v, want Lifetime 2s", d)
	}
	if st := m.Stats(); st.SessionsExpired != 1 || st.LocalSessions != 0 {
		t.Errorf("Stats() = SessionsExpired %d, LocalSessions %d, want 1, 0", st.SessionsExpired, st.LocalSessions)
	}
}

// TestExpiredAtLookup checks that an expired session is not served even
// before the sweeper gets to it.
func TestExpiredAtLookup(t *testing.T) {
	m := newTestManager(t, Config{IdleTimeout: time.Second, SweepInterval: time.Hour})
	rec := serveSession(m, "", func(s *Session) { s.Set("a", "1") })
	id := setCookieValue(t, rec.Result().Header)
	e, ok := m.sessions.Get(id)
	if !ok {
		t.Fatalf("session %q not held", id)
	}
	e.mu.Lock()
	e.lastAccess = e.lastAccess.Add(-1100 * time.Millisecond)
	e.mu.Unlock()
	serveSession(m, DefaultCookieName+"="+id, func(s *Session) {
		if v := s.Get("a"); v != nil || !s.IsNew() {
			t.Errorf("expired session: Get(a) = %v, IsNew %v, want no session", v, s.IsNew())
		}
	})
	if st := m.Stats(); st.SessionsExpired != 1 || st.LocalSessions != 0 {
		t.Errorf("Stats() = SessionsExpired %d, LocalSessions %d, want 1, 0", st.SessionsExpired, st.LocalSessions)
	}
}

// itemTTL returns the seconds memcached gives key left to live (-1 for
// none), with the meta get command; found is false on a miss.
func itemTTL(t *testing.T, srv *memcachetest.Server, key string) (ttl int, found bool) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", srv.Addr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(conn, "mg %s t\r\n", key)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(line)
	switch {
	case len(fields) == 1 && fields[0] == "EN":
		return 0, false
	case len(fields) == 2 && fields[0] == "HD" && strings.HasPrefix(fields[1], "t"):
		n, err := strconv.Atoi(fields[1][1:])
		if err != nil {
			t.Fatalf("mg %s t: %q", key, line)
		}
		return n, true
	}
	t.Fatalf("mg %s t: %q", key, line)
	return 0, false
}

// deleteHits returns memcached's count of deletes that found their key.
func deleteHits(t *testing.T, srv *memcachetest.Server) uint64 {
	t.Helper()
	st, err := srv.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st.DeleteHits
}

// TestExpiredSessionDeletedFromMemcached lets the sweeper expire a backed-up
// session and checks that its copy is deleted, not left to its TTL.
func TestExpiredSessionDeletedFromMemcached(t *testing.T) {
	t.Parallel()
	srv := memcachetest.Start(t)
	in := newInstance(t, Config{Nodes: nodesOf(srv), IdleTimeout: 8 * time.Second, SweepInterval: 20 * time.Millisecond})
	br := newBrowser(t)
	br.do(in, "POST", "/set?key=a&value=1")
	waitIdle(t, in.m)
	id := br.sessionID(in)
	key := memcacheKey(DefaultKeyPrefix, id)
	ttl, found := itemTTL(t, srv, key)
	if !found || ttl < 7 || ttl > 9 {
		t.Fatalf("memcached TTL of the backup = %d (found %v), want IdleTimeout 8s + grace 1s", ttl, found)
	}
	// Make the session idle for longer than IdleTimeout; its backup, with
	// its TTL of 9s, is still there.
	e, _ := in.m.sessions.Get(strings.SplitN(id, ".", 2)[0])
	e.mu.Lock()
	e.lastAccess = e.lastAccess.Add(-8100 * time.Millisecond)
	e.mu.Unlock()
	eventually(t, 2*time.Second, "session not expired by the sweeper", func() bool { return in.m.Stats().SessionsExpired == 1 })
	waitIdle(t, in.m)
	if _, found, err := srv.Get(key); err != nil || found {
		t.Errorf("memcached Get(key of %s) = found %v, %v, want a miss", id, found, err)
	}
	if st := in.m.Stats(); st.Deletes != 1 {
		t.Errorf("Stats().Deletes = %d, want 1", st.Deletes)
	}
	if n := deleteHits(t, srv); n != 1 {
		t.Errorf("memcached delete_hits = %d, want 1", n)
	}
	if _, body := br.do(in, "GET", "/get?key=a"); body != "" {
		t.Errorf("GET /get?key=a after expiry = %q, want no session", body)
	}
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
			br.do(a, "POST", "/set?key=a&value=1")
			waitIdle(t, a.m)
			id := br.sessionID(a)
			key := memcacheKey(DefaultKeyPrefix, id)
			if _, found, err := srv.Get(key); err != nil || !found {
				t.Fatalf("memcached Get(key of %s) = found %v, %v, want the backup", id, found, err)
			}

			req, _ := http.NewRequest("POST", a.srv.URL+"/invalidate", nil)
			resp, err := br.client.Do(req) // the jar adds the cookie
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if sync {
				// No waitIdle: the delete was done before the response.
				if _, found, err := srv.Get(key); err != nil || found {
					t.Errorf("right after POST /invalidate: memcached Get = found %v, %v, want a miss", found, err)
				}
			}
			cs := setCookies(t, resp.Header, DefaultCookieName)
			if len(cs) != 1 || cs[0].MaxAge >= 0 {
				t.Fatalf("POST /invalidate Set-Cookie = %q, want the session cookie removed", resp.Header.Values("Set-Cookie"))
			}
			if got := br.sessionID(a); got != "" {
				t.Errorf("browser still holds session cookie %q", got)
			}
			waitIdle(t, a.m)
			if _, found, err := srv.Get(key); err != nil || found {
				t.Errorf("memcached Get(key of %s) = found %v, %v, want a miss", id, found, err)
			}
			if st := a.m.Stats(); st.Deletes != 1 || st.SessionsInvalidated != 1 || st.LocalSessions != 0 {
				t.Errorf("Stats() = Deletes %d, SessionsInvalidated %d, LocalSessions %d, want 1, 1, 0", st.Deletes, st.SessionsInvalidated, st.LocalSessions)
			}
			if n := deleteHits(t, srv); n != 1 {
				t.Errorf("memcached delete_hits = %d, want 1", n)
			}
			if _, body := br.do(a, "GET", "/id"); body != "" {
				t.Errorf("GET /id after invalidate = %q, want no session", body)
			}
			// The old cookie, replayed, finds nothing on either instance.
			thief := newBrowser(t)
			for _, in := range []*instance{a, b} {
				thief.setSessionID(in, id)
				if _, body := thief.do(in, "GET", "/get?key=a"); body != "" {
					t.Errorf("GET /get?key=a with the invalidated cookie = %q, want no session", body)
				}
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
	br.do(a, "POST", "/set?key=a&value=1")
	waitIdle(t, a.m)
	oldID := br.sessionID(a)
	br.do(a, "POST", "/renew")
	newID := br.sessionID(a)
	oldP, ok1 := parseID(oldID, true)
	newP, ok2 := parseID(newID, true)
	if !ok1 || !ok2 || newP.random == oldP.random || newP.node != oldP.node || newP.route != "a" {
		t.Fatalf("RenewID: %q -> %q, want a new random part, same node and route", oldID, newID)
	}
	if _, body := br.do(a, "GET", "/get?key=a"); body != "1" {
		t.Errorf("GET /get?key=a after RenewID = %q, want 1", body)
	}
	waitIdle(t, a.m)
	if _, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, oldID)); err != nil || found {
		t.Errorf("memcached Get(old key) = found %v, %v, want a miss", found, err)
	}
	if _, found, err := srv.Get(memcacheKey(DefaultKeyPrefix, newID)); err != nil || !found {
		t.Errorf("memcached Get(new key) = found %v, %v, want the backup", found, err)
	}
	if n := a.m.Stats().Deletes; n != 1 {
		t.Errorf("Stats().Deletes = %d, want 1", n)
	}
	if n := deleteHits(t, srv); n != 1 {
		t.Errorf("memcached delete_hits = %d, want 1", n)
	}
	thief := newBrowser(t)
	for _, in := range []*instance{a, b} {
		thief.setSessionID(in, oldID)
		if _, body := thief.do(in, "GET", "/get?key=a"); body != "" {
			t.Errorf("GET /get?key=a with the old ID = %q, want no session", body)
		}
	}
	// The new ID is backed up: another instance takes it over.
	if _, body := br.do(b, "GET", "/get?key=a"); body != "1" {
		t.Errorf("GET /get?key=a on b with the new ID = %q, want 1", body)
	}
}

// TestTouchKeepsReadSessionAlive reads a session without changing it: no
// memcached operation while the backup outlives the local session, one
// touch once the grace (1s for IdleTimeout 8s) has been used up.
func TestTouchKeepsReadSessionAlive(t *testing.T) {
	t.Parallel()
	srv := memcachetest.Start(t)
	in := newInstance(t, Config{Nodes: nodesOf(srv), IdleTimeout: 8 * time.Second})
	br := newBrowser(t)
	br.do(in, "POST", "/set?key=a&value=1")
	waitIdle(t, in.m)
	stored := time.Now() // the backup was written before this
	key := memcacheKey(DefaultKeyPrefix, br.sessionID(in))
	touches := func() (cmd, hits uint64) {
		st, err := srv.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st.CmdTouch, st.TouchHits
	}
	base := srv.Ops(t)
	for range 5 {
		if _, body := br.do(in, "GET", "/get?key=a"); body != "1" {
			t.Fatalf("GET /get?key=a = %q, want 1", body)
		}
	}
	waitIdle(t, in.m)
	if d := opsDelta(t, srv, base); d != 0 || in.m.Stats().Touches != 0 {
		t.Fatalf("reads within the grace cost %d memcached operations, %d touches, want 0", d, in.m.Stats().Touches)
	}

	// Wall time must pass for the grace to be used up.
	time.Sleep(time.Until(stored.Add(1100 * time.Millisecond)))
	baseCmd, baseHits := touches()
	for range 5 {
		if _, body := br.do(in, "GET", "/get?key=a"); body != "1" {
			t.Fatalf("GET /get?key=a = %q, want 1", body)
		}
		waitIdle(t, in.m)
	}
	if cmd, hits := touches(); cmd-baseCmd != 1 || hits-baseHits != 1 {
		t.Errorf("memcached cmd_touch, touch_hits after 5 reads past the grace = +%d, +%d, want +1, +1", cmd-baseCmd, hits-baseHits)
	}
	if n := in.m.Stats().Touches; n != 1 {
		t.Errorf("Stats().Touches = %d, want 1", n)
	}
	if ttl, found := itemTTL(t, srv, key); !found || ttl < 8 || ttl > 9 {
		t.Errorf("memcached TTL after the touch = %d (found %v), want about 9s", ttl, found)
	}
}
