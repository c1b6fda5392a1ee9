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
//	defer m.Shutdown(context.Background()) // writes pending backups
//	http.ListenAndServe(":8080", m.Middleware(mux))
//
// and in a handler:
//
//	s := mcsession.FromContext(r.Context())
//	cart, _ := mcsession.Get[*Cart](s, "cart")
//	s.Set("cart", cart)
//
// # Session IDs
//
// An ID is "<random>[.<node>][.<route>]": 32 hex digits from crypto/rand,
// the memcached node holding the backup (only with nodes), and the route of
// the owning instance (only with Config.Route). Cookies that do not parse
// start a new session without touching memcached. Memcached keys are
// Config.KeyPrefix plus a SHA-256 of the ID, so memcached never holds a
// usable session ID.
//
// # What a request costs
//
// A request that only reads a session held locally makes no memcached call.
// A request that changes it causes one set, written by a background worker
// (or, with Config.SyncBackup, before the response starts). A request that
// reads a pointer, map, slice or struct value causes a set only if the
// value was changed in place. A session read without change is kept alive in
// memcached with an occasional touch.
//
// # Failures
//
// Memcached errors never fail a request: the session keeps working from
// memory and its backup is retried. Nodes that fail are marked down, probed
// in the background and used again when they answer.
package mcsession
