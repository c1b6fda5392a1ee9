package mcsession

import (
	"context"
	"net/http"
)

// ctxKey is the context key of a request's *Session.
type ctxKey struct{}

// FromContext returns the request's Session. Inside Manager.Middleware it
// is never nil; for a context that did not come through the middleware it
// returns nil.
func FromContext(ctx context.Context) *Session {
	s, _ := ctx.Value(ctxKey{}).(*Session)
	return s
}

// request is the session state of one request. It is one allocation: the
// Session, the response writer, the context that carries the Session and
// the copy of the http.Request that carries the context live inside it.
type request struct {
	session Session
	writer  responseWriter
	ctx     sessionContext
	req     http.Request
	vary    [1]string // the Vary header's value, when the handler set none
}

// sessionContext is the request's context with its Session added: what
// context.WithValue would make, without an allocation of its own. Every
// other key, and cancellation, is the parent's.
type sessionContext struct {
	context.Context
	s *Session
}

// Value returns the Session for the package's key, else asks the parent.
func (c *sessionContext) Value(key any) any {
	if key == (ctxKey{}) {
		return c.s
	}
	return c.Context.Value(key)
}

// Middleware returns next wrapped with session handling: it reads the
// session cookie, makes the Session available through FromContext, sends the
// cookie before the response starts, and backs the session up after the
// handler if it changed. Requests for which Config.Ignore reports true skip
// all of that.
func (m *Manager) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(next, w, r)
	})
}

// serve is the Middleware's handler. It is a method rather than the
// closure's body so that it is compiled once, here: the copy of r below
// then stays inside rq's allocation wherever the Middleware is inlined.
func (m *Manager) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	m.stats.requests.Add(1)
	if m.cfg.Ignore != nil && m.cfg.Ignore(r) {
		m.stats.requestsIgnored.Add(1)
		s := &Session{m: m, resolved: true}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, s)))
		return
	}
	rq := &request{}
	rq.session = Session{m: m, w: &rq.writer, cookie: m.sessionCookie(r)}
	rq.writer = responseWriter{ResponseWriter: w, rq: rq}
	rq.ctx = sessionContext{Context: r.Context(), s: &rq.session}
	rq.req = *r.WithContext(&rq.ctx) // what WithContext allocates, inside rq
	defer rq.finish()
	next.ServeHTTP(&rq.writer, &rq.req)
}

// beforeResponse runs just before the status line: with SyncBackup it
// stores a changed session, then it sets the cookie if the client's is
// missing or out of date, and Vary: Cookie. A request whose handler never
// used its session sends nothing.
func (rq *request) beforeResponse() {
	s := &rq.session
	m := s.m
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.resolved {
		return
	}
	h := rq.writer.Header()
	addVaryCookie(h, &rq.vary)
	e := s.e
	if e == nil {
		if (s.ended || s.gone) && s.cookie != "" {
			m.setCookie(h, "") // no lookups for a dead session on later requests
		}
		return
	}
	m.replica.beforeResponse(e)
	e.mu.Lock()
	id := m.cookieLocked(e)
	e.mu.Unlock()
	if id != s.cookie || m.cfg.Cookie.Persist {
		m.setCookie(h, id)
	}
}

// finish runs after the handler: it sends the headers if the handler wrote
// nothing, and backs the session up if it needs it (with SyncBackup, a
// change made after the response started is stored before finish returns).
func (rq *request) finish() {
	rq.writer.start()
	s := &rq.session
	m := s.m
	s.mu.Lock()
	e, used, mutated, released := s.e, s.e != nil || s.ended, s.mutated, s.released
	s.mu.Unlock()
	if used {
		m.stats.requestsWithSession.Add(1)
	}
	if e == nil || released {
		return
	}
	m.replica.release(e, mutated)
}
