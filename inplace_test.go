package mcsession

import (
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"

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
	if got := verified(); got != nil {
		t.Fatalf("stored, never read: entry.verified = %v, want nil (idle sessions keep no copy)", got)
	}

	sets := func() uint64 { return serverStats(t, servers)[0].CmdSet }
	sets0, st0 := sets(), a.m.Stats()
	for range 5 {
		if got := mustDo(t, br, a, "GET", "/tags"); got != "a,b,c" {
			t.Fatalf("GET /tags = %q, want a,b,c", got)
		}
	}
	waitIdle(t, a.m)
	if got := sets() - sets0; got != 0 {
		t.Errorf("5 reads of unchanged tags: %d sets, want 0", got)
	}
	// SyncBackup checks twice a request: before the response, and after
	// the handler (which may change what it read after responding).
	wantSkipped := uint64(5)
	if sync {
		wantSkipped = 10
	}
	if got := a.m.Stats().BackupsSkipped - st0.BackupsSkipped; got != wantSkipped {
		t.Errorf("5 reads: BackupsSkipped grew by %d, want %d", got, wantSkipped)
	}
	snap := verified()
	if want := (values{{"tags", []string{"a", "b", "c"}}}); !reflect.DeepEqual(snap, want) {
		t.Fatalf("after reads: entry.verified = %v, want %v", snap, want)
	}
	mustDo(t, br, a, "GET", "/tags")
	waitIdle(t, a.m)
	if got := verified(); len(got) == 0 || &got[0] != &snap[0] {
		t.Errorf("another unchanged read replaced the snapshot; want it kept (no copy per read)")
	}

	sets0 = sets()
	mustDo(t, br, a, "POST", "/tags/edit?i=1&v=b") // equal content, other bytes
	waitIdle(t, a.m)
	if got := sets() - sets0; got != 0 {
		t.Errorf("an item replaced by an equal string: %d sets, want 0", got)
	}

	sets0 = sets()
	if got := mustDo(t, br, a, "POST", "/tags/edit?i=1&v=x"); got != "a,x,c" {
		t.Fatalf("POST /tags/edit = %q, want a,x,c", got)
	}
	waitIdle(t, a.m)
	if got := sets() - sets0; got != 1 {
		t.Errorf("an item changed in place: %d sets, want 1", got)
	}
	got, found := storedSession(t, servers[0], br.sessionID(a))
	if want := map[string]any{"tags": []string{"a", "x", "c"}}; !found || !reflect.DeepEqual(got, want) {
		t.Errorf("backup after the in-place change = %v (found %t), want %v", got, found, want)
	}
	if got, want := verified(), (values{{"tags", []string{"a", "x", "c"}}}); !reflect.DeepEqual(got, want) {
		t.Errorf("after the store of the change: entry.verified = %v, want %v", got, want)
	}

	// A second change right after the first is compared with the new
	// backup, not the old one.
	sets0 = sets()
	mustDo(t, br, a, "POST", "/tags/edit?i=1&v=b")
	waitIdle(t, a.m)
	if got := sets() - sets0; got != 1 {
		t.Errorf("the item changed back: %d sets, want 1", got)
	}
	a.crash()
	b := newAppInstance(t, cfg, tagsApp())
	if got := mustDo(t, br, b, "GET", "/tags"); got != "a,b,c" {
		t.Errorf("GET /tags on another instance after a crash = %q, want a,b,c", got)
	}
}

// localEntry returns the local session of id in m.
func localEntry(t testing.TB, m *Manager, id string) *entry {
	t.Helper()
	sid, ok := parseID(id, m.backup != nil)
	if !ok {
		t.Fatalf("session ID %q does not parse", id)
	}
	e, ok := m.sessions.Get(sid.random)
	if !ok {
		t.Fatalf("session %s is not held locally", id)
	}
	return e
}
