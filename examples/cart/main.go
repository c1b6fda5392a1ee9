// Command cart is a small shop built on net/http and mcsession: the
// application a user would deploy as several instances behind a load
// balancer.
//
//	MCSESSION_KEYS=<64 hex digits> go run ./examples/cart -listen 127.0.0.1:8081 -route app1 \
//	    -nodes "n1:127.0.0.1:11211 n2:127.0.0.1:11212" -failover n1 -sync
//
// MCSESSION_KEYS holds the secret keys every instance shares (Config.Keys:
// signed session IDs), in hex, comma-separated, newest first; generate one
// with "openssl rand -hex 32".
//
// Endpoints:
//
//	POST /cart/add?item=NAME  add one item; answers the cart as JSON
//	GET  /cart                the cart as JSON: {"session":"<id>","route":"app1","items":[...]}
//	GET  /                    a page for people: the cart, a form, the instance
//	GET  /healthz             200 while the instance serves, 503 once it is draining
//	GET  /stats               the session manager's statistics as JSON
//
// SIGTERM or SIGINT drains the instance: /healthz turns 503 and, after -drain
// (1s) for load balancers to notice, the server stops accepting and finishes
// its requests, the session manager writes every pending backup, and the
// process exits 0. SIGKILL is a crash.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"html/template"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mcsession/mcsession"
)

// maxItemLen bounds an item name; longer ones are refused.
const maxItemLen = 100

// keysEnv names the environment variable holding the instances' shared
// secret keys (Config.Keys), in hex, separated by commas, newest first:
// secrets belong in the environment, not on a command line anyone can
// read with ps.
const keysEnv = "MCSESSION_KEYS"

// parseKeys parses the value of keysEnv; empty means no keys.
func parseKeys(v string) ([][]byte, error) {
	if v == "" {
		return nil, nil
	}
	var keys [][]byte
	for _, h := range strings.Split(v, ",") {
		k, err := hex.DecodeString(strings.TrimSpace(h))
		if err != nil {
			return nil, fmt.Errorf("%s: a key is not hex: %v", keysEnv, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "address to serve on")
	route := flag.String("route", "app1", "this instance's route: the last part of its session IDs")
	nodes := flag.String("nodes", "", `memcached nodes, "n1:host:port n2:host:port"; empty: sessions in process only`)
	failover := flag.String("failover", "", "node ids used only when no other node is up")
	sync := flag.Bool("sync", false, "SyncBackup: store a changed cart before answering")
	idle := flag.Duration("idle", 30*time.Minute, "session idle timeout")
	drain := flag.Duration("drain", time.Second, "after SIGTERM, keep serving this long with /healthz failing, so load balancers stop sending requests before the listener closes")
	flag.Parse()
	log.SetPrefix(*route + " ")
	log.SetFlags(log.Ltime | log.Lmicroseconds)

	keys, err := parseKeys(os.Getenv(keysEnv))
	if err != nil {
		log.Fatal(err)
	}
	m, err := mcsession.New(mcsession.Config{
		Nodes:         *nodes,
		FailoverNodes: *failover,
		Route:         *route,
		SyncBackup:    *sync,
		IdleTimeout:   *idle,
		Keys:          keys,
	})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	a := &app{route: *route, m: m}
	srv := &http.Server{Handler: a.routes(), ReadHeaderTimeout: 10 * time.Second}

	done := make(chan struct{})
	go func() {
		defer close(done)
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
		log.Print("draining")
		a.draining.Store(true)
		// Load balancers learn from /healthz that this instance is going;
		// until they do, requests still arrive and are served, each on a
		// connection closed after its response, so none is sent down a
		// kept-alive connection the shutdown is about to close.
		time.Sleep(*drain)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Printf("shutdown: %v", err)
		}
	}()
	log.Printf("serving on http://%s/ (nodes %q, failover %q, sync %v)", ln.Addr(), *nodes, *failover, *sync)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
	<-done
	// Every request is finished: write the backups still queued, so the
	// instances that take over these carts find their latest state.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		log.Fatalf("session backups not flushed: %v", err)
	}
	log.Print("stopped")
}

// app is the shop: &app{route: r, m: m} is ready, its other fields start
// at their zero values.
type app struct {
	route    string
	m        *mcsession.Manager
	draining atomic.Bool

	// cartLocks order the adds to one cart (see cartLock).
	cartLocks [64]sync.Mutex
}

// cartView is the JSON form of a cart.
type cartView struct {
	Session string   `json:"session"`
	Route   string   `json:"route"`
	Items   []string `json:"items"`
}

func (a *app) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart/add", a.add)
	mux.HandleFunc("GET /cart", a.cart)
	mux.HandleFunc("GET /{$}", a.page)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /stats", a.stats)
	sessions := a.m.Middleware(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Route", a.route)
		if a.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		if r.URL.Path == "/healthz" || r.URL.Path == "/stats" {
			mux.ServeHTTP(w, r) // no session work for probes
			return
		}
		sessions.ServeHTTP(w, r)
	})
}

// items returns the cart's items: empty, not nil, for a new visitor. The
// slice is the one every concurrent request of the session reads, so it is
// never changed in place: add stores a new one.
func items(s *mcsession.Session) []string {
	v, ok := mcsession.Get[[]string](s, "items")
	if !ok {
		return []string{}
	}
	return v
}

// cartLock returns the lock that orders the adds to s's cart. Without it,
// two adds of one cart at once (a double click, two tabs) would both read
// [a], one store [a b] and the other [a c]: the cart would keep only the
// second. Sessions share a fixed set of locks by a hash of the ID's random
// part, which stays the same while a takeover or a move to another memcached
// node rewrites the route and node parts under concurrent requests. The
// lock is this instance's only: it orders the requests that the load
// balancer keeps on one instance.
func (a *app) cartLock(s *mcsession.Session) *sync.Mutex {
	random, _, _ := strings.Cut(s.ID(), ".") // "" for a new visitor: no other request has the session
	h := fnv.New32a()
	io.WriteString(h, random)
	return &a.cartLocks[h.Sum32()%uint32(len(a.cartLocks))]
}

func (a *app) add(w http.ResponseWriter, r *http.Request) {
	item := r.FormValue("item")
	if item == "" || len(item) > maxItemLen {
		http.Error(w, fmt.Sprintf("item must be 1..%d bytes", maxItemLen), http.StatusBadRequest)
		return
	}
	s := mcsession.FromContext(r.Context())
	mu := a.cartLock(s) // looks the session up (from memcached after a crash) before locking
	mu.Lock()
	// A new slice, never an append to the stored one: requests reading
	// the cart now keep the one they have, whole.
	cart := slices.Concat(items(s), []string{item})
	s.Set("items", cart)
	mu.Unlock()
	if r.FormValue("then") == "/" {
		http.Redirect(w, r, "/", http.StatusSeeOther) // the form on the page
		return
	}
	a.writeCart(w, s, cart)
}

func (a *app) cart(w http.ResponseWriter, r *http.Request) {
	s := mcsession.FromContext(r.Context())
	a.writeCart(w, s, items(s))
}

// writeCart answers the cart items of s as JSON.
func (a *app) writeCart(w http.ResponseWriter, s *mcsession.Session, items []string) {
	v := cartView{Session: s.ID(), Route: a.route, Items: items}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func (a *app) healthz(w http.ResponseWriter, r *http.Request) {
	if a.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (a *app) stats(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a.m.Stats())
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>mcsession shop</title>
<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}code{background:#eee;padding:0 .2em}</style>
</head><body>
<h1>mcsession shop</h1>
<p>Served by instance <strong>{{.Route}}</strong>. Session <code>{{if .Session}}{{.Session}}{{else}}none yet{{end}}</code>.</p>
<h2>Your cart ({{len .Items}} items)</h2>
<ol>{{range .Items}}<li>{{.}}</li>{{else}}<li><em>empty</em></li>{{end}}</ol>
<form method="post" action="/cart/add">
<input name="item" placeholder="an item" required maxlength="100" autofocus>
<input type="hidden" name="then" value="/">
<button>Add to cart</button>
</form>
<p>Kill this instance and reload: another one serves the same cart.</p>
</body></html>
`))

func (a *app) page(w http.ResponseWriter, r *http.Request) {
	s := mcsession.FromContext(r.Context())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	pageTemplate.Execute(w, cartView{Session: s.ID(), Route: a.route, Items: items(s)})
}
