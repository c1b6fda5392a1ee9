package mcsession

import (
	"sync"
)

// Session is one request's view of a user's session. Get it with
// FromContext inside the Middleware; it is never nil there. A Session is
// safe for concurrent use by the goroutines of its request. Requests on the
// same session share its values: a pointer, map or slice read from one
// request is the same object other requests see, so change such values only
// under your own lock, or replace them with Set.
//
// The session is created lazily: until a handler calls Set, a visitor without
// a session has none, gets no cookie and costs nothing.
type Session struct {
	m *Manager
	w *responseWriter // nil for sessions of ignored requests

	// mu guards the fields below.
	mu       sync.Mutex
	cookie   string // the session ID the client sent, if any
	resolved bool   // the cookie has been looked up
	e        *entry // nil while the request has no session
	isNew    bool   // the session was created by this request
	ended    bool   // this request invalidated its session
	gone     bool   // the cookie names a session that no longer exists
	mutated  bool   // a mutable value was read: it may change until the request ends
	released bool   // Release gave e up; the next use takes it again
}

// ID returns the session ID, or "" if the request has no session yet.
func (s *Session) ID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked()
	if e == nil {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return s.m.cookieLocked(e)
}

// IsNew reports whether the session was created by this request, or does
// not exist yet.
func (s *Session) IsNew() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.entryLocked() == nil || s.isNew
}

// Get returns the value stored under key, or nil. Reading a value that a
// handler could change in place (a pointer, map, slice, or struct holding
// one) makes the session a candidate for backup: after the request its
// encoding is compared with the stored one and written if it differs.
func (s *Session) Get(key string) any {
	v, _ := s.get(key)
	if jv, ok := v.(jsonValue); ok {
		return jv.decodeAny()
	}
	return v
}

// Get returns the value stored under key as a T. It reports false if there
// is no such value or it is not a T. With JSONTranscoder, a value loaded from
// memcached is decoded into T here.
func Get[T any](s *Session, key string) (T, bool) {
	v, _ := s.get(key)
	if jv, isJSON := v.(jsonValue); isJSON {
		t, ok := decodeAs[T](jv)
		if ok && encodesAs(t, jv) {
			s.replaceDecoded(key, jv, t)
		}
		return t, ok
	}
	t, ok := v.(T)
	return t, ok
}

func (s *Session) get(key string) (any, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked()
	if e == nil {
		return nil, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	v, ok := e.values.get(key)
	if ok && (!e.readMutable || !s.mutated) && mutable(v) {
		e.readMutable, s.mutated = true, true
	}
	return v, ok
}

// replaceDecoded swaps a JSON value for its typed form, so the handler and
// later requests share one object. It is not a change of the session: the
// caller checked that the typed form encodes to the same bytes. (A T that
// drops fields of the stored JSON, an older struct during a rolling deploy
// say, is decoded on every Get instead, and the stored bytes are kept.)
func (s *Session) replaceDecoded(key string, raw jsonValue, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.e; e != nil {
		e.mu.Lock()
		if cur, ok := e.values.get(key); ok {
			if cur, ok := cur.(jsonValue); ok && string(cur) == string(raw) {
				e.values.set(key, v)
			}
		}
		e.mu.Unlock()
	}
}

// Set stores v under key, creating the session if the request has none.
// With memcached the value must be encodable by the Manager's Transcoder
// (for gob: registered with gob.Register); an encoding failure is logged and
// counted, and the session keeps working locally.
func (s *Session) Set(key string, v any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked()
	if e == nil {
		if s.w == nil {
			s.m.logger.warn("ignored-set", "mcsession: Session.Set on a request skipped by Config.Ignore; the value is dropped")
			return
		}
		e = s.createLocked()
	}
	e.mu.Lock()
	e.values.set(key, v)
	e.dirty = true
	e.mu.Unlock()
}

// Delete removes the value stored under key.
func (s *Session) Delete(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked()
	if e == nil {
		return
	}
	e.mu.Lock()
	if e.values.remove(key) {
		e.dirty = true
	}
	e.mu.Unlock()
}

// Keys returns the keys of the session's values, sorted.
func (s *Session) Keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked()
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.values.keys()
}

// Invalidate ends the session: its values are gone, its backup is deleted
// from memcached before Invalidate returns (one delete, in async mode too),
// so no instance can load it once the response starts, and the client's
// cookie is removed. If the backup's node is down, the delete is retried
// when it is back. A later Set in the same request starts a new session
// with a new ID. Call it at logout.
func (s *Session) Invalidate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked()
	if e == nil {
		return
	}
	s.m.end(e, &s.m.stats.invalidated, true)
	e.release()
	s.e, s.isNew, s.ended = nil, false, true
	s.noteIDChangeLocked()
}

// RenewID gives the session a new ID, keeping its values, and deletes the
// backup stored under the old ID before it returns (one delete, in async
// mode too), so no instance can load the old ID once the response starts;
// the session is then backed up under its new ID like any change. Call it
// when the user logs in, so an ID planted before login (session fixation)
// is worthless after it. It does nothing when the request has no session.
func (s *Session) RenewID() {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entryLocked()
	if e == nil {
		return
	}
	s.m.renew(e)
	s.noteIDChangeLocked()
}

// entryLocked returns the request's session, looking it up on first use.
func (s *Session) entryLocked() *entry {
	if !s.resolved {
		s.resolved = true
		if s.w != nil {
			s.resolveLocked()
		}
	}
	if s.released && s.e != nil {
		s.released = false
		// Used again after Release: held again until the request ends,
		// unless MaxSessions dropped it from memory meanwhile (it is safe
		// in memcached): then it is found again by its ID, as a new
		// request would.
		if !s.e.acquireUnlessEvicted() {
			e := s.e
			e.mu.Lock()
			cookie := s.m.cookieLocked(e)
			e.mu.Unlock()
			s.e, s.gone = s.m.resolve(cookie)
		}
	}
	return s.e
}

// resolveLocked looks up the session the request's cookie names. A browser
// may send several cookies of the session's name (one a sibling subdomain
// planted, say): the first that names a live session wins, whatever came
// before it, and the session counts as gone only if every one is.
func (s *Session) resolveLocked() {
	s.e, s.gone = s.m.resolve(s.cookie)
	if s.e != nil || s.cookie == "" {
		return
	}
	h := s.w.rq.req.Header
	for i := 1; i < maxSessionCookies; i++ {
		c := s.m.nthSessionCookie(h, i)
		if c == "" {
			return
		}
		if c == s.cookie {
			continue
		}
		e, gone := s.m.resolve(c)
		if e != nil {
			s.e, s.cookie, s.gone = e, c, false
			return
		}
		s.gone = s.gone && gone
	}
}

// Release tells the Manager that the request is done with its session for
// now, though the request itself goes on: a server-sent event stream, a
// long poll or a websocket that used the session at its start. The session
// is then backed up as after the end of any other request: its changes are
// written, and other requests' changes are no longer held back while this
// one stays open (an asynchronous backup waits until no request holds the
// session, because a handler may be changing a value it read). Values read
// before Release must not be changed in place afterwards. Using the session
// again after Release takes it again, until the request ends or Release is
// called again. Release does nothing when the request has no session.
func (s *Session) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e == nil || s.released {
		return
	}
	s.released = true
	mutated := s.mutated
	s.mutated = false
	s.m.replica.release(s.e, mutated)
}

// createLocked starts a new session for the request.
func (s *Session) createLocked() *entry {
	s.e = s.m.create()
	s.e.acquire()
	s.isNew = true
	s.noteIDChangeLocked()
	return s.e
}

// noteIDChangeLocked counts and logs an ID change that the client cannot
// learn of, because the response (and so its Set-Cookie) has already started.
func (s *Session) noteIDChangeLocked() {
	if s.w != nil && s.w.started.Load() {
		s.m.stats.lateChanges.Add(1)
		s.m.logger.warn("late-change", "mcsession: session ID changed after the response started; the client keeps its old cookie (change the session before writing the response)")
	}
}
