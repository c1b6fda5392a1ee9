package contenders

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"hash/maphash"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// FloorSession is the least any in-process cookie session middleware can
// do, written for measurement only: find the session the cookie names in a
// sharded map, carry it in the request's context, and send Vary: Cookie.
// It has no expiry, no backup, no statistics, no ID checks, no lazy
// creation and no response-writer wrapper, so it is a floor for what a
// session costs a request, not a contender anyone should deploy. A session
// library cannot cost less than this; mcsession's distance to it is what
// its own features cost.
func FloorSession() Contender {
	return Contender{Name: "floor/session", New: func([]string) (http.Handler, func(), error) {
		st := &floorStore{seed: maphash.MakeSeed()}
		for i := range st.shards {
			st.shards[i].m = make(map[string]*floorSession)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
			var b [16]byte
			rand.Read(b[:])
			id := hex.EncodeToString(b[:])
			st.set(id, &floorSession{cart: Cart(itemsParam(r))})
			http.SetCookie(w, &http.Cookie{Name: "SESSIONID", Value: id, Path: "/", HttpOnly: true})
		})
		mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
			s, _ := r.Context().Value(floorKey{}).(*floorSession)
			w.Write([]byte(strconv.Itoa(len(s.get()))))
		})
		mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
			s, _ := r.Context().Value(floorKey{}).(*floorSession)
			s.set(Changed(s.get()))
			w.Write([]byte("ok"))
		})
		return st.middleware(mux), func() {}, nil
	}}
}

type floorKey struct{}

// floorSession is one session: a cart under a lock.
type floorSession struct {
	mu   sync.Mutex
	cart []string
}

// get and set tolerate a nil session (no or unknown cookie): an empty cart.
func (s *floorSession) get() []string {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cart
}

func (s *floorSession) set(cart []string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.cart = cart
	s.mu.Unlock()
}

// floorStore is a map of sessions by ID, in shards.
type floorStore struct {
	seed   maphash.Seed
	shards [64]struct {
		mu sync.RWMutex
		m  map[string]*floorSession
	}
}

func (st *floorStore) shard(id string) int { return int(maphash.String(st.seed, id) & 63) }

func (st *floorStore) get(id string) *floorSession {
	sh := &st.shards[st.shard(id)]
	sh.mu.RLock()
	defer sh.mu.RUnlock()
	return sh.m[id]
}

func (st *floorStore) set(id string, s *floorSession) {
	sh := &st.shards[st.shard(id)]
	sh.mu.Lock()
	sh.m[id] = s
	sh.mu.Unlock()
}

// varyCookie is the Vary header's value, shared by every response: the
// floor allocates nothing for it (mcsession uses storage in its one
// allocation per request), and nothing here writes to it.
var varyCookie = []string{"Cookie"}

func (st *floorStore) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var s *floorSession
		for _, line := range r.Header["Cookie"] {
			if v, ok := strings.CutPrefix(line, "SESSIONID="); ok {
				s = st.get(v)
				break
			}
		}
		w.Header()["Vary"] = varyCookie
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), floorKey{}, s)))
	})
}
