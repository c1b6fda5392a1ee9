package mcsession_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"time"

	"github.com/mcsession/mcsession"
)

// Drain an instance on SIGTERM: the server finishes the requests in flight,
// then the Manager writes the backups they left. A request is in flight
// here when the signal comes; it completes, and its change is kept.
func ExampleManager_Shutdown() {
	m, err := mcsession.New(mcsession.Config{}) // Nodes, Route, ... in production
	if err != nil {
		log.Fatal(err)
	}
	inFlight := make(chan struct{})
	draining := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cart/add", func(w http.ResponseWriter, r *http.Request) {
		close(inFlight)
		<-draining // the server's Shutdown has begun
		s := mcsession.FromContext(r.Context())
		items, _ := mcsession.Get[[]string](s, "items")
		items = slices.Concat(items, []string{r.FormValue("item")})
		s.Set("items", items)
		fmt.Fprintf(w, "cart %s", strings.Join(items, ","))
	})
	srv := httptest.NewUnstartedServer(m.Middleware(mux))
	srv.Config.RegisterOnShutdown(func() { close(draining) })
	srv.Start()
	defer srv.Close()

	// In main: signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM).
	ctx, sigterm := context.WithCancel(context.Background())
	answer := make(chan string, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/cart/add?item=apple", "", nil)
		if err != nil {
			answer <- err.Error()
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		answer <- resp.Status + ", " + string(body)
	}()
	<-inFlight
	sigterm()

	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	fmt.Println("server stopped:", srv.Config.Shutdown(shutdown)) // waits for the request in flight
	fmt.Println("request in flight:", <-answer)
	fmt.Println("sessions flushed:", m.Shutdown(shutdown)) // then writes the backups it left
	fmt.Println("sessions kept:", m.Stats().LocalSessions)
	// Output:
	// server stopped: <nil>
	// request in flight: 200 OK, cart apple
	// sessions flushed: <nil>
	// sessions kept: 1
}
