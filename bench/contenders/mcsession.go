package contenders

import (
	"context"
	"net/http"
	"strconv"
	"strings"

	"github.com/mcsession/mcsession"
)

// MCSession is mcsession: in process only, or backed up to memcached
// asynchronously (the default) or synchronously.
func MCSession(name string, memcached, sync bool) Contender {
	return mcsessionWith(name, memcached, mcsession.Config{SyncBackup: sync})
}

// MCSessionKeys is mcsession with memcached, asynchronous, and Config.Keys:
// signed session IDs and sealed copies.
func MCSessionKeys(name string) Contender {
	return mcsessionWith(name, true, mcsession.Config{Keys: [][]byte{[]byte("bench-key-0123456789abcdef012345")}})
}

// mcsessionWith is mcsession with cfg, its Nodes and Route set here.
func mcsessionWith(name string, memcached bool, cfg mcsession.Config) Contender {
	return Contender{Name: name, Memcached: memcached, New: func(nodes []string) (http.Handler, func(), error) {
		var spec []string
		for i, n := range nodes {
			spec = append(spec, "n"+strconv.Itoa(i+1)+":"+n)
		}
		cfg.Nodes, cfg.Route = strings.Join(spec, " "), "a"
		m, err := mcsession.New(cfg)
		if err != nil {
			return nil, nil, err
		}
		mux := http.NewServeMux()
		mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
			mcsession.FromContext(r.Context()).Set("cart", Cart(itemsParam(r)))
		})
		mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
			cart, _ := mcsession.Get[[]string](mcsession.FromContext(r.Context()), "cart")
			w.Write([]byte(strconv.Itoa(len(cart))))
		})
		mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
			s := mcsession.FromContext(r.Context())
			cart, _ := mcsession.Get[[]string](s, "cart")
			s.Set("cart", Changed(cart))
			w.Write([]byte("ok"))
		})
		h := &mcHandler{Handler: m.Middleware(mux), m: m}
		return h, func() { m.Shutdown(context.Background()) }, nil
	}}
}

// Backlogged is implemented by the handlers of contenders that write to
// memcached in the background (mcsession/async). Backlog reports how many
// sessions wait for a backup (queued or waiting for a retry); a measurement
// of memcached traffic waits for it to reach zero.
type Backlogged interface {
	Backlog() int
}

// mcHandler is mcsession's middleware with access to its Manager's
// statistics. The wrapper costs one method call per request.
type mcHandler struct {
	http.Handler
	m *mcsession.Manager
}

// Stats returns the Manager's statistics.
func (h *mcHandler) Stats() mcsession.Stats { return h.m.Stats() }

// Backlog implements Backlogged.
func (h *mcHandler) Backlog() int {
	s := h.m.Stats()
	return s.QueueDepth + s.PendingRetries
}
