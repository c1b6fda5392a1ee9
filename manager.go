package mcsession

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcsession/mcsession/internal/shardmap"
)

// Manager keeps sessions in process memory and, when it has memcached nodes,
// backs them up so another instance can take them over. Create one with New
// and share it; the zero value is not usable. A Manager is safe for
// concurrent use.
type Manager struct {
	cfg      settings
	logger   *rateLogger
	sessions *shardmap.Map[*entry] // by the ID's random part
	stats    counters
	seed     maphash.Seed // for payload hashes
	replica  replica      // where copies live: inProcess or memcacheReplica
	withNode bool         // session IDs carry a node part (replica.withNode, read per request)
	macs     idMACs       // signs the IDs in cookies (Config.Keys), or not
	seal     sealer       // seals the stored copies (Config.Keys), or not

	stop     chan struct{} // closed by Close: every goroutine returns
	stopOnce sync.Once
	wg       sync.WaitGroup // the Manager's goroutines
	running  atomic.Int32   // how many of them run now (Stats-free, for tests and checks)
	closed   atomic.Bool
}

// New returns a Manager for cfg, with its goroutines started: the sweeper
// of expired sessions and, with memcached nodes, the backup workers, the
// retry loop and the node prober. It returns a *ConfigError if cfg is
// invalid. New does not contact memcached: nodes are assumed up until an
// operation on them fails.
func New(cfg Config) (*Manager, error) {
	s, err := resolve(cfg)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:      s,
		logger:   newRateLogger(s.Logger),
		sessions: shardmap.New[*entry](),
		seed:     maphash.MakeSeed(),
		stop:     make(chan struct{}),
	}
	m.macs, m.seal = unsignedIDs{}, clearCopies{}
	if len(s.Keys) > 0 {
		h, err := newHMACIDs(s.Keys)
		if err != nil {
			return nil, configError("Keys", err.Error())
		}
		a, err := newAEADCopies(s.Keys)
		if err != nil {
			return nil, configError("Keys", err.Error())
		}
		m.macs, m.seal = h, a
	} else if len(s.nodes) > 0 {
		s.Logger.Warn("mcsession: Config.Keys is not set: session IDs are not signed, so every forged ID costs memcached lookups; set Keys in production")
	}
	if len(s.nodes) > 0 {
		r := newMemcacheReplica(m, s.nodes)
		m.replica = r
		r.start()
	} else {
		m.replica = inProcess{m}
	}
	m.withNode = m.replica.withNode()
	m.goRun(m.sweepLoop)
	return m, nil
}

// goRun runs f in a goroutine owned by m: Close waits for it to return.
func (m *Manager) goRun(f func()) {
	m.wg.Add(1)
	m.running.Add(1)
	go func() {
		defer m.wg.Done()
		defer m.running.Add(-1)
		f()
	}()
}

// Shutdown writes every pending backup to memcached, then stops the
// Manager's goroutines and closes its connections, like Close. Call it
// after http.Server.Shutdown has finished the last requests, so a rolling
// deploy loses nothing. It gives up when ctx is done; its error then wraps
// ErrNotFlushed and says how many sessions were not written. Afterwards the
// Manager still serves sessions from memory, with or without SyncBackup,
// but writes nothing to memcached: a change made then is counted in
// Stats.ChangesAfterClose, logged as a warning, and lost when the process
// exits. Only the deletes that make a logout or a renewed ID final still go
// out: Invalidate deletes the session's copy and RenewID the copy under the
// old ID, at once. Shutdown is safe to call more than once and after Close;
// later calls return nil.
func (m *Manager) Shutdown(ctx context.Context) error {
	if m.closed.Load() {
		return nil
	}
	if h := m.cfg.hooks.shutdownBegan; h != nil {
		h()
	}
	err := m.replica.flush(ctx)
	m.Close()
	return err
}

// Close stops the Manager's goroutines at once, without writing pending
// backups, waits for them to return and closes the memcached connections.
// Sessions stay usable in memory, as after Shutdown. It is safe to call
// more than once, and always returns nil.
func (m *Manager) Close() error {
	m.stopOnce.Do(func() {
		m.closed.Store(true)
		close(m.stop)
		m.wg.Wait()
		m.replica.close()
	})
	return nil
}

// SetNodes replaces the memcached node list at runtime, with the same syntax
// and rules as Config.Nodes and Config.FailoverNodes; use it with service
// discovery. Nodes that keep their id and address keep their connections and
// health. Sessions on a removed node move to another on their next backup.
// A Manager created without nodes cannot get some, and one with nodes cannot
// lose them all: the session ID format differs. It returns a *ConfigError for
// an invalid list and ErrClosed after Close.
func (m *Manager) SetNodes(nodes, failover string) error {
	if m.closed.Load() {
		return ErrClosed
	}
	c := m.cfg.Config
	c.Nodes, c.FailoverNodes = nodes, failover
	s, err := resolve(c)
	if err != nil {
		return err
	}
	return m.replica.setNodes(s.nodes)
}

// resolve returns the session a request's cookie names, or nil, acquired
// for the request (see entry.acquire). cookie is "" or an ID that parseID
// accepted (Manager.sessionCookie). It looks in process memory first and,
// on a miss, in memcached (a takeover). gone reports that
// the cookie names a session that certainly no longer exists, so the client
// can be told to drop it; it is false when memcached could not be asked.
func (m *Manager) resolve(cookie string) (e *entry, gone bool) {
	if cookie == "" {
		return nil, false
	}
	unsigned, _ := m.macs.split(cookie)
	id := splitID(unsigned, m.withNode)
	now := time.Now()
	if e, ok := m.sessions.Get(id.random); ok {
		if e, gone, held := m.useLocal(e, cookie, id, now); held {
			return e, gone
		}
	}
	if !m.macs.verify(cookie) {
		m.stats.forgedIDs.Add(1)
		return nil, true // forged or tampered: no lookup anywhere
	}
	l := m.replica.load(id)
	l.e.acquire() // before makeRoom: a session in use is never taken
	if l.e != nil {
		m.makeRoom()
	}
	return l.e, l.gone
}

// useLocal is resolve for e, found in the session map under id's random
// part: e acquired, or gone if it has ended or expired. held is false if
// e was dropped from memory meanwhile (makeRoom): then it is loaded.
func (m *Manager) useLocal(e *entry, cookie string, id sessionID, now time.Time) (_ *entry, gone, held bool) {
	if id.route != m.cfg.Route {
		// Another instance's cookie: it leads to memcached (refresh), so
		// its MAC is checked first, as on a miss.
		if !m.macs.verify(cookie) {
			m.stats.forgedIDs.Add(1)
			return nil, true, true
		}
		if m.replica.refresh(e, id) {
			m.end(e, &m.stats.invalidated, false) // ended where it was served since
			return nil, true, true
		}
	}
	e.mu.Lock()
	if e.evicted {
		e.mu.Unlock()
		return nil, false, false
	}
	live := !e.removed && !m.expiredLocked(e, now)
	if live {
		if e.takenFrom != "" && id.route == m.cfg.Route {
			e.takenFrom = "" // the client has this instance's cookie now
		}
		e.lastAccess = now
		e.acquireLocked()
		m.replica.usedLocked(e)
	}
	e.mu.Unlock()
	if live {
		return e, false, true
	}
	m.expire(e, now)
	return nil, true, true
}

// create starts a new session and adds it to process memory.
func (m *Manager) create() *entry {
	now := time.Now()
	e := &entry{
		created:    now,
		lastAccess: now,
		dirty:      true,
	}
	m.makeRoom()
	random := newRandom()
	e.setID(sessionID{random, m.replica.home(random), m.cfg.Route})
	m.sessions.Set(e.random, e)
	m.stats.created.Add(1)
	return e
}

// renew gives e a new random part, and so a new ID and memcached key.
func (m *Manager) renew(e *entry) {
	e.mu.Lock()
	if e.removed {
		e.mu.Unlock()
		return
	}
	old := e.random
	e.setID(sessionID{newRandom(), e.node, m.cfg.Route})
	random := e.random
	e.dirty = true
	e.mu.Unlock()
	m.sessions.Set(random, e)
	m.replica.renamed(e, old)
	// A concurrent renew or end may have run between the unlock and Set:
	// then random is no longer e's key, and must not keep e alive.
	e.mu.Lock()
	stale := e.removed || e.random != random
	e.mu.Unlock()
	if stale {
		m.sessions.DeleteIf(random, func(x *entry) bool { return x == e })
	}
}

// end removes e from process memory and deletes its backup, counting it in
// c. With sync set (a request's Invalidate), the delete is done before end
// returns, so the client's next request finds no session on any instance.
func (m *Manager) end(e *entry, c *atomic.Uint64, sync bool) {
	m.endIf(e, c, sync, nil)
}

// expire ends e if it is still expired at now: a request may have used it
// since the caller looked.
func (m *Manager) expire(e *entry, now time.Time) {
	m.endIf(e, &m.stats.expired, false, func() bool { return m.expiredLocked(e, now) && e.active == 0 })
}

// endIf is end, done only if cond, called with e.mu held, reports true.
func (m *Manager) endIf(e *entry, c *atomic.Uint64, sync bool, cond func() bool) {
	e.mu.Lock()
	if e.removed || cond != nil && !cond() {
		e.mu.Unlock()
		return
	}
	e.removed = true
	random := e.random
	e.mu.Unlock()
	c.Add(1)
	m.replica.ended(e, random, sync)
}

// expiredLocked reports whether e has outlived its idle timeout or lifetime.
func (m *Manager) expiredLocked(e *entry, now time.Time) bool {
	return now.After(m.expiryLocked(e))
}

// expiryLocked returns when e expires unless it is used again.
func (m *Manager) expiryLocked(e *entry) time.Time {
	t := e.lastAccess.Add(m.cfg.IdleTimeout)
	if m.cfg.Lifetime > 0 {
		if end := e.created.Add(m.cfg.Lifetime); end.Before(t) {
			t = end
		}
	}
	return t
}

// sweepLoop ends expired sessions every SweepInterval until Close.
func (m *Manager) sweepLoop() {
	t := time.NewTicker(m.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case now := <-t.C:
			m.sweep(now)
		}
	}
}

// sweep ends every session expired at now.
func (m *Manager) sweep(now time.Time) {
	var expired []*entry
	var tombs []string
	m.sessions.Range(func(random string, e *entry) bool {
		e.mu.Lock()
		switch {
		case e.removed:
			// A tombstone whose delete never happened (its node stayed
			// down): by now memcached's TTL has dropped the backup.
			if now.After(e.lastAccess.Add(m.cfg.IdleTimeout + touchGrace(m.cfg.IdleTimeout))) {
				tombs = append(tombs, random)
			}
		case m.expiredLocked(e, now) && e.active == 0: // a long request keeps its session
			expired = append(expired, e)
		}
		e.mu.Unlock()
		return true
	})
	for _, e := range expired {
		m.expire(e, now)
	}
	for _, random := range tombs {
		m.sessions.DeleteIf(random, func(x *entry) bool { return x.removed })
	}
}
