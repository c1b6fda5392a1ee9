package mcsession_test

import (
	"context"
	"crypto/rand"
	"encoding/gob"
	"encoding/hex"
	"expvar"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"

	"github.com/mcsession/mcsession"
)

type Cart struct {
	Items []string
}

func init() {
	gob.Register(&Cart{}) // values stored as interfaces must be registered with gob
}

// The embedded default: no memcached, sessions in process memory.
func Example() {
	m, err := mcsession.New(mcsession.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Shutdown(context.Background())

	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart", func(w http.ResponseWriter, r *http.Request) {
		s := mcsession.FromContext(r.Context())
		cart, ok := mcsession.Get[*Cart](s, "cart")
		if !ok {
			cart = &Cart{} // a new visitor: an empty cart
		}
		// The cart read is shared with the session's other requests: build a
		// new one rather than append to it in place.
		cart = &Cart{Items: slices.Concat(cart.Items, []string{r.FormValue("item")})}
		s.Set("cart", cart)
		fmt.Fprintln(w, strings.Join(cart.Items, ","))
	})
	handler := m.Middleware(mux)

	// Two requests from one browser: the second sends the cookie back.
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("POST", "/cart?item=apple", nil))
	cookie := rec.Result().Cookies()[0]
	fmt.Print(rec.Body.String())

	req := httptest.NewRequest("POST", "/cart?item=pear", nil)
	req.AddCookie(cookie)
	rec = httptest.NewRecorder()
	handler.ServeHTTP(rec, req)
	fmt.Print(rec.Body.String())
	// Output:
	// apple
	// apple,pear
}

// A Manager backed by two memcached nodes, with the node on this host used
// only when the other is down.
func ExampleNew() {
	m, err := mcsession.New(mcsession.Config{
		Nodes:         "n1:127.0.0.1:11211 n2:127.0.0.1:11212",
		FailoverNodes: "n1",
		Route:         "app1",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	fmt.Println(m.Stats().Nodes)
	// Output: 2
}

// New says what is wrong with a Config.
// With Keys, session IDs are signed and the copies in memcached sealed.
// Every instance gets the same keys, from a secret store or the
// environment, never from source code; to rotate, prepend a new key, and
// drop the old one once the sessions it signed have ended.
func ExampleConfig_keys() {
	key, err := hex.DecodeString(os.Getenv("SESSION_KEY")) // 64 hex digits: openssl rand -hex 32
	if err != nil || len(key) < 32 {
		key = make([]byte, 32) // for this example only: a random key logs everyone out at each restart
		rand.Read(key)
	}
	m, err := mcsession.New(mcsession.Config{
		Nodes: "n1:127.0.0.1:11211 n2:127.0.0.1:11212",
		Route: "app1",
		Keys:  [][]byte{key},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	rec := httptest.NewRecorder()
	m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mcsession.FromContext(r.Context()).Set("user", "ada")
	})).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	id := rec.Result().Cookies()[0].Value
	fmt.Println(strings.Count(id, "."), "dots: <random>.<node>.<route>.<MAC>")
	// Output: 3 dots: <random>.<node>.<route>.<MAC>
}

func ExampleNew_invalidConfig() {
	_, err := mcsession.New(mcsession.Config{Route: "app.1"})
	fmt.Println(err)
	// Output: mcsession: invalid Config.Route: "app.1" may hold only letters, digits, _ and - (no dots: they separate the parts of a session ID)
}

func ExampleGet() {
	m, _ := mcsession.New(mcsession.Config{})
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := mcsession.FromContext(r.Context())
		s.Set("user", "ada")
		name, ok := mcsession.Get[string](s, "user")
		fmt.Println(name, ok)
		_, ok = mcsession.Get[int](s, "user")
		fmt.Println(ok)
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	// Output:
	// ada true
	// false
}

// Renew the session ID at login, so an ID planted before it is worthless.
func ExampleSession_RenewID() {
	m, _ := mcsession.New(mcsession.Config{})
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := mcsession.FromContext(r.Context())
		s.Set("cart", "3 items")
		before := s.ID()
		s.RenewID()
		s.Set("user", "ada")
		fmt.Println(before != s.ID(), s.Get("cart"))
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/login", nil))
	// Output: true 3 items
}

// Skip session work for static files.
func ExampleConfig_ignore() {
	m, _ := mcsession.New(mcsession.Config{
		Ignore: func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/static/") },
	})
	defer m.Close()
	h := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hi")
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/static/app.css", nil))
	fmt.Println(m.Stats().RequestsIgnored)
	// Output: 1
}

// Publish the statistics with expvar, at /debug/vars.
func ExampleManager_Stats() {
	m, _ := mcsession.New(mcsession.Config{})
	defer m.Close()
	v := expvar.Func(func() any { return m.Stats() })
	// In main: expvar.Publish("mcsession", v)
	fmt.Println(strings.Contains(v.String(), `"LocalSessions":0`))
	// Output: true
}

// A handler that streams after it is done with the session releases it, so
// its changes (and those of the user's other requests) are backed up while
// the stream stays open.
func ExampleSession_Release() {
	m, err := mcsession.New(mcsession.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Shutdown(context.Background())

	handler := m.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := mcsession.FromContext(r.Context())
		s.Set("subscribed", true)
		s.Release() // done with the session: the stream below may last hours
		for i := range 3 {
			fmt.Fprintf(w, "event %d\n", i)
		}
	}))
	rec := httptest.NewRecorder()
	handler.ServeHTTP(rec, httptest.NewRequest("GET", "/events", nil))
	fmt.Print(rec.Body.String())
	fmt.Println(len(rec.Result().Cookies()) == 1)
	// Output:
	// event 0
	// event 1
	// event 2
	// true
}
