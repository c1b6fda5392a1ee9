package mcsession

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

func TestSameValues(t *testing.T) {
	tags := []string{"a", "b", "c"}
	now := time.Now()
	tests := []struct {
		name string
		snap values // taken with snapshot
		cur  values
		want bool
	}{
		{"identical", values{{"n", 1}, {"tags", tags}}, values{{"n", 1}, {"tags", tags}}, true},
		{"item changed in place", values{{"tags", tags}}, values{{"tags", []string{"a", "x", "c"}}}, false},
		{"equal item, other bytes", values{{"tags", tags}}, values{{"tags", []string{"a", strings.Clone("b"), "c"}}}, true},
		{"longer", values{{"tags", tags}}, values{{"tags", []string{"a", "b", "c", "d"}}}, false},
		{"nil and empty", values{{"tags", []string(nil)}}, values{{"tags", []string{}}}, true},
		{"scalar changed", values{{"n", 1}}, values{{"n", 2}}, false},
		{"scalar type changed", values{{"n", 1}}, values{{"n", int64(1)}}, false},
		{"slice became string", values{{"tags", tags}}, values{{"tags", "a"}}, false},
		{"string became slice", values{{"tags", "a"}}, values{{"tags", []string{"a"}}}, false},
		{"key renamed", values{{"a", 1}}, values{{"b", 1}}, false},
		{"key added", values{{"a", 1}}, values{{"a", 1}, {"b", 2}}, false},
		{"NaN is never the same", values{{"f", math.NaN()}}, values{{"f", math.NaN()}}, false},
		{"time", values{{"t", now}}, values{{"t", now}}, true},
		{"pointer", values{{"tags", tags}}, values{{"tags", &cart{}}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := snapshot(tt.snap)
			if snap == nil {
				t.Fatalf("snapshot(%v) = nil, want a copy", tt.snap)
			}
			if got := sameValues(snap, tt.cur); got != tt.want {
				t.Errorf("sameValues(snapshot(%v), %v) = %t, want %t", tt.snap, tt.cur, got, tt.want)
			}
		})
	}
}

func TestSnapshot(t *testing.T) {
	t.Run("copies slices", func(t *testing.T) {
		tags := []string{"a", "b"}
		vs := values{{"tags", tags}}
		snap := snapshot(vs)
		tags[1] = "changed in place"
		if sameValues(snap, vs) {
			t.Errorf("sameValues after an in-place change = true, want false: the snapshot shares the slice")
		}
	})
	for _, v := range []any{&cart{}, map[string]string{"a": "b"}, []byte("ab"), []int{1}, struct{ A int }{1}} {
		if got := snapshot(values{{"s", "x"}, {"v", v}}); got != nil {
			t.Errorf("snapshot with a %T = %v, want nil (fingerprinted instead)", v, got)
		}
	}
	if got := snapshot(nil); got != nil {
		t.Errorf("snapshot(nil) = %v, want nil", got)
	}
}

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
	sid, ok := parseID(id, m.withNode)
	if !ok {
		t.Fatalf("session ID %q does not parse", id)
	}
	e, ok := m.sessions.Get(sid.random)
	if !ok {
		t.Fatalf("session %s is not held locally", id)
	}
	return e
}
