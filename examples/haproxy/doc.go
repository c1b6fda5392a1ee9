// Package haproxy holds no Go code to import: its directory keeps
// haproxy.cfg, the HAProxy configuration documented for running
// examples/cart (or any application using mcsession) as several instances
// behind one address, and the test that proves it.
//
// The configuration sends each user to the instance named by the route at
// the end of the session ID, health-checks the instances on GET /healthz,
// and moves users of a dead instance to the others, which take their
// sessions over from memcached.
//
// TestHAProxyFailover runs the shipped file, changed only in its addresses,
// with real processes: two memcached, three cart instances and HAProxy. A
// hundred users fill carts while an instance and then a memcached node are
// killed; every cart must end exactly as its user filled it. It needs the
// haproxy and memcached binaries and is skipped without them, or with
// -short; with MCSESSION_REQUIRE_MEMCACHED=1 a missing binary fails it.
package haproxy
