// Command basic is the smallest mcsession application: a visit counter.
//
//	go run ./examples/basic                        # sessions in process memory
//	go run ./examples/basic -nodes 127.0.0.1:11211 # backed up to memcached
//
// Then open http://127.0.0.1:8080/ and reload. Start a second copy with
// -listen 127.0.0.1:8081 -route b and the same -nodes, stop the first with
// Ctrl-C, and the counter carries on at :8081.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mcsession/mcsession"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	nodes := flag.String("nodes", "", `memcached nodes, "n1:host:port n2:host:port"; empty: in process only`)
	route := flag.String("route", "a", "this instance's route")
	flag.Parse()

	m, err := mcsession.New(mcsession.Config{Nodes: *nodes, Route: *route})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		s := mcsession.FromContext(r.Context())
		n, _ := mcsession.Get[int](s, "visits")
		n++
		s.Set("visits", n)
		fmt.Fprintf(w, "visit %d, served by route %q, session %s\n", n, *route, s.ID())
	})
	srv := &http.Server{Addr: *listen, Handler: m.Middleware(mux)}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Fatal(err)
		}
	}()
	log.Printf("serving on http://%s/ (nodes %q, route %q)", *listen, *nodes, *route)
	<-ctx.Done()
	// The server's Shutdown returns once the requests in flight are done
	// (ListenAndServe returns as soon as it begins); only then can every
	// change they made be written to memcached.
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		log.Print(err)
	}
	if err := m.Shutdown(shutdown); err != nil {
		log.Print(err)
	}
}
