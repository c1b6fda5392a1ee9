// Package memcachetest starts real memcached processes for tests and lets a
// test break them on purpose.
//
// # Starting servers
//
// [Start] launches one memcached on 127.0.0.1 and a free port, waits until it
// answers "version", and registers a t.Cleanup that kills it. [StartN] starts
// several. If the memcached binary is not installed the test is skipped, unless
// the environment variable named by [EnvRequire] is "1", in which case the
// test fails; CI sets it so that a missing binary can never turn the suite
// green by skipping it.
//
//	func TestBackup(t *testing.T) {
//		nodes := memcachetest.StartN(t, 3)
//		client := memcache.New(nodes[0].Addr(), nodes[1].Addr(), nodes[2].Addr())
//		...
//		nodes[1].Pause()  // black hole: connects succeed, nothing answers
//		...
//		nodes[1].Resume()
//		nodes[2].Restart() // same address, empty cache
//	}
//
// # Failure modes
//
// [Server.Kill] sends SIGKILL, so clients see connection refused.
// [Server.Pause] sends SIGSTOP: the kernel still completes TCP handshakes
// (up to the listen backlog) but nothing is ever read or answered, so clients
// only notice through their own deadlines. [Server.Resume] sends SIGCONT and
// the queued requests are then answered. [Server.Restart] brings a fresh,
// empty memcached back on the same address.
//
// Pausing needs a Unix system (SIGSTOP and SIGCONT); elsewhere Pause reports
// an error with t.Errorf and the server keeps running.
//
// # Looking inside
//
// [Server.Stats] reads the server's counters, so a test can assert how many
// operations reached a node ([Stats.Ops]). [Server.Get] and [Server.Set] speak
// the raw text protocol (useful to plant a corrupt blob) and [Server.Keys]
// lists the stored keys without counting as a get.
//
// Process death with the test binary (Pdeathsig) and waiting for SIGSTOP to
// take effect are Linux-only; elsewhere a killed test binary can leave
// memcached running, and Pause returns as soon as the signal is sent.
package memcachetest
