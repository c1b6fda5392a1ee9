package mcsession

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"testing"
	"time"
)

// newHandlerServer serves h through m's middleware on a real HTTP server.
func newHandlerServer(t *testing.T, m *Manager, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(m.Middleware(h))
	t.Cleanup(srv.Close)
	return srv
}

// TestCookieBeforeFirstByte flushes the headers, then blocks: the client
// must already have the cookie and Vary: Cookie while the handler has not
// finished.
func TestCookieBeforeFirstByte(t *testing.T) {
	m := newTestManager(t, Config{})
	release := make(chan struct{})
	srv := newHandlerServer(t, m, func(w http.ResponseWriter, r *http.Request) {
		FromContext(r.Context()).Set("a", "1")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("Flush() error = %v", err)
		}
		<-release
		io.WriteString(w, "body")
	})
	resp, err := http.Get(srv.URL)
	if err != nil {
		close(release)
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The handler is still blocked: what the client has came with the flush.
	id := setCookieValue(t, resp.Header)
	vary := resp.Header.Values("Vary")
	close(release)
	if _, ok := parseID(id, false); !ok {
		t.Errorf("Set-Cookie before the body = %q, want a session ID", id)
	}
	if len(vary) != 1 || vary[0] != "Cookie" {
		t.Errorf("Vary before the body = %q, want Cookie", vary)
	}
	if body, _ := io.ReadAll(resp.Body); string(body) != "body" {
		t.Errorf("body = %q, want body", body)
	}
	if n := m.Stats().LateChanges; n != 0 {
		t.Errorf("Stats().LateChanges = %d, want 0", n)
	}
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
			if got := m.Stats().LateChanges; got != wantLate {
				t.Errorf("Stats().LateChanges = %d, want %d (ID %q -> %q)", got, wantLate, idBefore, idAfter)
			}
			if log := logs.String(); (wantLate == 1) != strings.Contains(log, "after the response started") {
				t.Errorf("log = %q, want a warning about the late change: %v", log, wantLate == 1)
			}
			cs := setCookies(t, rec.Result().Header, DefaultCookieName)
			if tt.cookie != (len(cs) == 1) {
				t.Fatalf("Set-Cookie = %q, want a session cookie: %v", rec.Result().Header.Values("Set-Cookie"), tt.cookie)
			}
			if tt.cookie && cs[0].Value != idBefore {
				t.Errorf("Set-Cookie = %q, want the ID before the response started, %q", cs[0].Value, idBefore)
			}
		})
	}
}

// TestFlushStreams checks that chunks flushed through
// http.ResponseController reach the client while the handler still runs.
func TestFlushStreams(t *testing.T) {
	for _, how := range []string{"ResponseController", "http.Flusher"} {
		t.Run(how, func(t *testing.T) {
			m := newTestManager(t, Config{})
			next := make(chan struct{})
			srv := newHandlerServer(t, m, func(w http.ResponseWriter, r *http.Request) {
				FromContext(r.Context()).Set("a", "1")
				for i := range 2 {
					io.WriteString(w, "chunk\n")
					if how == "http.Flusher" {
						w.(http.Flusher).Flush()
					} else if err := http.NewResponseController(w).Flush(); err != nil {
						t.Errorf("Flush() error = %v", err)
					}
					if i == 0 {
						<-next
					}
				}
			})
			resp, err := http.Get(srv.URL)
			if err != nil {
				close(next)
				t.Fatal(err)
			}
			defer resp.Body.Close()
			r := bufio.NewReader(resp.Body)
			line, err := r.ReadString('\n')
			close(next) // only now may the handler go on
			if err != nil || line != "chunk\n" {
				t.Fatalf("first chunk = %q, %v, want chunk", line, err)
			}
			if id := setCookieValue(t, resp.Header); id == "" {
				t.Errorf("no session cookie on a streamed response")
			}
			if rest, _ := io.ReadAll(r); string(rest) != "chunk\n" {
				t.Errorf("rest = %q, want chunk", rest)
			}
		})
	}
}

// TestHijack checks that a handler can hijack the connection through
// http.ResponseController and the old http.Hijacker, and write a raw
// response, with a session in use.
func TestHijack(t *testing.T) {
	for _, how := range []string{"ResponseController", "http.Hijacker"} {
		t.Run(how, func(t *testing.T) {
			m := newTestManager(t, Config{})
			srv := newHandlerServer(t, m, func(w http.ResponseWriter, r *http.Request) {
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
				if err != nil {
					t.Errorf("Hijack() error = %v", err)
					return
				}
				defer conn.Close()
				rw.WriteString("HTTP/1.1 299 Raw\r\nX-Raw: yes\r\nContent-Length: 3\r\nConnection: close\r\n\r\nraw")
				rw.Flush()
			})
			resp, err := http.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 299 || resp.Header.Get("X-Raw") != "yes" || string(body) != "raw" {
				t.Errorf("response = %d %q %q, want the raw 299 response", resp.StatusCode, resp.Header, body)
			}
			// The session was created; the hijacked response could not carry it.
			eventually(t, 2*time.Second, "session not kept after hijack", func() bool { return m.Stats().SessionsCreated == 1 })
		})
	}
}

// TestEarlyHintsDoNotStartResponse sends 103 Early Hints, then changes the
// session: the cookie must go out with the final response.
func TestEarlyHintsDoNotStartResponse(t *testing.T) {
	m := newTestManager(t, Config{})
	srv := newHandlerServer(t, m, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		FromContext(r.Context()).Set("a", "1")
		w.Header().Del("Link")
		io.WriteString(w, "final")
	})
	var hints []textproto.MIMEHeader
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		if code == http.StatusEarlyHints {
			hints = append(hints, h)
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), "GET", srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.ReadAll(resp.Body)
	if len(hints) != 1 || hints[0].Get("Link") == "" || len(hints[0].Values("Set-Cookie")) != 0 {
		t.Errorf("103 responses = %v, want one with Link and no Set-Cookie", hints)
	}
	if id := setCookieValue(t, resp.Header); id == "" {
		t.Errorf("final response has no session cookie; Set-Cookie %q", resp.Header.Values("Set-Cookie"))
	}
	if n := m.Stats().LateChanges; n != 0 {
		t.Errorf("Stats().LateChanges = %d, want 0: 103 must not start the response", n)
	}
}

// TestWriterUnwrap checks that the wrapper exposes the server's writer to
// http.ResponseController, so deadlines work through it.
func TestWriterUnwrap(t *testing.T) {
	m := newTestManager(t, Config{})
	srv := newHandlerServer(t, m, func(w http.ResponseWriter, r *http.Request) {
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok || u.Unwrap() == nil {
			t.Errorf("%T has no Unwrap", w)
		}
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetWriteDeadline() error = %v", err)
		}
		if err := rc.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetReadDeadline() error = %v", err)
		}
		io.WriteString(w, "ok")
	})
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}
