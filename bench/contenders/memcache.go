package contenders

import (
	"github.com/bradfitz/gomemcache/memcache"
)

// memcacheIdleConns is MaxIdleConns of the gomemcache clients of the
// contenders that use one directly (scs/memcached, gorilla/memcache,
// gin/memcached). gomemcache keeps 2 idle connections per server by default,
// so under concurrent load it would dial and close a connection for most
// operations; anyone running these stores under load raises it, and so do
// we. mcsession sizes its own clients.
const memcacheIdleConns = 64

// newMemcacheClient returns a gomemcache client over nodes, as the users of
// the memcached-backed stores create it (plus memcacheIdleConns).
func newMemcacheClient(nodes []string) *memcache.Client {
	c := memcache.New(nodes...)
	c.MaxIdleConns = memcacheIdleConns
	return c
}

// secretKey is the HMAC key of the gorilla-based contenders' securecookie
// codecs: fixed, 32 bytes, good for a benchmark only.
var secretKey = []byte("mcsession-bench-0123456789abcdef")
