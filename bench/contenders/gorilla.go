package contenders

import (
	"errors"
	"net/http"
	"strconv"

	gsm "github.com/bradleypeabody/gorilla-sessions-memcache"
)

// sessionName is the cookie (and session) name of the gorilla-based
// contenders.
const sessionName = "session"

// GorillaMemcache is github.com/gorilla/sessions with the memcache store
// github.com/bradleypeabody/gorilla-sessions-memcache over gomemcache, in its
// default configuration: values stored with securecookie (gob, HMAC,
// base64) and a 30-day MaxAge, which becomes the memcached TTL. Handlers
// call Save after a change, as gorilla requires.
//
// securecookie limits encoded values to 4096 bytes by default, which a 4 KB
// cart exceeds once base64-encoded ("the value is too long"); MaxLength(0)
// lifts the limit, as users storing more than a few values must.
//
// No gob.Register is needed: gob registers []string itself.
func GorillaMemcache() Contender {
	return Contender{Name: "gorilla/memcache", Memcached: true, New: func(nodes []string) (http.Handler, func(), error) {
		if len(nodes) == 0 {
			return nil, nil, errors.New("gorilla/memcache: no memcached nodes")
		}
		store := gsm.NewMemcacheStore(newMemcacheClient(nodes), "gorilla:", secretKey)
		store.MaxLength(0)
		mux := http.NewServeMux()
		mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, sessionName)
			if err != nil && s == nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			s.Values["cart"] = Cart(itemsParam(r))
			if err := s.Save(r, w); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		})
		mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, sessionName)
			if err != nil {
				// A lost session (memcached miss) comes back as an error
				// with a new, empty session.
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			cart, _ := s.Values["cart"].([]string)
			w.Write([]byte(strconv.Itoa(len(cart))))
		})
		mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, sessionName)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			cart, _ := s.Values["cart"].([]string)
			s.Values["cart"] = Changed(cart)
			if err := s.Save(r, w); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Write([]byte("ok"))
		})
		return mux, func() {}, nil
	}}
}
