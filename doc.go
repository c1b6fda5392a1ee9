// Package mcsession is net/http session middleware that keeps sessions
// alive when the servers under them die.
//
// Sessions live in process memory, so a normal request makes no remote call.
// After a request that changed a session, a copy is written to a memcached
// node, and that node's id is part of the session ID. When the instance that
// owns a session crashes or is drained, any other instance loads the copy
// (a takeover); when the memcached node dies, the session moves to another
// node and the client gets a new cookie (a relocation). Without memcached
// nodes the Manager is a plain in-process session manager.
//
// # Usage
//
//	m, err := mcsession.New(mcsession.Config{
//		Nodes:         "n1:10.0.0.1:11211 n2:10.0.0.2:11211",
//		FailoverNodes: "n1",   // used only when every other node is down
//		Route:         "app1", // this instance's route, for sticky load balancing
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	srv := &http.Server{Addr: ":8080", Handler: m.Middleware(mux)}
//	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
//	defer stop()
//	go func() {
//		if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
//			log.Fatal(err)
//		}
//	}()
//	<-ctx.Done() // SIGTERM: a deploy drains this instance
//	shutdown, cancel := context.WithTimeout(context.Background(), 20*time.Second)
//	defer cancel()
//	if err := srv.Shutdown(shutdown); err != nil { // finishes the requests in flight
//		log.Print(err)
//	}
//	if err := m.Shutdown(shutdown); err != nil { // then writes the backups they left
//		log.Print(err)
//	}
//
// The Manager's Shutdown comes after the server's, in main: ListenAndServe
// returns as soon as the server's Shutdown begins, while requests are still
// in flight and may still change their sessions. In a handler:
//
//	s := mcsession.FromContext(r.Context())
//	cart, ok := mcsession.Get[*Cart](s, "cart")
//	if !ok {
//		cart = &Cart{} // a new visitor: an empty cart
//	}
//	// A new cart with a new slice: the one read is shared (see below).
//	s.Set("cart", &Cart{Items: slices.Concat(cart.Items, []string{item})})
//
// # Concurrent requests of one session
//
// A browser can send several requests of one session at once (two tabs, a
// double click), and they share the session's values: a pointer, map or
// slice read with Get is the object the other requests read too. A handler
// that changes it in place writes while they read, a data race. Build a new
// value and store it with Set, as above: the other requests keep the whole
// value they read, or read the whole new one.
//
// Set replaces a value; it does not merge. Two requests that read [a] and
// add b and c store [a b] and [a c], and the later Set wins. To keep both,
// hold a lock of your own for the session from Get to Set; examples/cart
// does this with locks chosen by a hash of the session ID.
//
// # Session IDs
//
// An ID is "<random>[.<node>][.<route>]": 32 hex digits (a version 4 UUID,
// 122 random bits from crypto/rand),
// the memcached node holding the session's first copy (only with nodes),
// and the route of the owning instance (only with Config.Route). Cookies
// that do not parse start a new session without touching memcached. With
// two or more nodes each session has two copies (Config.Copies): on its
// node and on the next node of its ranking, each under Config.KeyPrefix
// plus a SHA-256 of the ID with that node, so memcached never holds a
// usable session ID.
//
// With Config.Keys (set them in production) the cookie carries a MAC of
// the ID, so a forged ID costs no memcached operation, and every copy in
// memcached is sealed with AES-256-GCM; Config.TLS encrypts the traffic to
// memcached, and Config.MaxSessions bounds the sessions held in memory.
// The README's Security section has the threat model.
//
// # What a request costs
//
// A request that only reads a session held locally makes no memcached call.
// A request that changes it causes one set per copy, written by a
// background worker (or, with Config.SyncBackup, before the response
// starts). A request that
// reads a pointer, map, slice or struct value causes a set only if the
// value was changed in place. A session read without change is kept alive in
// memcached with an occasional touch.
//
// # Failures
//
// Memcached errors never fail a request: the session keeps working from
// memory and its backup is retried. Nodes that fail are marked down, probed
// in the background and used again when they answer; a node that restarted
// empty is noticed and refilled. A session survives its instance and one
// memcached node dying together (two copies), and an instance that gets a
// user back after another served it serves the newer copy (a failback,
// seen by the other instance's route in the cookie). The README's
// Reliability section lists the faults and what each costs.
package mcsession
