package mcsession

import (
	"net/http"
	"strings"
	"time"
)

// sessionCookie returns the session ID the request carries: the first
// cookie with the configured name whose value parses as a session ID, or "".
// It reads the Cookie headers directly rather than through r.Cookie, which
// parses and allocates every cookie of the request.
func (m *Manager) sessionCookie(r *http.Request) string {
	return m.nthSessionCookie(r.Header, 0)
}

// maxSessionCookies bounds the cookies of the session's name that a request
// may have looked up: a browser may send several (a parent domain's, a
// sibling subdomain's planted one), and the one naming a live session wins,
// but a request with a hundred must not cost a hundred lookups.
const maxSessionCookies = 4

// nthSessionCookie returns the n-th (from 0) cookie of the configured name
// in h whose value parses as a session ID, or "".
func (m *Manager) nthSessionCookie(h http.Header, n int) string {
	name := m.cfg.Cookie.Name
	for _, line := range h["Cookie"] {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimLeft(part, " \t")
			if len(part) <= len(name) || part[len(name)] != '=' || part[:len(name)] != name {
				continue
			}
			v := strings.TrimRight(part[len(name)+1:], " \t")
			if len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if m.validCookie(v) {
				if n == 0 {
					return v
				}
				n--
			}
		}
	}
	return ""
}

// validCookie reports whether v has the shape of a session cookie: an ID
// that parses strictly, with a well-formed MAC if IDs are signed. The MAC
// itself is checked later, and only if the session is not held here.
func (m *Manager) validCookie(v string) bool {
	id, ok := m.macs.split(v)
	if !ok {
		return false
	}
	_, ok = parseID(id, m.withNode)
	return ok
}

// cookieLocked returns the cookie value of e's ID (signed, with Keys),
// made once per ID. e.mu is held.
func (m *Manager) cookieLocked(e *entry) string {
	if e.cookie == "" {
		e.cookie = m.macs.sign(e.id)
	}
	return e.cookie
}

// setCookie adds a Set-Cookie header for id to h; an empty id removes the
// cookie.
func (m *Manager) setCookie(h http.Header, id string) {
	c := m.cfg.Cookie
	hc := http.Cookie{
		Name:        c.Name,
		Value:       id,
		Path:        c.Path,
		Domain:      c.Domain,
		Secure:      c.Secure,
		HttpOnly:    true,
		SameSite:    c.SameSite,
		Partitioned: c.Partitioned,
	}
	switch {
	case id == "":
		hc.MaxAge = -1
	case c.Persist:
		hc.MaxAge = int(m.cfg.IdleTimeout / time.Second)
		if m.cfg.Lifetime > 0 {
			hc.MaxAge = min(hc.MaxAge, int(m.cfg.Lifetime/time.Second))
		}
	}
	h.Add("Set-Cookie", hc.String())
	privateCache(h)
}

// privateCache makes a response that sets or deletes the session cookie
// uncacheable by a shared cache, which could otherwise hand one visitor's
// session cookie to the next. It keeps what the handler said for the
// browser's own cache and drops only what lets a shared cache store the
// response: "public" and "s-maxage" go, "private" is added unless
// "private" or "no-store" is there already.
func privateCache(h http.Header) {
	values := h.Values("Cache-Control")
	if len(values) == 0 {
		h.Set("Cache-Control", "private")
		return
	}
	var keep []string
	private := false
	for _, v := range values {
		for _, d := range strings.Split(v, ",") {
			d = strings.TrimSpace(d)
			name, _, _ := strings.Cut(d, "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "":
				continue
			case "public", "s-maxage":
				continue
			case "private", "no-store":
				private = true
			}
			keep = append(keep, d)
		}
	}
	if !private {
		keep = append(keep, "private")
	}
	h.Set("Cache-Control", strings.Join(keep, ", "))
}

// addVaryCookie adds "Vary: Cookie" to h unless it is there already: a
// response that depends on the session must not be served to others by a
// shared cache. When h has no Vary yet, the value's slice is spare, storage
// the caller owns for the request, rather than a new allocation; its
// capacity of one makes a later Add by the handler copy it.
func addVaryCookie(h http.Header, spare *[1]string) {
	vs := h["Vary"]
	for _, v := range vs {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if f = strings.TrimSpace(f); f == "*" || strings.EqualFold(f, "Cookie") {
				return
			}
		}
	}
	if len(vs) == 0 {
		spare[0] = "Cookie"
		h["Vary"] = spare[:]
		return
	}
	h["Vary"] = append(vs, "Cookie")
}
