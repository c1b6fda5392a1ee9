package mcsession

import (
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mcsession/mcsession/internal/memcachetest"
)

// TestReleaseBacksUpWhileTheRequestStaysOpen pins Session.Release: a
// request that stays open after it is done with its session (a stream)
// releases it, and from then on its own changes and other requests' are
// backed up as usual instead of waiting for the stream to end. A use after
// Release takes the session again, and its change is backed up when the
// request ends.
func TestReleaseBacksUpWhileTheRequestStaysOpen(t *testing.T) {
	mc := memcachetest.Start(t)
	released := make(chan struct{})
	finish := make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle("/", testApp())
	mux.HandleFunc("GET /stream", func(w http.ResponseWriter, r *http.Request) {
		s := FromContext(r.Context())
		s.Set("stream", "open")
		io.WriteString(w, "event\n")
		w.(http.Flusher).Flush()
		s.Release()
		close(released)
		<-finish // the stream stays open
		s.Set("late", "after Release")
	})
	in := newAppInstance(t, Config{Nodes: nodesOf(mc), Route: "a"}, mux)
	br := newBrowser(t)
	checkSet(t, br, in, "user", "alice")
	waitIdle(t, in.m)
	id := br.sessionID(in)

	done := make(chan struct{})
	go func() {
		defer close(done)
		br.do(in, http.MethodGet, "/stream")
	}()
	var once sync.Once
	endStream := func() {
		once.Do(func() { close(finish) })
		<-done
	}
	defer endStream()
	waitFor(t, released, "the stream to release its session")

	eventually(t, 5*time.Second, "the stream's change was not backed up while the stream stayed open", func() bool {
		v, found := storedSession(t, mc, id)
		return found && v["stream"] == "open"
	})
	other := newBrowser(t)
	other.setSessionID(in, id)
	code, _ := other.do(in, http.MethodPost, "/set?key=user&value=bob")
	require.Equal(t, http.StatusOK, code, "POST /set on the session while the stream is open")
	eventually(t, 5*time.Second, "another request's change was held back by the open stream", func() bool {
		v, found := storedSession(t, mc, id)
		return found && v["user"] == "bob"
	})

	endStream()
	waitIdle(t, in.m)
	v, found := storedSession(t, mc, id)
	require.True(t, found, "the session's copy after the stream ended")
	assert.Equal(t, "after Release", v["late"], "a change made after Release is backed up when the request ends")
	e := localEntry(t, in.m, id)
	e.mu.Lock()
	active := e.active
	e.mu.Unlock()
	assert.Zero(t, active, "requests holding the session after every request ended: Release and the use after it balance")
}

// TestReleaseWithoutSession is a no-op for a request without a session, and
// in process it releases the session like the end of the request.
func TestReleaseWithoutSession(t *testing.T) {
	m := newTestManager(t, Config{})
	rec := serveSession(m, "", func(s *Session) { s.Release() })
	assert.Empty(t, rec.Result().Header.Values("Set-Cookie"), "Release without a session creates none")
	rec = serveSession(m, "", func(s *Session) {
		s.Set("k", "v")
		s.Release()
		s.Release() // twice: once
	})
	id := setCookieValue(t, rec.Result().Header)
	require.NotEmpty(t, id, "the session set before Release gets its cookie")
	e := localEntry(t, m, id)
	e.mu.Lock()
	active := e.active
	e.mu.Unlock()
	assert.Zero(t, active, "requests holding the session after Release twice and the request's end")
}
