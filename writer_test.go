package mcsession

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gate returns a channel a handler blocks on and the function that opens
// it, which may be called any number of times. Register the function with
// t.Cleanup after the server, so it runs before the server's Close waits
// for the handler: a test that stops early never leaves a handler blocked.
func gate() (<-chan struct{}, func()) {
	ch := make(chan struct{})
	var once sync.Once
	return ch, func() { once.Do(func() { close(ch) }) }
}

// TestCookieBeforeFirstByte flushes the headers, then blocks: the client
// must already have the cookie and Vary: Cookie while the handler has not
// finished.
func TestCookieBeforeFirstByte(t *testing.T) {
	blocked, release := gate()
	in := newAppInstance(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Set("a", "1")
		err := http.NewResponseController(w).Flush()
		assert.NoError(t, err, "Flush() error = %v, want nil: the server's writer flushes", err)
		<-blocked
		io.WriteString(w, "body")
	}))
	t.Cleanup(release)
	resp, err := http.Get(in.srv.URL)
	require.NoError(t, err, "GET %s error = %v, want a response", in.srv.URL, err)
	defer resp.Body.Close()
	// The handler is still blocked: what the client has came with the flush.
	id := setCookieValue(t, resp.Header)
	vary := resp.Header.Values("Vary")
	release()
	_, ok := parseID(id, false)
	assert.True(t, ok, "Set-Cookie before the body = %q, want a session ID", id)
	assert.Equal(t, []string{"Cookie"}, vary, "Vary before the body = %q, want Cookie", vary)
	body, err := io.ReadAll(resp.Body)
	assert.NoError(t, err, "reading the body: error = %v, want nil", err)
	assert.Equal(t, "body", string(body), "body = %q, want body", body)
	n := in.m.Stats().LateChanges
	assert.Zero(t, n, "Stats().LateChanges = %d, want 0: the session changed before the flush", n)
}

// TestLateChange changes the session after the response has started: the
// client cannot get the cookie, and the change is counted and logged.
func TestLateChange(t *testing.T) {
	tests := []struct {
		name    string
		before  func(s *Session) // runs before the response starts
		after   func(s *Session) // runs after
		cookie  bool             // whether the response sets a session cookie
		removed bool             // whether it removes it
	}{
		{"create", nil, func(s *Session) { s.Set("a", "1") }, false, false},
		{"renew", func(s *Session) { s.Set("a", "1") }, func(s *Session) { s.RenewID() }, true, false},
		{"invalidate", func(s *Session) { s.Set("a", "1") }, func(s *Session) { s.Invalidate() }, true, false},
		{"set on existing", func(s *Session) { s.Set("a", "1") }, func(s *Session) { s.Set("b", "2") }, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logger, logs := captureLogs()
			m := newTestManager(t, Config{Logger: logger})
			var idBefore, idAfter string
			rec := serveSession(m, "", func(s *Session) {
				if tt.before != nil {
					tt.before(s)
				}
				idBefore = s.ID()
				s.w.Write([]byte("started"))
				tt.after(s)
				idAfter = s.ID()
			})
			wantLate := uint64(0)
			if idAfter != idBefore {
				wantLate = 1
			}
			got := m.Stats().LateChanges
			assert.Equal(t, wantLate, got, "Stats().LateChanges = %d, want %d (ID %q -> %q)", got, wantLate, idBefore, idAfter)
			log := logs.String()
			assert.Equal(t, wantLate == 1, strings.Contains(log, "after the response started"),
				"log = %q, want a warning about the late change: %v", log, wantLate == 1)
			cs := setCookies(t, rec.Result().Header, DefaultCookieName)
			require.Equal(t, tt.cookie, len(cs) == 1,
				"Set-Cookie = %q, want a session cookie: %v", rec.Result().Header.Values("Set-Cookie"), tt.cookie)
			if tt.cookie {
				assert.Equal(t, idBefore, cs[0].Value,
					"Set-Cookie = %q, want the ID before the response started, %q", cs[0].Value, idBefore)
			}
		})
	}
}

// TestFlushStreams checks that chunks flushed through
// http.ResponseController reach the client while the handler still runs.
func TestFlushStreams(t *testing.T) {
	for _, how := range []string{"ResponseController", "http.Flusher"} {
		t.Run(how, func(t *testing.T) {
			next, release := gate()
			in := newAppInstance(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				FromContext(r.Context()).Set("a", "1")
				for i := range 2 {
					io.WriteString(w, "chunk\n")
					if how == "http.Flusher" {
						w.(http.Flusher).Flush()
					} else {
						err := http.NewResponseController(w).Flush()
						assert.NoError(t, err, "Flush() error = %v, want nil: the server's writer flushes", err)
					}
					if i == 0 {
						<-next
					}
				}
			}))
			t.Cleanup(release)
			resp, err := http.Get(in.srv.URL)
			require.NoError(t, err, "GET %s error = %v, want a response", in.srv.URL, err)
			defer resp.Body.Close()
			r := bufio.NewReader(resp.Body)
			line, err := r.ReadString('\n')
			release() // only now may the handler go on
			require.NoError(t, err, "first chunk: error = %v, want chunk before the handler goes on", err)
			require.Equal(t, "chunk\n", line, "first chunk = %q, want chunk", line)
			id := setCookieValue(t, resp.Header)
			assert.NotEmpty(t, id, "Set-Cookie on a streamed response = %q, want a session cookie", resp.Header.Values("Set-Cookie"))
			rest, err := io.ReadAll(r)
			assert.NoError(t, err, "reading the rest: error = %v, want nil", err)
			assert.Equal(t, "chunk\n", string(rest), "rest = %q, want chunk", rest)
		})
	}
}

// TestHijack checks that a handler can hijack the connection through
// http.ResponseController and the old http.Hijacker, and write a raw
// response, with a session in use.
func TestHijack(t *testing.T) {
	for _, how := range []string{"ResponseController", "http.Hijacker"} {
		t.Run(how, func(t *testing.T) {
			in := newAppInstance(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				FromContext(r.Context()).Set("a", "1")
				var (
					conn net.Conn
					rw   *bufio.ReadWriter
					err  error
				)
				if how == "http.Hijacker" {
					conn, rw, err = w.(http.Hijacker).Hijack()
				} else {
					conn, rw, err = http.NewResponseController(w).Hijack()
				}
				if !assert.NoError(t, err, "Hijack() error = %v, want the connection", err) {
					return
				}
				defer conn.Close()
				rw.WriteString("HTTP/1.1 299 Raw\r\nX-Raw: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nraw")
				rw.Flush()
			}))
			resp, err := http.Get(in.srv.URL)
			require.NoError(t, err, "GET %s error = %v, want the raw response", in.srv.URL, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			assert.NoError(t, err, "reading the body: error = %v, want nil", err)
			assert.Equal(t, 299, resp.StatusCode, "status = %d, want the raw 299", resp.StatusCode)
			assert.Equal(t, "yes", resp.Header.Get("X-Raw"), "X-Raw = %q, want the raw response's yes", resp.Header.Get("X-Raw"))
			assert.Equal(t, "raw", string(body), "body = %q, want the raw response's raw", body)
			// The session was created; the hijacked response could not carry it.
			eventually(t, 2*time.Second, "session not kept after hijack", func() bool { return in.m.Stats().SessionsCreated == 1 })
		})
	}
}

// TestEarlyHintsDoNotStartResponse sends 103 Early Hints, then changes the
// session: the cookie must go out with the final response.
func TestEarlyHintsDoNotStartResponse(t *testing.T) {
	in := newAppInstance(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		FromContext(r.Context()).Set("a", "1")
		w.Header().Del("Link")
		io.WriteString(w, "final")
	}))
	var hints []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		if code == http.StatusEarlyHints {
			hints = append(hints, h)
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", in.srv.URL, nil)
	require.NoError(t, err, "http.NewRequestWithContext(GET %s) error = %v, want a request", in.srv.URL, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err, "GET %s error = %v, want a response", in.srv.URL, err)
	defer resp.Body.Close()
	io.ReadAll(resp.Body)
	require.Len(t, hints, 1, "103 responses = %v, want one", hints)
	assert.NotEmpty(t, hints[0].Get("Link"), "103 response = %v, want one with Link", hints[0])
	assert.Empty(t, hints[0].Values("Set-Cookie"), "103 response = %v, want no Set-Cookie: the session changed after it", hints[0])
	id := setCookieValue(t, resp.Header)
	assert.NotEmpty(t, id, "final response's Set-Cookie = %q, want a session cookie", resp.Header.Values("Set-Cookie"))
	n := in.m.Stats().LateChanges
	assert.Zero(t, n, "Stats().LateChanges = %d, want 0: 103 must not start the response", n)
}

// TestWriterUnwrap checks that the wrapper exposes the server's writer to
// http.ResponseController, so deadlines work through it.
func TestWriterUnwrap(t *testing.T) {
	in := newAppInstance(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if assert.True(t, ok, "%T has no Unwrap, want one for http.ResponseController", w) {
			assert.NotNil(t, u.Unwrap(), "%T.Unwrap() = nil, want the server's writer", w)
		}
		rc := http.NewResponseController(w)
		err := rc.SetWriteDeadline(time.Now().Add(time.Minute))
		assert.NoError(t, err, "SetWriteDeadline() error = %v, want nil: the server's writer has deadlines", err)
		err = rc.SetReadDeadline(time.Now().Add(time.Minute))
		assert.NoError(t, err, "SetReadDeadline() error = %v, want nil: the server's writer has deadlines", err)
		io.WriteString(w, "ok")
	}))
	resp, err := http.Get(in.srv.URL)
	require.NoError(t, err, "GET %s error = %v, want a response", in.srv.URL, err)
	resp.Body.Close()
}

// fileContent is what the ReadFrom tests serve from a file.
const fileContent = "the content of a file, served through the middleware\n"

// fileServers are the two ways a handler sends a file through an
// io.ReaderFrom: http.ServeContent (io.CopyN with a limited reader) and
// io.Copy from the *os.File (whose WriteTo hands it on to ReadFrom).
var fileServers = []struct {
	name  string
	serve func(w http.ResponseWriter, r *http.Request, f *os.File) error
}{
	{"http.ServeContent", func(w http.ResponseWriter, r *http.Request, f *os.File) error {
		http.ServeContent(w, r, "f.txt", time.Time{}, f)
		return nil
	}},
	{"io.Copy", func(w http.ResponseWriter, r *http.Request, f *os.File) error {
		_, err := io.Copy(w, f)
		return err
	}},
}

// writeFile writes fileContent to a file in a temporary directory and
// returns its path.
func writeFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f.txt")
	err := os.WriteFile(path, []byte(fileContent), 0o644)
	require.NoError(t, err, "os.WriteFile(%s) error = %v, want the file to serve", path, err)
	return path
}

// fileHandler returns a handler that changes the session, then sends the
// file at path with serve.
func fileHandler(t *testing.T, path string, serve func(http.ResponseWriter, *http.Request, *os.File) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Set("a", "1")
		f, err := os.Open(path)
		if !assert.NoError(t, err, "os.Open(%s) error = %v, want the file", path, err) {
			return
		}
		defer f.Close()
		err = serve(w, r, f)
		assert.NoError(t, err, "serving the file: error = %v, want nil", err)
	}
}

// TestReadFromSendsHeadersFirst serves a file over a real server, where the
// wrapped writer is net/http's own io.ReaderFrom: the session cookie and
// Vary: Cookie must come with the file.
func TestReadFromSendsHeadersFirst(t *testing.T) {
	path := writeFile(t)
	for _, fs := range fileServers {
		t.Run(fs.name, func(t *testing.T) {
			in := newAppInstance(t, Config{}, fileHandler(t, path, fs.serve))
			resp, err := http.Get(in.srv.URL)
			require.NoError(t, err, "GET %s error = %v, want the file", in.srv.URL, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err, "reading the body: error = %v, want the file", err)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "status = %d, want 200", resp.StatusCode)
			assert.Equal(t, fileContent, string(body), "body = %q, want the file's %q", body, fileContent)
			id := setCookieValue(t, resp.Header)
			_, ok := parseID(id, false)
			assert.True(t, ok, "Set-Cookie with a file = %q, want a session ID", id)
			vary := resp.Header.Values("Vary")
			assert.Equal(t, []string{"Cookie"}, vary, "Vary with a file = %q, want Cookie", vary)
			n := in.m.Stats().LateChanges
			assert.Zero(t, n, "Stats().LateChanges = %d, want 0: the session changed before the file was sent", n)
		})
	}
}

// readerFromRecorder is a ResponseRecorder that is also an io.ReaderFrom,
// as net/http's own writer is, and records its calls.
type readerFromRecorder struct {
	*httptest.ResponseRecorder
	calls     int      // ReadFrom calls
	setCookie []string // the Set-Cookie header when ReadFrom was first called
	vary      []string // the Vary header then
}

// ReadFrom records the call and the headers, then copies src into the
// recorder.
func (rec *readerFromRecorder) ReadFrom(src io.Reader) (int64, error) {
	if rec.calls == 0 {
		rec.setCookie = slices.Clone(rec.Header().Values("Set-Cookie"))
		rec.vary = slices.Clone(rec.Header().Values("Vary"))
	}
	rec.calls++
	return io.Copy(rec.ResponseRecorder, src)
}

// TestReadFromUsesWrappedReaderFrom checks that a file sent through the
// middleware reaches the wrapped writer's ReadFrom (net/http's sendfile
// path), with the cookie and Vary already in the headers.
func TestReadFromUsesWrappedReaderFrom(t *testing.T) {
	path := writeFile(t)
	for _, fs := range fileServers {
		t.Run(fs.name, func(t *testing.T) {
			m := newTestManager(t, Config{})
			rec := &readerFromRecorder{ResponseRecorder: httptest.NewRecorder()}
			m.Middleware(fileHandler(t, path, fs.serve)).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			assert.Equal(t, 1, rec.calls, "wrapped ReadFrom calls = %d, want 1: the file must reach the server's ReadFrom", rec.calls)
			require.Len(t, rec.setCookie, 1, "Set-Cookie when ReadFrom was called = %q, want the session cookie already set", rec.setCookie)
			c, err := http.ParseSetCookie(rec.setCookie[0])
			require.NoError(t, err, "http.ParseSetCookie(%q) error = %v, want a cookie", rec.setCookie[0], err)
			_, ok := parseID(c.Value, false)
			assert.True(t, ok, "Set-Cookie when ReadFrom was called = %q, want a session ID", c.Value)
			assert.Equal(t, []string{"Cookie"}, rec.vary, "Vary when ReadFrom was called = %q, want Cookie", rec.vary)
			assert.Equal(t, fileContent, rec.Body.String(), "body = %q, want the file's %q", rec.Body.String(), fileContent)
		})
	}
}

// TestReadFromWithoutWrappedReaderFrom sends a file through the middleware
// to a writer that has no ReadFrom: the copy must write to it directly
// (not come back to the middleware's ReadFrom forever), after the headers.
func TestReadFromWithoutWrappedReaderFrom(t *testing.T) {
	path := writeFile(t)
	for _, fs := range fileServers {
		t.Run(fs.name, func(t *testing.T) {
			m := newTestManager(t, Config{})
			rec := httptest.NewRecorder()
			_, isReaderFrom := any(rec).(io.ReaderFrom)
			require.False(t, isReaderFrom, "%T is an io.ReaderFrom, want a writer without one", rec)
			m.Middleware(fileHandler(t, path, fs.serve)).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			res := rec.Result()
			assert.Equal(t, fileContent, rec.Body.String(), "body = %q, want the file's %q", rec.Body.String(), fileContent)
			id := setCookieValue(t, res.Header)
			_, ok := parseID(id, false)
			assert.True(t, ok, "Set-Cookie with a file = %q, want a session ID", id)
			vary := res.Header.Values("Vary")
			assert.Equal(t, []string{"Cookie"}, vary, "Vary with a file = %q, want Cookie", vary)
		})
	}
}
