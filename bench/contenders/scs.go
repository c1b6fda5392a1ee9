package contenders

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/bradfitz/gomemcache/memcache"
)

// SCSMemstore is github.com/alexedwards/scs/v2 with its in-process store
// (memstore) and the LoadAndSave middleware, configured with scs's defaults:
// a 24 h lifetime and no idle timeout. (With an IdleTimeout, scs marks every
// loaded session modified and commits it on every request, reads included.)
func SCSMemstore() Contender {
	return Contender{Name: "scs/memstore", New: func([]string) (http.Handler, func(), error) {
		store := memstore.New()
		sm := scs.New()
		sm.Store = store
		return scsApp(sm), store.StopCleanup, nil
	}}
}

// SCSMemcached is scs v2 with a memcached store. scs ships none, so this is
// the short adapter its users write over gomemcache (scsMemcacheStore).
func SCSMemcached() Contender {
	return Contender{Name: "scs/memcached", Memcached: true, New: func(nodes []string) (http.Handler, func(), error) {
		if len(nodes) == 0 {
			return nil, nil, errors.New("scs/memcached: no memcached nodes")
		}
		sm := scs.New()
		sm.Store = &scsMemcacheStore{client: newMemcacheClient(nodes), prefix: "scs:"}
		return scsApp(sm), func() {}, nil
	}}
}

// scsApp is the common application over an scs session manager.
func scsApp(sm *scs.SessionManager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		sm.Put(r.Context(), "cart", Cart(itemsParam(r)))
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		cart, _ := sm.Get(r.Context(), "cart").([]string)
		w.Write([]byte(strconv.Itoa(len(cart))))
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		cart, _ := sm.Get(r.Context(), "cart").([]string)
		sm.Put(r.Context(), "cart", Changed(cart))
		w.Write([]byte("ok"))
	})
	return sm.LoadAndSave(mux)
}

// scsMemcacheStore implements scs.Store over gomemcache. The token (43
// base64url characters) is a valid memcached key.
type scsMemcacheStore struct {
	client *memcache.Client
	prefix string
}

// Find implements scs.Store: a miss is not found, not an error.
func (s *scsMemcacheStore) Find(token string) ([]byte, bool, error) {
	it, err := s.client.Get(s.prefix + token)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return it.Value, true, nil
}

// Commit implements scs.Store: the session's expiry becomes its memcached
// TTL. A session already expired is deleted.
func (s *scsMemcacheStore) Commit(token string, b []byte, expiry time.Time) error {
	exp, ok := memcacheExpiration(expiry, time.Now())
	if !ok {
		return s.Delete(token)
	}
	return s.client.Set(&memcache.Item{Key: s.prefix + token, Value: b, Expiration: exp})
}

// Delete implements scs.Store: deleting a missing session is no error.
func (s *scsMemcacheStore) Delete(token string) error {
	err := s.client.Delete(s.prefix + token)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil
	}
	return err
}

// maxRelativeTTL is the longest TTL memcached takes as relative seconds
// (30 days); larger values are read as absolute Unix times.
const maxRelativeTTL = 30 * 24 * 60 * 60

// memcacheExpiration converts an expiry time into memcached's exptime:
// seconds from now rounded up, or the absolute Unix time beyond 30 days.
// ok is false if expiry is not after now (0 would mean "never expires").
func memcacheExpiration(expiry, now time.Time) (exp int32, ok bool) {
	d := expiry.Sub(now)
	if d <= 0 {
		return 0, false
	}
	secs := int64((d + time.Second - 1) / time.Second)
	if secs > maxRelativeTTL {
		return int32(expiry.Unix()), true // memcached takes 32-bit absolute times
	}
	return int32(secs), true
}
