package mcsession

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// tagsApp serves a []string session value that handlers change in place:
//
//	POST /tags?items=a,b,c  sets "tags"
//	GET  /tags              the tags, comma separated
//	POST /tags/edit?i=N&v=V tags[N] = V, in place, without Set
func tagsApp() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /tags", func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Set("tags", strings.Split(r.FormValue("items"), ","))
	})
	mux.HandleFunc("GET /tags", func(w http.ResponseWriter, r *http.Request) {
		tags, _ := Get[[]string](FromContext(r.Context()), "tags")
		io.WriteString(w, strings.Join(tags, ","))
	})
	mux.HandleFunc("POST /tags/edit", func(w http.ResponseWriter, r *http.Request) {
		tags, _ := Get[[]string](FromContext(r.Context()), "tags")
		i, err := strconv.Atoi(r.FormValue("i"))
		if err != nil || i < 0 || i >= len(tags) {
			http.Error(w, "bad index", http.StatusBadRequest)
			return
		}
		tags[i] = strings.Clone(r.FormValue("v")) // new bytes even for an equal value
		io.WriteString(w, strings.Join(tags, ","))
	})
	return mux
}

// TestInPlaceStringSliceChange proves the verified fast path of the in-place
// check against real memcached: a stored session that nobody reads keeps no
// snapshot; reads of its []string cost no set, and the first leaves a
// snapshot; an item changed in place is written (another instance reads it)
// and renews the snapshot; an item replaced by an equal string is not
// written.
func TestInPlaceStringSliceChange(t *testing.T) {
	for _, sync := range []bool{false, true} {
		t.Run(fmt.Sprintf("SyncBackup=%t", sync), func(t *testing.T) {
			testInPlaceStringSliceChange(t, sync)
		})
	}
}

func testInPlaceStringSliceChange(t *testing.T, sync bool) {
	servers := memcachetest.StartN(t, 1)
	cfg := Config{Nodes: nodesOf(servers...), Route: "a", OperationTimeout: opTimeout, SyncBackup: sync}
	a := newAppInstance(t, cfg, tagsApp())
	br := newBrowser(t)
	mustDo(t, br, a, "POST", "/tags?items=a,b,c")
	waitIdle(t, a.m)

	e := localEntry(t, a.m, br.sessionID(a))
	verified := func() values {
		e.writeMu.Lock()
		defer e.writeMu.Unlock()
		return e.verified
	}
	idle := verified()
	require.Nil(t, idle, "stored, never read: entry.verified = %v, want nil (idle sessions keep no copy)", idle)

	sets := func() uint64 { return serverStats(t, servers)[0].CmdSet }
	sets0, st0 := sets(), a.m.Stats()
	for range 5 {
		got := mustDo(t, br, a, "GET", "/tags")
		require.Equal(t, "a,b,c", got, "GET /tags = %q, want a,b,c", got)
	}
	waitIdle(t, a.m)
	n := sets() - sets0
	assert.Zero(t, n, "5 reads of unchanged tags: %d sets, want 0", n)
	// SyncBackup checks twice a request: before the response, and after
	// the handler (which may change what it read after responding).
	wantSkipped := uint64(5)
	if sync {
		wantSkipped = 10
	}
	skipped := a.m.Stats().BackupsSkipped - st0.BackupsSkipped
	assert.Equal(t, wantSkipped, skipped, "5 reads: BackupsSkipped grew by %d, want %d", skipped, wantSkipped)
	snap := verified()
	want := values{{"tags", []string{"a", "b", "c"}}}
	require.Equal(t, want, snap, "after reads: entry.verified = %v, want %v", snap, want)
	mustDo(t, br, a, "GET", "/tags")
	waitIdle(t, a.m)
	got := verified()
	if assert.NotEmpty(t, got, "after another unchanged read: entry.verified = %v, want the snapshot kept", got) {
		assert.Same(t, &snap[0], &got[0], "another unchanged read replaced the snapshot; want it kept (no copy per read)")
	}

	sets0 = sets()
	mustDo(t, br, a, "POST", "/tags/edit?i=1&v=b") // equal content, other bytes
	waitIdle(t, a.m)
	n = sets() - sets0
	assert.Zero(t, n, "an item replaced by an equal string: %d sets, want 0", n)

	sets0 = sets()
	body := mustDo(t, br, a, "POST", "/tags/edit?i=1&v=x")
	require.Equal(t, "a,x,c", body, "POST /tags/edit = %q, want a,x,c", body)
	waitIdle(t, a.m)
	n = sets() - sets0
	assert.Equal(t, uint64(1), n, "an item changed in place: %d sets, want 1", n)
	stored, found := storedSession(t, servers[0], br.sessionID(a))
	assert.True(t, found, "backup after the in-place change: a miss, want the session")
	wantStored := map[string]any{"tags": []string{"a", "x", "c"}}
	assert.Equal(t, wantStored, stored, "backup after the in-place change = %v, want %v", stored, wantStored)
	want = values{{"tags", []string{"a", "x", "c"}}}
	renewed := verified()
	assert.Equal(t, want, renewed, "after the store of the change: entry.verified = %v, want %v", renewed, want)

	// A second change right after the first is compared with the new
	// backup, not the old one.
	sets0 = sets()
	mustDo(t, br, a, "POST", "/tags/edit?i=1&v=b")
	waitIdle(t, a.m)
	n = sets() - sets0
	assert.Equal(t, uint64(1), n, "the item changed back: %d sets, want 1", n)
	a.crash()
	b := newAppInstance(t, cfg, tagsApp())
	body = mustDo(t, br, b, "GET", "/tags")
	assert.Equal(t, "a,b,c", body, "GET /tags on another instance after a crash = %q, want a,b,c", body)
}

// localEntry returns the local session of id in m.
func localEntry(t testing.TB, m *Manager, id string) *entry {
	t.Helper()
	sid, ok := parseID(id, m.withNode)
	require.True(t, ok, "parseID(%q) ok = false, want a session ID", id)
	e, ok := m.sessions.Get(sid.random)
	require.True(t, ok, "session %s is not held locally, want it in the Manager's map", id)
	return e
}
