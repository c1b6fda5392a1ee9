// Package contenders puts mcsession and the session libraries Go developers
// use today behind one small application, so they can be measured on the
// same workloads: the in-process benchmarks (bench_test.go) and the HTTP
// load run (../load) both take their handlers from here.
//
// Every contender serves the same routes:
//
//	POST /login?items=N  creates a session holding a cart of N items (the session cookie comes back)
//	GET  /read           reads the cart and answers its length (workload a)
//	POST /write          replaces one item of the cart (workload b); the cart keeps its size
//
// A cart item is a 64-byte string, so a cart of 50 items is a session of
// about 4 KB (workload d).
package contenders

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
)

// Contender is one session library (or none) in one configuration.
type Contender struct {
	// Name as it appears in tables, e.g. "mcsession/async".
	Name string
	// Memcached reports whether the contender needs memcached nodes.
	Memcached bool
	// NoSessions marks the floor: it serves the routes but keeps no
	// session, so its answers do not depend on the cookie.
	NoSessions bool
	// New builds the application with this contender's sessions. nodes are
	// memcached addresses ("127.0.0.1:11211"), empty unless Memcached.
	// close stops the contender's background work.
	New func(nodes []string) (h http.Handler, close func(), err error)
}

// Item returns the n-th cart item: 64 bytes.
func Item(n int) string {
	s := fmt.Sprintf("item-%08d-", n)
	return s + strings.Repeat("x", 64-len(s))
}

// Cart returns a cart of n items.
func Cart(n int) []string {
	c := make([]string, n)
	for i := range c {
		c[i] = Item(i)
	}
	return c
}

// writes numbers the items that Changed puts in carts.
var writes atomic.Int64

// Changed returns a copy of cart with one item replaced by a new one, as a
// write request does: the session changes, its size does not.
func Changed(cart []string) []string {
	c := slices.Clone(cart)
	if len(c) == 0 {
		return append(c, Item(int(writes.Add(1))))
	}
	n := writes.Add(1)
	c[int(n)%len(c)] = Item(int(n))
	return c
}

// itemsParam reads ?items=N (default 1).
func itemsParam(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("items"))
	if err != nil || n < 0 {
		return 1
	}
	return n
}

// All returns every contender, in table order.
func All() []Contender {
	return []Contender{
		Bare(),
		BareHeader(),
		FloorSession(),
		MCSession("mcsession/inprocess", false, false),
		MCSession("mcsession/async", true, false),
		MCSessionKeys("mcsession/async+keys"),
		MCSession("mcsession/sync", true, true),
		SCSMemstore(),
		SCSMemcached(),
		GorillaMemcache(),
		GinMemcached(),
	}
}

// Bare is the floor: the same routes doing the same application work with
// no sessions at all. Its /login still sets a cookie as long as mcsession's,
// so the requests a load run sends it are the same size as everyone
// else's, and its /write makes the changed cart the others store (and
// drops it), so the difference between bare and a contender is the
// session library's.
func Bare() Contender {
	return Contender{Name: "bare", NoSessions: true, New: func([]string) (http.Handler, func(), error) {
		return bareApp(false), func() {}, nil
	}}
}

// BareHeader is Bare with one response header set by every route
// (Content-Type, as handlers that answer JSON or HTML set it). net/http
// writes a response whose handler set no header on a fast path; the first
// header costs a header map, its clone and a sorted write. Every session
// library sets at least one header (Vary or Set-Cookie), so this is the
// floor for the same header work.
func BareHeader() Contender {
	return Contender{Name: "bare/header", NoSessions: true, New: func([]string) (http.Handler, func(), error) {
		return bareApp(true), func() {}, nil
	}}
}

func bareApp(header bool) http.Handler {
	cart := Cart(3)
	setHeader := func(w http.ResponseWriter) {
		if header {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		setHeader(w)
		http.SetCookie(w, &http.Cookie{Name: "SESSIONID", Value: "0123456789abcdef0123456789abcdef.n1.a", Path: "/", HttpOnly: true})
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		setHeader(w)
		w.Write([]byte(strconv.Itoa(len(cart))))
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		if len(Changed(cart)) != len(cart) {
			panic("Changed changed the cart's size")
		}
		setHeader(w)
		w.Write([]byte("ok"))
	})
	return mux
}
